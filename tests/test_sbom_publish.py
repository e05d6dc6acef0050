"""The SBOM referrer on real registries, both transports, read back with the real ORAS CLI (`oras discover`).

docker-registry 2.8 has no referrers API (the tag-schema fallback); `ReferrersApiProxy` in front of it is
a registry that has one (it answers manifest PUTs with `OCI-Subject`).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
import requests

from pack_publisher.oci.descriptor import Descriptor, describe
from pack_publisher.oci.referrers import CYCLONEDX_MEDIA_TYPE, INDEX_MEDIA_TYPE, compose_sbom_referrer, referrers_tag
from pack_publisher.registry.http import HttpTransport
from pack_publisher.registry.transport import AttachRequest
from testsupport.referrers_api import ReferrersApiProxy
from testsupport.registries import Registry, free_port

from .conftest import RunInvoke, git, oras_path
from .test_publish import add_pack

PACK = "messaging-provider-bundle"
REPO = f"acme/greentic-packs/{PACK}"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def env_for(host: str, **extra: str) -> dict[str, str]:
    return {"OCI_REGISTRY": host, "OCI_ORG": "acme", "PACK_VERSION": "1.2.3", **extra}


def lock_entry(repo: Path) -> dict[str, Any]:
    return json.loads((repo / "packs.lock.json").read_text())["packs"][0]  # type: ignore[no-any-return]


def discover(host: str, digest: str) -> list[dict[str, Any]]:
    """What the real oras lists as the referrers of the pack's manifest."""
    out = subprocess.run(
        [oras_path(), "discover", "--plain-http", "--format", "json", f"{host}/{REPO}@{digest}"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    return json.loads(out)["referrers"]  # type: ignore[no-any-return]


def sbom_referrers(host: str, digest: str) -> list[dict[str, Any]]:
    return [r for r in discover(host, digest) if r["artifactType"] == CYCLONEDX_MEDIA_TYPE]


def raw(url: str, accept: str = MANIFEST_TYPE) -> requests.Response:
    return requests.get(url, headers={"Accept": accept}, timeout=10)


def sbom_cbor_files(gtpack: Path) -> dict[str, str]:
    with zipfile.ZipFile(gtpack) as zf:
        return {f["path"]: f["hash_blake3"] for f in cbor2.loads(zf.read("sbom.cbor"))["files"]}


def check_published_sbom(host: str, repo: Path, pack_digest: str) -> dict[str, Any]:
    """Exactly one CycloneDX referrer, the lockfile's, listing every file of sbom.cbor with its BLAKE3 hash."""
    [found] = sbom_referrers(host, pack_digest)
    entry = lock_entry(repo)
    assert found["digest"] == entry["sbom_digest"]
    manifest = raw(f"http://{host}/v2/{REPO}/manifests/{found['digest']}")
    assert "sha256:" + hashlib.sha256(manifest.content).hexdigest() == found["digest"]
    doc = json.loads(manifest.content)
    assert doc["subject"]["digest"] == pack_digest
    [layer] = doc["layers"]
    assert layer["mediaType"] == CYCLONEDX_MEDIA_TYPE
    document = raw(f"http://{host}/v2/{REPO}/blobs/{layer['digest']}").content
    assert document == (repo / "dist" / "packs" / f"{PACK}.cdx.json").read_bytes()
    bom = json.loads(document)
    listed = {c["name"]: c["hashes"][0] for c in bom["components"]}
    expected = sbom_cbor_files(repo / "dist" / "packs" / f"{PACK}.gtpack")
    assert {name: h["content"] for name, h in listed.items()} == expected
    assert {h["alg"] for h in listed.values()} == {"BLAKE3"}
    return found


def test_release_attaches_exactly_one_sbom_by_the_tag_schema_and_a_rerun_adds_nothing(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    dry = run_invoke(project_copy, "release", "--dry-run", **env_for(registry.host, **client))
    assert dry.returncode == 0, dry.stderr
    predicted = lock_entry(project_copy)["sbom_digest"]
    assert predicted.startswith("sha256:")
    assert f"(referrer digest {predicted})" in dry.stdout
    assert registry.storage_files() == 0

    first = run_invoke(project_copy, "release", **env_for(registry.host, **client))
    assert first.returncode == 0, first.stderr
    entry = lock_entry(project_copy)
    assert entry["sbom_digest"] == predicted  # the same on both transports: the dry run knows no transport
    assert f"sbom {registry.host}/{REPO}:1.2.3: attached {predicted}" in first.stdout
    found = check_published_sbom(registry.host, project_copy, entry["digest"])
    assert found["annotations"]["org.opencontainers.image.created"] == "2026-01-02T03:04:05Z"
    # the fallback: an index under sha256-<hex>, as oras-go writes it
    index = raw(f"{registry.url}/v2/{REPO}/manifests/{referrers_tag(entry['digest'])}", INDEX_MEDIA_TYPE)
    assert index.status_code == 200
    assert [m["digest"] for m in index.json()["manifests"]] == [predicted]

    files_before = registry.storage_files()
    again = run_invoke(project_copy, "release", **env_for(registry.host, **client))
    assert again.returncode == 0, again.stderr
    assert f"sbom {registry.host}/{REPO}:1.2.3: already attached {predicted}" in again.stdout
    assert registry.storage_files() == files_before
    assert len(sbom_referrers(registry.host, entry["digest"])) == 1

    verified = run_invoke(project_copy, "verify", **env_for(registry.host, **client))
    assert verified.returncode == 0, verified.stderr
    assert f"sbom {predicted[:19]}, " in verified.stdout


@pytest.fixture
def api_registry(registry: Registry) -> Iterator[ReferrersApiProxy]:
    proxy = ReferrersApiProxy(registry.port)
    yield proxy
    proxy.close()


def test_a_registry_with_the_referrers_api_needs_no_index(
    client: dict[str, str],
    project_copy: Path,
    run_invoke: RunInvoke,
    registry: Registry,
    api_registry: ReferrersApiProxy,
) -> None:
    host = api_registry.host
    first = run_invoke(project_copy, "release", **env_for(host, **client))
    assert first.returncode == 0, first.stdout + first.stderr
    entry = lock_entry(project_copy)
    check_published_sbom(host, project_copy, entry["digest"])
    assert api_registry.referrers[(REPO, entry["digest"])][0]["digest"] == entry["sbom_digest"]
    # nothing was tagged sha256-<hex>: the registry's API indexes referrers itself
    tag_schema = f"{registry.url}/v2/{REPO}/manifests/{referrers_tag(entry['digest'])}"
    assert raw(tag_schema, INDEX_MEDIA_TYPE).status_code == 404
    tags = raw(f"{registry.url}/v2/{REPO}/tags/list").json()["tags"]
    assert tags == ["1.2.3"]

    again = run_invoke(project_copy, "release", **env_for(host, **client))
    assert again.returncode == 0, again.stderr
    assert "already attached" in again.stdout
    assert len(sbom_referrers(host, entry["digest"])) == 1
    assert not [path for method, path in api_registry.seen if method == "PUT" and "/manifests/sha256-" in path]


@pytest.mark.registry  # starts two fresh registries of its own, on one port in turn
def test_same_referrer_bytes_on_both_transports(project_copy: Path, run_invoke: RunInvoke, tmp_path: Path) -> None:
    """One build pushed by each transport to its own fresh registry: the same referrer manifest, byte for byte.

    Both put the bytes `referrers.compose_sbom_referrer` composed: the built-in client itself, the oras
    transport by `oras cp` of a layout holding them; each registry then holds the same manifest.
    """
    port = free_port()  # the SBOM names the pack's repository (its purl): one host for both registries
    built = run_invoke(project_copy, "build", **env_for(f"127.0.0.1:{port}"))
    assert built.returncode == 0, built.stderr
    served = []
    for client in ({"OCI_CLIENT": "python"}, {"OCI_CLIENT": "oras", "ORAS_BIN": oras_path()}):
        fresh = Registry(tmp_path / client["OCI_CLIENT"], port=port).start()
        try:
            pushed = run_invoke(project_copy, "push", **env_for(fresh.host, **client))
            assert pushed.returncode == 0, pushed.stderr
            [found] = sbom_referrers(fresh.host, lock_entry_digest(project_copy, fresh.host))
            served.append(fresh.raw_manifest(REPO, found["digest"]).content)
        finally:
            fresh.stop()
    assert served[0] == served[1]


def lock_entry_digest(repo: Path, host: str) -> str:
    record = json.loads((repo / "dist" / "packs" / "records" / f"{PACK}.published.json").read_text())
    assert record["reference"].startswith(host)
    return str(record["digest"])


def test_a_pack_published_without_an_sbom_gets_one_beside_the_referrers_of_others(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    """As by an earlier publisher: the pack alone, then someone attaches a signature; the next run adds the SBOM."""
    built = run_invoke(project_copy, "build", **env_for(registry.host))
    assert built.returncode == 0, built.stderr
    out = project_copy / "dist" / "packs"
    subprocess.run(  # the exact built manifest, copied by oras from a layout, as the pack alone
        [oras_path(), "push", "--plain-http", "--artifact-type", "application/vnd.greentic.gtpack.v1+zip",
         "--annotation-file", str(_annotations(out)), f"{registry.host}/{REPO}:1.2.3",
         f"{PACK}.gtpack:application/vnd.greentic.gtpack.v1+zip"],
        check=True, capture_output=True, timeout=60, cwd=out,
    )  # fmt: skip
    pack_digest = json.loads((out / "records" / f"{PACK}.built.json").read_text())["manifest_descriptor"]["digest"]
    assert raw(f"{registry.url}/v2/{REPO}/manifests/1.2.3").headers["Docker-Content-Digest"] == pack_digest
    (tmp_path_sig := out / "sig.json").write_text('{"signature": "by someone else"}')
    subprocess.run(
        [oras_path(), "attach", "--plain-http", "--artifact-type", "application/vnd.example.signature",
         f"{registry.host}/{REPO}@{pack_digest}", f"{tmp_path_sig.name}:application/json"],
        check=True, capture_output=True, timeout=60, cwd=out,
    )  # fmt: skip
    [other] = discover(registry.host, pack_digest)

    pushed = run_invoke(project_copy, "push", **env_for(registry.host, **client))
    assert pushed.returncode == 0, pushed.stderr
    assert f"already published {registry.host}/{REPO}:1.2.3 digest={pack_digest}" in pushed.stdout
    assert f"sbom {registry.host}/{REPO}:1.2.3: attached" in pushed.stdout
    listed = discover(registry.host, pack_digest)
    assert listed[0]["digest"] == other["digest"]  # kept, first: the SBOM was appended after it
    assert sorted(r["artifactType"] for r in listed) == [CYCLONEDX_MEDIA_TYPE, "application/vnd.example.signature"]
    locked = run_invoke(project_copy, "lock", **env_for(registry.host, **client))
    assert locked.returncode == 0, locked.stderr
    check_published_sbom(registry.host, project_copy, pack_digest)


def _annotations(out: Path) -> Path:
    """The built manifest's annotations as an oras annotation file, so `oras push` writes the same manifest."""
    manifest = json.loads((out / f"{PACK}.manifest.json").read_text())
    path = out / "annotations.json"
    path.write_text(json.dumps({"$manifest": manifest["annotations"]}))
    return path


def test_verify_reports_a_missing_or_other_sbom_and_a_rerun_attaches_it_again(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    assert run_invoke(project_copy, "release", **env_for(registry.host, **client)).returncode == 0
    entry = lock_entry(project_copy)
    index_url = f"{registry.url}/v2/{REPO}/manifests/{referrers_tag(entry['digest'])}"
    index_digest = raw(index_url, INDEX_MEDIA_TYPE).headers["Docker-Content-Digest"]
    assert requests.delete(f"{registry.url}/v2/{REPO}/manifests/{index_digest}", timeout=10).status_code == 202
    assert discover(registry.host, entry["digest"]) == []

    missing = run_invoke(project_copy, "verify", **env_for(registry.host, **client))
    assert missing.returncode == 1
    assert f"MISMATCH {PACK}: SBOM referrer {entry['sbom_digest']} is not among the referrers of" in missing.stdout

    again = run_invoke(project_copy, "release", **env_for(registry.host, **client))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"sbom {registry.host}/{REPO}:1.2.3: attached {entry['sbom_digest']}" in again.stdout
    assert len(sbom_referrers(registry.host, entry["digest"])) == 1
    assert run_invoke(project_copy, "verify", **env_for(registry.host, **client)).returncode == 0

    lock = json.loads((project_copy / "packs.lock.json").read_text())
    lock["packs"][0]["sbom_digest"] = "sha256:" + "0" * 64
    (project_copy / "other.lock.json").write_text(json.dumps(lock))
    other = run_invoke(project_copy, "verify", "--lock", "other.lock.json", **env_for(registry.host, **client))
    assert other.returncode == 1
    assert f"MISMATCH {PACK}: SBOM referrer sha256:{'0' * 64} is not among the referrers" in other.stdout


def test_a_pack_without_sbom_cbor_is_published_with_a_warning_and_no_sbom(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    stale = project_copy / "dist" / "packs" / f"{PACK}.cdx.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")  # from an earlier build: must not pass for this one's
    env = env_for(registry.host, FAKE_GREENTIC_PACK_MODE="no-sbom", **client)
    result = run_invoke(project_copy, "release", **env)
    assert result.returncode == 0, result.stderr
    assert f"warning: pack {PACK!r}: the archive holds no sbom.cbor; no SBOM is written or attached" in result.stderr
    assert "sbom " not in result.stdout
    assert not stale.exists()
    entry = lock_entry(project_copy)
    assert entry["sbom_digest"] is None
    assert discover(registry.host, entry["digest"]) == []
    verified = run_invoke(project_copy, "verify", **env)
    assert verified.returncode == 0, verified.stderr
    assert "no sbom.cbor, so no SBOM" in verified.stdout


def test_verify_reports_an_sbom_whose_hashes_differ_from_the_archive(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry, tmp_path: Path
) -> None:
    """Someone attaches another CycloneDX document to the pack; a lockfile pinning it fails verify."""
    assert run_invoke(project_copy, "release", **env_for(registry.host, **client)).returncode == 0
    entry = lock_entry(project_copy)
    document = json.loads((project_copy / "dist" / "packs" / f"{PACK}.cdx.json").read_text())
    tampered = next(c for c in document["components"] if c["name"] == "manifest.cbor")
    tampered["hashes"][0]["content"] = "0" * 64
    forged = tmp_path / "forged.cdx.json"
    forged.write_text(json.dumps(document))
    pushed = raw(f"{registry.url}/v2/{REPO}/manifests/1.2.3")
    subject = Descriptor(MANIFEST_TYPE, entry["digest"], len(pushed.content))
    referrer = compose_sbom_referrer(
        describe(CYCLONEDX_MEDIA_TYPE, forged.read_bytes()), forged.name, subject, "2026-01-02T03:04:05Z"
    )
    HttpTransport(registry.host, None, True).attach(AttachRequest(repository=REPO, referrer=referrer, document=forged))
    assert len(sbom_referrers(registry.host, entry["digest"])) == 2

    lock = json.loads((project_copy / "packs.lock.json").read_text())
    lock["packs"][0]["sbom_digest"] = referrer.descriptor.digest
    (project_copy / "forged.lock.json").write_text(json.dumps(lock))
    result = run_invoke(project_copy, "verify", "--lock", "forged.lock.json", **env_for(registry.host, **client))
    assert result.returncode == 1
    assert (
        f"MISMATCH {PACK}: SBOM {referrer.descriptor.digest} does not match the archive's sbom.cbor "
        "(it differs for manifest.cbor)"
    ) in result.stdout
    # the lockfile of the release still verifies: it pins the publisher's own SBOM
    assert run_invoke(project_copy, "verify", **env_for(registry.host, **client)).returncode == 0


@pytest.mark.parametrize("jobs", ["3", "1"])
def test_every_pack_gets_exactly_one_sbom_when_pushed_side_by_side(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry, jobs: str
) -> None:
    """--jobs 3: no pack waits for another's slot, and oras copies each with its referrer (`cp -r`).
    --jobs 1: two do, and oras puts only their archives in the slot (`blob push`), then copies each with
    its referrer beside the next pack's upload."""
    for name in ("second-pack", "third-pack"):
        add_pack(project_copy, name)
    git(project_copy, "add", "-A")
    git(project_copy, "commit", "-qm", "more packs")
    result = run_invoke(project_copy, "release", "--jobs", jobs, **env_for(registry.host, CI="true", **client))
    assert result.returncode == 0, result.stdout + result.stderr
    writes = [line for line in result.stdout.splitlines() if " cp " in line or " blob push " in line]
    if client["OCI_CLIENT"] == "oras":
        archives = [line for line in writes if " blob push " in line and "@sha256:" in line]
        with_referrer = [line for line in writes if " cp -r --from-oci-layout " in line]
        assert (len(archives), len(with_referrer), len(writes)) == ((0 if jobs == "3" else 2), 3, 3 + len(archives))
    entries = json.loads((project_copy / "packs.lock.json").read_text())["packs"]
    assert len(entries) == 3
    for entry in entries:
        pinned = f"{registry.host}/acme/greentic-packs/{entry['name']}@{entry['digest']}"
        out = subprocess.run(
            [oras_path(), "discover", "--plain-http", "--format", "json", pinned],
            check=True, capture_output=True, timeout=60,
        ).stdout  # fmt: skip
        [found] = json.loads(out)["referrers"]
        assert (found["artifactType"], found["digest"]) == (CYCLONEDX_MEDIA_TYPE, entry["sbom_digest"])
    assert len({e["sbom_digest"] for e in entries}) == 3
