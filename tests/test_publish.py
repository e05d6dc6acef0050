"""Publishing through the built-in client to real registries, checked with raw HTTP and skopeo."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest
import requests

from testsupport.registries import PASSWORD, USER, Registry

from .conftest import RunInvoke, git, oras_path

PACK = "messaging-provider-bundle"
REPO = f"acme/greentic-packs/{PACK}"


def env_for(registry: Registry, **extra: str) -> dict[str, str]:
    return {"OCI_REGISTRY": registry.host, "OCI_ORG": "acme", "PACK_VERSION": "1.2.3", **extra}


def via(client: dict[str, str], uploaded: int) -> str:
    """How a published line names the transport: only the built-in client counts the blobs it sent."""
    return f"built-in client, {uploaded} blob(s) uploaded" if client["OCI_CLIENT"] == "python" else "oras CLI"


def lock_of(repo: Path) -> dict[str, object]:
    return json.loads((repo / "packs.lock.json").read_text())  # type: ignore[no-any-return]


def add_pack(repo: Path, name: str) -> None:
    folder = repo / "packs" / name
    (folder / "flows").mkdir(parents=True)
    (folder / "pack.yaml").write_text(f"pack_id: {name}\nversion: 0.1.0\nkind: provider\npublisher: Greentic\n")
    (folder / "flows" / "main.ygtc").write_text("id: main\ntype: messaging\nnodes: {}\n")


def test_release_publishes_what_the_dry_run_predicted(
    client: dict[str, str], project_copy: Path, run_invoke_process: RunInvoke, registry: Registry
) -> None:
    dry = run_invoke_process(project_copy, "release", "--dry-run", **env_for(registry, **client))
    assert dry.returncode == 0, dry.stderr
    predicted = lock_of(project_copy)["packs"][0]["expected_digest"]  # type: ignore[index]
    assert registry.storage_files() == 0  # the dry run touched nothing

    result = run_invoke_process(project_copy, "release", **env_for(registry, **client))
    assert result.returncode == 0, result.stderr
    lock = lock_of(project_copy)
    [entry] = lock["packs"]  # type: ignore[misc]
    assert lock["dry_run"] is False
    assert entry["digest"] == predicted
    assert entry["oci_ref"] == f"{registry.host}/{REPO}:1.2.3"
    assert entry["pinned_ref"] == f"{registry.host}/{REPO}@{predicted}"
    # independently of our client: raw HTTP and skopeo see the same manifest
    raw = registry.raw_manifest(REPO, "1.2.3")
    assert raw.status_code == 200
    assert raw.headers["Docker-Content-Digest"] == predicted
    assert "sha256:" + hashlib.sha256(raw.content).hexdigest() == predicted
    assert registry.skopeo_raw(REPO, "1.2.3") == raw.content
    assert raw.content == (project_copy / "dist" / "packs" / f"{PACK}.manifest.json").read_bytes()
    manifest = json.loads(raw.content)
    assert manifest["artifactType"] == "application/vnd.greentic.gtpack.v1+zip"
    layer = manifest["layers"][0]
    assert layer["digest"] == entry["gtpack_sha256"]
    assert registry.raw_blob_sha256(REPO, layer["digest"]) == entry["gtpack_sha256"]
    assert registry.raw_manifest(REPO, "latest").status_code == 404  # no latest unless asked
    assert (
        f"published {registry.host}/{REPO}:1.2.3 digest={predicted} tags=1.2.3 (via {via(client, 2)})" in result.stdout
    )

    # a second release uploads nothing and succeeds
    files_before = registry.storage_files()
    again = run_invoke_process(project_copy, "release", **env_for(registry, **client))
    assert again.returncode == 0, again.stderr
    assert f"already published {registry.host}/{REPO}:1.2.3 digest={predicted}" in again.stdout
    transport = "built-in client" if client["OCI_CLIENT"] == "python" else "oras CLI"
    assert f"(via {transport}, 0 blob(s) uploaded)" in again.stdout  # nothing pushed at all
    assert registry.storage_files() == files_before
    assert lock_of(project_copy)["packs"][0]["digest"] == predicted  # type: ignore[index]

    verified = run_invoke_process(project_copy, "verify", **env_for(registry, **client))
    assert verified.returncode == 0, verified.stderr
    assert f"ok {registry.host}/{REPO}:1.2.3 @ {predicted}" in verified.stdout


def test_release_tags_are_immutable_unless_forced(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    assert run_invoke(project_copy, "release", **env_for(registry, **client)).returncode == 0
    first = lock_of(project_copy)["packs"][0]["digest"]  # type: ignore[index]
    lock_before = (project_copy / "packs.lock.json").read_bytes()
    (project_copy / "packs" / PACK / "assets").mkdir()
    (project_copy / "packs" / PACK / "assets" / "new.txt").write_text("different content\n")
    git(project_copy, "add", "-A")
    git(project_copy, "commit", "-qm", "change")

    refused = run_invoke(project_copy, "release", **env_for(registry, **client))
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert f"plan {registry.host}/{REPO}:1.2.3: REFUSED: holds {first} -> sha256:" in refused.stdout
    assert "release tags are immutable" in refused.stdout
    assert "error: 1 of 1 pack(s) cannot be published as planned; nothing was pushed" in refused.stderr
    assert (project_copy / "packs.lock.json").read_bytes() == lock_before
    assert registry.raw_manifest(REPO, "1.2.3").headers["Docker-Content-Digest"] == first

    forced = run_invoke(project_copy, "release", "--force", **env_for(registry, **client))
    assert forced.returncode == 0, forced.stderr
    entry = lock_of(project_copy)["packs"][0]  # type: ignore[index]
    second = entry["digest"]
    assert second != first
    assert registry.raw_manifest(REPO, "1.2.3").headers["Docker-Content-Digest"] == second
    # the overwrite is named, old and new, in the plan, the result and the lockfile
    assert f"plan {registry.host}/{REPO}:1.2.3: overwrite {first} -> {second} (--force; the archive changed" in (
        forced.stdout
    )
    assert f"digest={second} tags=1.2.3 (via " in forced.stdout and f", 1.2.3 was {first})" in forced.stdout
    assert entry["tags"] == ["1.2.3"] and entry["replaced"] == {"1.2.3": first}


def test_latest_points_at_the_same_manifest(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    result = run_invoke(project_copy, "release", "--latest", **env_for(registry, **client))
    assert result.returncode == 0, result.stderr
    version = registry.raw_manifest(REPO, "1.2.3")
    latest = registry.raw_manifest(REPO, "latest")
    assert latest.status_code == 200 and latest.content == version.content
    assert latest.headers["Docker-Content-Digest"] == lock_of(project_copy)["packs"][0]["digest"]  # type: ignore[index]


def test_build_push_lock_as_separate_tasks(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    env = env_for(registry, **client)
    assert run_invoke(project_copy, "build", **env).returncode == 0
    pushed = run_invoke(project_copy, "push", "--jobs", "2", **env)
    assert pushed.returncode == 0, pushed.stderr
    assert not (project_copy / "packs.lock.json").exists()
    locked = run_invoke(project_copy, "lock", **env)
    assert locked.returncode == 0, locked.stderr
    digest = lock_of(project_copy)["packs"][0]["digest"]  # type: ignore[index]
    assert registry.raw_manifest(REPO, "1.2.3").headers["Docker-Content-Digest"] == digest


def test_push_without_build(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    result = run_invoke(project_copy, "push", **env_for(registry, **client))
    assert result.returncode == 2
    assert f"error: pack '{PACK}' has not been built into" in result.stderr


def _tamper(gtpack: Path) -> None:
    """Another archive of the same size in place of the built one: its last byte flipped."""
    data = bytearray(gtpack.read_bytes())
    data[-1] ^= 0xFF
    gtpack.write_bytes(bytes(data))


def test_an_archive_changed_after_the_build_is_refused_before_the_push(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    env = env_for(registry, **client)
    assert run_invoke(project_copy, "build", **env).returncode == 0
    gtpack = project_copy / "dist" / "packs" / f"{PACK}.gtpack"
    built = gtpack.stat()
    _tamper(gtpack)
    os.utime(gtpack, ns=(built.st_atime_ns, built.st_mtime_ns + 1_000_000_000))  # a later write, as any edit
    result = run_invoke(project_copy, "push", **env)
    assert result.returncode == 2, result.stdout
    assert f"error: pack '{PACK}': {gtpack} changed since it was built; rebuild it" in result.stderr
    assert registry.storage_files() == 0  # refused before the registry was asked anything


def test_an_archive_changed_behind_its_size_and_time_is_refused_by_the_registry(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    """The push trusts an archive whose size and modification time match its build record (no second
    hash); a file forged to match them still never lands: the registry hashes what it receives."""
    env = env_for(registry, **client)
    assert run_invoke(project_copy, "build", **env).returncode == 0
    gtpack = project_copy / "dist" / "packs" / f"{PACK}.gtpack"
    built = gtpack.stat()
    _tamper(gtpack)
    os.utime(gtpack, ns=(built.st_atime_ns, built.st_mtime_ns))
    result = run_invoke(project_copy, "push", **env)
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    [failed] = [line for line in result.stdout.splitlines() if line.startswith(f"FAILED {PACK}: ")]
    assert "DIGEST_INVALID" in failed or "digest invalid" in failed, failed  # the registry's answer, either way
    assert registry.raw_manifest(REPO, "1.2.3").status_code == 404  # nothing published under the tag
    assert not (project_copy / "dist" / "packs" / f"{PACK}.published.json").exists()


def test_an_archive_changed_behind_a_blob_the_registry_holds_gets_no_tag(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    """The built-in client sends nothing for a blob the registry holds (its mount answers 201), so no
    registry hashes the file: the push does, and writes the manifests only once it matches the build."""
    env = env_for(registry, OCI_CLIENT="python")
    assert run_invoke(project_copy, "build", **env).returncode == 0
    gtpack = project_copy / "dist" / "packs" / f"{PACK}.gtpack"
    layer = json.loads((project_copy / "dist" / "packs" / f"{PACK}.manifest.json").read_text())["layers"][0]
    started = requests.post(f"{registry.url}/v2/{REPO}/blobs/uploads/", timeout=10)
    assert started.status_code == 202
    location = requests.compat.urljoin(registry.url, started.headers["Location"])
    placed = requests.put(f"{location}&digest={layer['digest']}", data=gtpack.read_bytes(), timeout=10)
    assert placed.status_code == 201  # the built archive's blob, as an earlier, interrupted run left it
    built = gtpack.stat()
    _tamper(gtpack)
    os.utime(gtpack, ns=(built.st_atime_ns, built.st_mtime_ns))
    result = run_invoke(project_copy, "push", **env)
    assert result.returncode == 1, result.stdout
    assert f"FAILED {PACK}: pack '{PACK}': {gtpack} changed since it was built; rebuild it" in result.stdout
    assert registry.raw_manifest(REPO, "1.2.3").status_code == 404  # no tag names the changed file's build


@pytest.mark.parametrize("held", [False, True], ids=["sent", "held"])
def test_oras_tags_no_changed_archive_of_a_pack_that_others_wait_behind(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry, held: bool
) -> None:
    """With packs waiting for its slot, oras puts only the archive in it (`blob push`, by the build's
    digest) and copies the manifests later: the registry refuses a changed file it receives, and one it
    already holds is not sent, so the push's own hash refuses it; either way no tag names it."""
    add_pack(project_copy, "second-pack")
    git(project_copy, "add", "-A")
    git(project_copy, "commit", "-qm", "a second pack")
    env = env_for(registry, OCI_CLIENT="oras", ORAS_BIN=oras_path())
    assert run_invoke(project_copy, "build", **env).returncode == 0
    gtpack = project_copy / "dist" / "packs" / f"{PACK}.gtpack"
    if held:  # the built archive's blob, as an earlier, interrupted run left it
        layer = json.loads((project_copy / "dist" / "packs" / f"{PACK}.manifest.json").read_text())["layers"][0]
        started = requests.post(f"{registry.url}/v2/{REPO}/blobs/uploads/", timeout=10)
        location = requests.compat.urljoin(registry.url, started.headers["Location"])
        assert requests.put(f"{location}&digest={layer['digest']}", data=gtpack.read_bytes(), timeout=10).ok
    built = gtpack.stat()
    _tamper(gtpack)
    os.utime(gtpack, ns=(built.st_atime_ns, built.st_mtime_ns))
    result = run_invoke(project_copy, "--echo", "push", "--jobs", "1", **env)
    assert result.returncode == 1, result.stdout
    assert " blob push " in result.stdout  # the first pack waited behind: only its archive went in the slot
    [failed] = [line for line in result.stdout.splitlines() if line.startswith(f"FAILED {PACK}: ")]
    if held:
        assert failed.endswith(f"pack '{PACK}': {gtpack} changed since it was built; rebuild it"), failed
    else:
        assert "DIGEST_INVALID" in failed or "digest invalid" in failed, failed  # the registry's answer
    assert registry.raw_manifest(REPO, "1.2.3").status_code == 404  # no tag names the changed file
    assert registry.raw_manifest("acme/greentic-packs/second-pack", "1.2.3").status_code == 200
    assert "Traceback" not in result.stderr


def test_an_archive_forged_after_its_release_is_never_recorded(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    """Nothing is uploaded for a pack already published, so no registry checks the file: the push hashes it."""
    env = env_for(registry, **client)
    assert run_invoke(project_copy, "release", **env).returncode == 0
    lock_before = (project_copy / "packs.lock.json").read_bytes()
    gtpack = project_copy / "dist" / "packs" / f"{PACK}.gtpack"
    built = gtpack.stat()
    _tamper(gtpack)
    os.utime(gtpack, ns=(built.st_atime_ns, built.st_mtime_ns))
    dry = run_invoke(project_copy, "push", "--dry-run", **env, LOCK_FILE="dry.lock.json")  # hashes first
    assert dry.returncode == 2, dry.stdout
    assert f"error: pack '{PACK}': {gtpack} changed since it was built; rebuild it" in dry.stderr
    result = run_invoke(project_copy, "push", "lock", **env)
    assert result.returncode == 1, result.stdout
    assert f"FAILED {PACK}: pack '{PACK}': {gtpack} changed since it was built; rebuild it" in result.stdout
    assert (project_copy / "packs.lock.json").read_bytes() == lock_before  # the lockfile was not rewritten
    assert "Traceback" not in result.stderr


def test_one_refused_pack_stops_the_push_before_anything_is_written(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    add_pack(project_copy, "second-pack")
    git(project_copy, "add", "-A")
    git(project_copy, "commit", "-qm", "second pack")
    # someone already published other content as second-pack:1.2.3
    assert (
        run_invoke(
            project_copy,
            "release",
            "--pack",
            "second-pack",
            **env_for(registry, **client, PACK_VERSION="1.2.3", SOURCE_DATE_EPOCH="1"),
        ).returncode
        == 0
    )
    (project_copy / "packs.lock.json").unlink()
    result = run_invoke(project_copy, "release", "--jobs", "1", **env_for(registry, **client))
    assert result.returncode == 1
    assert f"plan {registry.host}/{REPO}:1.2.3: publish sha256:" in result.stdout  # the good pack was planned...
    assert f"plan {registry.host}/acme/greentic-packs/second-pack:1.2.3: REFUSED: holds" in result.stdout
    assert "error: 1 of 2 pack(s) cannot be published as planned; nothing was pushed" in result.stderr
    assert registry.raw_manifest(REPO, "1.2.3").status_code == 404  # ...and not pushed: no half release
    assert not (project_copy / "packs.lock.json").exists()
    assert "Traceback" not in result.stderr


def test_step_summary(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.md"
    assert (
        run_invoke(project_copy, "release", **env_for(registry, **client, GITHUB_STEP_SUMMARY=str(summary))).returncode
        == 0
    )
    text = summary.read_text()
    digest = lock_of(project_copy)["packs"][0]["digest"]  # type: ignore[index]
    assert "| pack | reference | digest | tags | size | status |" in text
    assert f"| {PACK} | `{registry.host}/{REPO}:1.2.3` | `{digest}` | 1.2.3 |" in text


def test_an_unwritable_step_summary_is_a_warning(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry, tmp_path: Path
) -> None:
    summary = tmp_path / "no-such-folder" / "summary.md"
    result = run_invoke(project_copy, "release", **env_for(registry, GITHUB_STEP_SUMMARY=str(summary)))
    assert result.returncode == 0, result.stderr
    assert f"warning: GITHUB_STEP_SUMMARY: cannot append to {summary} (No such file or directory)" in result.stderr
    assert lock_of(project_copy)["packs"][0]["digest"].startswith("sha256:")  # type: ignore[index]


def test_a_github_token_without_its_actor_is_named_not_used_quietly(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    result = run_invoke(project_copy, "release", **env_for(registry, GITHUB_TOKEN="ghs_canary_token_value"))
    assert result.returncode == 0, result.stderr  # an anonymous registry: the push goes on, without the token
    assert "warning: GITHUB_TOKEN is set but GITHUB_ACTOR is not, so the token is not used" in result.stderr
    assert "ghs_canary_token_value" not in result.stdout + result.stderr


def test_verify_rejects_a_tampered_lockfile(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    assert run_invoke(project_copy, "release", **env_for(registry, **client)).returncode == 0
    lock = lock_of(project_copy)
    entry = lock["packs"][0]  # type: ignore[index]
    entry["digest"] = "sha256:" + "0" * 64
    entry["pinned_ref"] = f"{registry.host}/{REPO}@{entry['digest']}"
    tampered = project_copy / "tampered.json"
    tampered.write_text(json.dumps(lock))
    result = run_invoke(project_copy, "verify", "--lock", "tampered.json", **env_for(registry, **client))
    assert result.returncode == 1
    assert f"MISMATCH {PACK}: tag 1.2.3 points at sha256:" in result.stdout
    assert "error: tampered.json: 1 of 1 pack(s) do not match the registry" in result.stderr


def test_verify_rejects_bad_lockfiles(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    (project_copy / "garbage.json").write_text("{not json")
    result = run_invoke(project_copy, "verify", "--lock", "garbage.json")
    assert result.returncode == 2 and "garbage.json: not valid JSON" in result.stderr
    (project_copy / "shape.json").write_text(json.dumps({"packs": []}))
    result = run_invoke(project_copy, "verify", "--lock", "shape.json")
    assert result.returncode == 2 and "shape.json: not a packs.lock.json (expected keys" in result.stderr
    assert run_invoke(project_copy, "release", "--dry-run", **env_for(registry, **client)).returncode == 0
    result = run_invoke(project_copy, "verify")
    assert result.returncode == 2 and "is a dry-run lockfile" in result.stderr
    result = run_invoke(project_copy, "verify", "--lock", "missing.json")
    assert result.returncode == 2 and "missing.json: cannot read the lockfile" in result.stderr


def test_basic_auth(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, basic_registry: Registry
) -> None:
    anonymous = run_invoke(project_copy, "release", **env_for(basic_registry, **client))
    assert anonymous.returncode == 1
    assert "the registry requires credentials; set OCI_USERNAME and OCI_PASSWORD" in anonymous.stdout

    wrong = run_invoke(
        project_copy, "release", **env_for(basic_registry, **client, OCI_USERNAME=USER, OCI_PASSWORD="wrong-pass")
    )
    assert wrong.returncode == 1
    assert f"access denied as {USER}" in wrong.stdout
    assert "wrong-pass" not in wrong.stdout + wrong.stderr

    good = run_invoke(
        project_copy, "release", **env_for(basic_registry, **client, OCI_USERNAME=USER, OCI_PASSWORD=PASSWORD)
    )
    assert good.returncode == 0, good.stdout + good.stderr
    assert PASSWORD not in good.stdout + good.stderr
    digest = lock_of(project_copy)["packs"][0]["digest"]  # type: ignore[index]
    assert basic_registry.raw_manifest(REPO, "1.2.3").headers["Docker-Content-Digest"] == digest
    verified = run_invoke(
        project_copy, "verify", **env_for(basic_registry, **client, OCI_USERNAME=USER, OCI_PASSWORD=PASSWORD)
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_docker_config_credentials(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, basic_registry: Registry, tmp_path: Path
) -> None:
    config_dir = tmp_path / "docker"
    config_dir.mkdir()
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (config_dir / "config.json").write_text(json.dumps({"auths": {basic_registry.host: {"auth": auth}}}))
    result = run_invoke(project_copy, "release", **env_for(basic_registry, **client, DOCKER_CONFIG=str(config_dir)))
    assert result.returncode == 0, result.stdout + result.stderr
    (config_dir / "config.json").write_text("{ this is not json")
    broken = run_invoke(project_copy, "release", **env_for(basic_registry, **client, DOCKER_CONFIG=str(config_dir)))
    assert broken.returncode == 2
    assert broken.stderr.strip().splitlines()[-1] == (
        f"error: {config_dir}/config.json: not a readable Docker config file (JSONDecodeError)"
    )


def test_docker_credential_helper(
    client: dict[str, str],
    project_copy: Path,
    run_invoke: RunInvoke,
    basic_registry: Registry,
    tmp_path: Path,
    builder_bin: Path,
) -> None:
    config_dir = tmp_path / "docker"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(json.dumps({"credHelpers": {basic_registry.host: "testhelper"}}))
    helper = builder_bin / "docker-credential-testhelper"  # a folder already on the task's PATH
    helper.write_text(
        f'#!/bin/sh\nread host\necho \'{{"ServerURL":"\'$host\'","Username":"{USER}","Secret":"{PASSWORD}"}}\'\n'
    )
    helper.chmod(0o755)
    result = run_invoke(project_copy, "release", **env_for(basic_registry, **client, DOCKER_CONFIG=str(config_dir)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_token_auth(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, token_registry: Registry
) -> None:
    wrong = run_invoke(
        project_copy, "release", **env_for(token_registry, **client, GITHUB_ACTOR=USER, GITHUB_TOKEN="bad-token")
    )
    assert wrong.returncode == 1
    # both transports: the plan's resolve, a request of the built-in client, meets the refusal first
    assert f"authentication as {USER} (GITHUB_ACTOR/GITHUB_TOKEN) was refused" in wrong.stdout
    assert "bad-token" not in wrong.stdout + wrong.stderr

    anonymous = run_invoke(project_copy, "release", **env_for(token_registry, **client))
    assert anonymous.returncode == 1 and "access denied anonymously" in anonymous.stdout

    good = run_invoke(
        project_copy, "release", **env_for(token_registry, **client, GITHUB_ACTOR=USER, GITHUB_TOKEN=PASSWORD)
    )
    assert good.returncode == 0, good.stdout + good.stderr
    digest = lock_of(project_copy)["packs"][0]["digest"]  # type: ignore[index]
    assert token_registry.raw_manifest(REPO, "1.2.3").headers["Docker-Content-Digest"] == digest
    assert token_registry.skopeo_raw(REPO, "1.2.3") == token_registry.raw_manifest(REPO, "1.2.3").content
    assert token_registry.token_server is not None
    assert any(r["user"] == USER for r in token_registry.token_server.requests)


def test_verify_rejects_each_kind_of_mismatch(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    assert run_invoke(project_copy, "release", **env_for(registry, **client)).returncode == 0
    good = lock_of(project_copy)
    entry = good["packs"][0]  # type: ignore[index]
    tamperings = {
        "pinned_ref": ({"pinned_ref": f"{registry.host}/other@{entry['digest']}"}, "pinned_ref"),
        "digest-format": ({"digest": "md5:1234"}, "digest 'md5:1234' is not a sha256 manifest digest"),
        "other-registry": ({"oci_ref": f"elsewhere.example/{REPO}:1.2.3"}, "is not <registry>/<repository>:<tag>"),
        "missing-tag": ({"oci_ref": f"{registry.host}/{REPO}:9.9.9", "pinned_ref": None}, "tag 9.9.9 is not in"),
        "layer": ({"gtpack_sha256": "sha256:" + "1" * 64}, "points at layer"),
        "size": ({"size": 1}, "says the layer is"),
    }
    for name, (change, message) in tamperings.items():
        bad = {**good, "packs": [{**entry, **change}]}
        (project_copy / f"{name}.json").write_text(json.dumps(bad))
        result = run_invoke(project_copy, "verify", "--lock", f"{name}.json", **env_for(registry, **client))
        assert result.returncode in (1, 2), name
        assert message in result.stdout + result.stderr, (name, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr


def test_verify_tells_access_from_content(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, basic_registry: Registry
) -> None:
    creds = {"OCI_USERNAME": USER, "OCI_PASSWORD": PASSWORD}
    assert run_invoke(project_copy, "release", **env_for(basic_registry, **client, **creds)).returncode == 0

    # refused access is an error with its own exit code, never a MISMATCH
    anonymous = run_invoke(project_copy, "verify", **env_for(basic_registry, **client))
    assert anonymous.returncode == 3, anonymous.stdout + anonymous.stderr
    assert "MISMATCH" not in anonymous.stdout
    assert anonymous.stderr.strip().splitlines()[-1].startswith(f"error: {basic_registry.host}: ")

    # a lockfile naming another registry than OCI_REGISTRY gets no credentials, and is told so
    elsewhere = run_invoke(
        project_copy, "verify", **{**env_for(basic_registry, **client, **creds), "OCI_REGISTRY": "ghcr.io"}
    )
    assert elsewhere.returncode == 3
    assert f"names {basic_registry.host}, not the configured OCI_REGISTRY ghcr.io: checking it anonymously" in (
        elsewhere.stdout
    )

    # a lockfile's registry is validated before anything is sent anywhere
    lock = lock_of(project_copy)
    (project_copy / "hostile.json").write_text(json.dumps({**lock, "registry": "localhost:1@127.0.0.7"}))
    hostile = run_invoke(project_copy, "verify", "--lock", "hostile.json", **env_for(basic_registry, **client, **creds))
    assert hostile.returncode == 2
    assert "hostile.json: registry 'localhost:1@127.0.0.7' is not a registry host[:port]" in hostile.stderr
