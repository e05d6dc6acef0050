"""What Greentic's consumers get from a release: `components`, signatures, `invoke verify --trusted-key`,
`invoke keygen`, the signing key kept secret, and the anonymous-pull check (issue 20)."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pack_publisher.commands import consumers as pullability
from pack_publisher.config.environment import child_environment
from pack_publisher.oci import signing
from pack_publisher.runtime.errors import ConfigError
from pack_publisher.runtime.redact import Redactor
from pack_publisher.state import lockfile
from testsupport.referrers_api import ReferrersApiProxy
from testsupport.registries import PASSWORD, USER, Registry

from .conftest import RunInvoke, git
from .test_publish import PACK, add_pack, env_for, lock_of

SECOND = "second-pack"


def key_pair(folder: Path) -> tuple[str, Path]:
    """A fresh signing key: (PKCS#8 PEM text, path of its SPKI public key)."""
    private_pem, public_pem, _ = signing.new_key_pair()
    folder.mkdir(parents=True, exist_ok=True)
    public = folder / f"pub-{len(list(folder.iterdir()))}.pem"
    public.write_bytes(public_pem)
    return private_pem.decode(), public


def two_packs(repo: Path) -> None:
    add_pack(repo, SECOND)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "second pack")


def spy(folder: Path, name: str, real: str, log: Path) -> Path:
    """A wrapper that logs its environment and argv to `log`, then runs `real`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f'#!/bin/sh\n{{ env; echo "ARGV: $*"; }} >> "{log}"\nexec "{real}" "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def rewrite(repo: Path, change: object) -> Path:
    """Apply `change` to the lockfile's JSON and write it as tampered.json."""
    lock = lock_of(repo)
    change(lock)  # type: ignore[operator]
    (repo / "tampered.json").write_text(json.dumps(lock))
    return repo / "tampered.json"


def test_signed_release_keeps_the_key_secret_and_verifies(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry, tmp_path: Path
) -> None:
    two_packs(project_copy)
    private_pem, public = key_pair(tmp_path / "keys")
    log = tmp_path / "children.log"
    spies = tmp_path / "spies"
    wrapped = dict(client)
    if client["OCI_CLIENT"] == "oras":
        wrapped["ORAS_BIN"] = str(spy(spies, "oras", client["ORAS_BIN"], log))
    builder = spy(spies, "greentic-pack-spy", "greentic-pack", log)
    env = env_for(registry, **wrapped, PACK_SIGNING_KEY=private_pem, PACKC_BIN=str(builder))
    result = run_invoke(project_copy, "release", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"signed by key {signing.key_id(signing.load_public_key(public.read_bytes(), 'k'))}" in result.stdout
    assert "all 2 pack(s) can be pulled anonymously" in result.stdout

    lock = lock_of(project_copy)
    assert lock["schema_version"] == 1
    components = lock["components"]
    assert [c["name"] for c in components] == [PACK, SECOND]  # type: ignore[union-attr, index]
    for component, entry in zip(components, lock["packs"], strict=True):  # type: ignore[call-overload]
        assert component["reference"] == f"oci://{entry['pinned_ref']}"
        assert component["digest"] == entry["digest"]
        envelope = json.loads(base64.b64decode(component["signature"]))
        statement = json.loads(base64.b64decode(envelope["payload"]))
        assert statement["subject"] == [{"name": component["reference"], "digest": {"sha256": entry["digest"][7:]}}]
        assert statement["predicate"]["build_type"] == "gtpack"
        assert statement["predicate"]["builder_id"].startswith("greentic-pack-publisher/")
        assert statement["predicate"]["built_at"] == "2026-01-02T03:04:05Z"  # the commit time, as `created`

    # the key: in no output, no file the run left, no child's environment or argv
    body = "".join(private_pem.splitlines()[1:-1])
    children = log.read_text()
    assert "ARGV:" in children and "PATH=" in children
    for text in (result.stdout, result.stderr, children):
        assert body not in text and "PACK_SIGNING_KEY" not in text
    for path in [*project_copy.rglob("*"), *tmp_path.joinpath("home").rglob("*")]:
        if path.is_file() and ".git" not in path.parts:
            assert body.encode() not in path.read_bytes(), path

    verified = run_invoke(project_copy, "verify", "--trusted-key", str(public), "--require-signature", **env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.count(", signed by ") == 2


def test_verify_refuses_tampered_and_untrusted_signatures(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry, tmp_path: Path
) -> None:
    two_packs(project_copy)
    private_pem, public = key_pair(tmp_path / "keys")
    _, stranger = key_pair(tmp_path / "keys")
    env = env_for(registry, OCI_CLIENT="python", PACK_SIGNING_KEY=private_pem)
    assert run_invoke(project_copy, "release", **env).returncode == 0

    def verify(lock: Path | None, *keys: Path, require: bool = False) -> tuple[int, list[str]]:
        args = ["verify", *(["--lock", str(lock)] if lock else [])]
        args += [a for k in keys for a in ("--trusted-key", str(k))] + (["--require-signature"] if require else [])
        done = run_invoke(project_copy, *args, OCI_REGISTRY=registry.host)
        assert "Traceback" not in done.stderr
        return done.returncode, [line for line in done.stdout.splitlines() if line.startswith("MISMATCH")]

    code, lines = verify(None, stranger)
    assert code == 1 and len(lines) == 2 and all("signed by an untrusted key (key ids: " in line for line in lines)
    assert verify(None, stranger, public) == (0, [])  # one trusted key among several is enough

    def swap(lock: dict[str, list[dict[str, str]]]) -> None:
        first, second = lock["components"]
        first["signature"], second["signature"] = second["signature"], first["signature"]

    code, lines = verify(rewrite(project_copy, swap), public)
    assert code == 1 and len(lines) == 2 and all("signature: subject digest mismatch" in line for line in lines)

    def other_digest(lock: dict[str, list[dict[str, str]]]) -> None:
        lock["components"][0]["digest"] = lock["components"][1]["digest"]

    code, lines = verify(rewrite(project_copy, other_digest), public)
    assert code == 1 and lines == [
        f"MISMATCH {PACK}: components[] digest {lock_of(project_copy)['components'][1]['digest']} differs from "  # type: ignore[index]
        f"packs[] digest {lock_of(project_copy)['packs'][0]['digest']}"  # type: ignore[index]
    ]

    def payload_type(lock: dict[str, list[dict[str, str]]]) -> None:
        component = lock["components"][1]
        envelope = json.loads(base64.b64decode(component["signature"]))
        envelope["payloadType"] = "application/json"
        component["signature"] = base64.b64encode(json.dumps(envelope).encode()).decode()

    code, lines = verify(rewrite(project_copy, payload_type), public)
    assert code == 1 and lines == [
        f"MISMATCH {SECOND}: signature: unsupported payloadType 'application/json', "
        "expected 'application/vnd.in-toto+json'"
    ]

    def bad_sig(lock: dict[str, list[dict[str, str]]]) -> None:
        component = lock["components"][0]
        envelope = json.loads(base64.b64decode(component["signature"]))
        envelope["signatures"][0]["sig"] = base64.b64encode(bytes(64)).decode()
        component["signature"] = base64.b64encode(json.dumps(envelope).encode()).decode()

    code, lines = verify(rewrite(project_copy, bad_sig), public)
    assert code == 1 and len(lines) == 1 and "signature does not verify against trusted key" in lines[0]

    def unsigned(lock: dict[str, list[dict[str, str]]]) -> None:
        del lock["components"][1]["signature"]

    assert verify(rewrite(project_copy, unsigned), public)[0] == 0  # unsigned is allowed unless required
    assert verify(rewrite(project_copy, unsigned), public, require=True) == (
        1,
        [f"MISMATCH {SECOND}: unsigned (--require-signature)"],
    )


def test_require_signature_refuses_before_building(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    env = env_for(registry, OCI_CLIENT="python", REQUIRE_SIGNATURE="1")
    refused = run_invoke(project_copy, "release", **env)
    assert refused.returncode == 2
    assert (
        refused.stderr.strip()
        .splitlines()[-1]
        .startswith("error: REQUIRE_SIGNATURE=1 but neither PACK_SIGNING_KEY nor PACK_SIGNING_KEY_FILE is set")
    )
    assert not list((project_copy / "dist").rglob("*.gtpack")) and registry.storage_files() == 0
    assert run_invoke(project_copy, "release", "--dry-run", **env).returncode == 0  # a PR check has no secrets

    garbage = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbCwganVzdCB0ZXh0\n-----END PRIVATE KEY-----\n"
    bad = run_invoke(project_copy, "release", **env_for(registry, OCI_CLIENT="python", PACK_SIGNING_KEY=garbage))
    assert bad.returncode == 2
    assert "error: PACK_SIGNING_KEY / PACK_SIGNING_KEY_FILE: not an unencrypted PKCS#8" in bad.stderr
    assert "bm90IGEga2V5IGF0IGFsbCwganVzdCB0ZXh0" not in bad.stdout + bad.stderr
    assert registry.storage_files() == 0


def test_key_file_and_keygen(project_copy: Path, run_invoke: RunInvoke, registry: Registry, tmp_path: Path) -> None:
    made = run_invoke(project_copy, "keygen", "--private-key", str(tmp_path / "keys" / "signing.pem"))
    assert made.returncode == 0, made.stderr
    private, public = tmp_path / "keys" / "signing.pem", tmp_path / "keys" / "signing.pem.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert f"gh secret set PACK_SIGNING_KEY < {private}" in made.stdout
    assert "BEGIN" not in made.stdout  # the key itself is never printed
    again = run_invoke(project_copy, "keygen", "--private-key", str(private))
    assert again.returncode == 2 and "exists; not overwriting a key" in again.stderr

    env = env_for(registry, OCI_CLIENT="python", PACK_SIGNING_KEY_FILE=str(private), REQUIRE_SIGNATURE="1")
    result = run_invoke(project_copy, "release", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    verified = run_invoke(project_copy, "verify", "--trusted-key", str(public), "--require-signature", **env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    both = run_invoke(project_copy, "release", **env, PACK_SIGNING_KEY=private.read_text())
    assert both.returncode == 2 and "PACK_SIGNING_KEY and PACK_SIGNING_KEY_FILE are both set" in both.stderr


def test_the_key_is_masked_and_withheld_from_children(monkeypatch: pytest.MonkeyPatch) -> None:
    private_pem = signing.new_key_pair()[0].decode()
    body = private_pem.splitlines()[1]
    assert Redactor([private_pem])(f"oops: {body}!") == "oops: ***!"
    monkeypatch.setenv("PACK_SIGNING_KEY", private_pem)
    monkeypatch.setenv("pack_signing_key_file", "/keys/signing.pem")
    assert not {k.upper() for k in child_environment()} & {"PACK_SIGNING_KEY", "PACK_SIGNING_KEY_FILE"}
    assert os.environ["PACK_SIGNING_KEY"] == private_pem


def test_packs_consumers_cannot_pull_are_named(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, basic_registry: Registry
) -> None:
    env = env_for(basic_registry, **client, OCI_USERNAME=USER, OCI_PASSWORD=PASSWORD)
    result = run_invoke(project_copy, "release", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    [warning] = [line for line in result.stderr.splitlines() if "cannot be pulled anonymously" in line]
    assert warning.startswith(f"warning: pack {PACK} cannot be pulled anonymously (")
    assert f"readable without credentials on {basic_registry.host}" in warning

    strict = run_invoke(project_copy, "release", "--require-public", **env)
    assert strict.returncode == 1
    assert (
        strict.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"error: REQUIRE_PUBLIC: 1 pack(s) cannot be pulled anonymously: {PACK}. They are published and "
            "packs.lock.json is written"
        )
    )
    assert lock_of(project_copy)["components"][0]["name"] == PACK  # type: ignore[index]
    pushed = run_invoke(project_copy, "push", **env, REQUIRE_PUBLIC="1")
    assert pushed.returncode == 1 and "(`invoke lock` writes the lockfile)" in pushed.stderr


def test_only_the_private_packs_are_named(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, token_registry: Registry
) -> None:
    two_packs(project_copy)
    assert token_registry.token_server is not None
    token_registry.token_server.private = {f"acme/greentic-packs/{SECOND}"}
    env = env_for(token_registry, **client, GITHUB_ACTOR=USER, GITHUB_TOKEN=PASSWORD, REQUIRE_PUBLIC="1")
    result = run_invoke(project_copy, "release", **env)
    assert result.returncode == 1
    warnings = [line for line in result.stderr.splitlines() if "cannot be pulled anonymously (" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: pack {SECOND} cannot be pulled anonymously")
    assert "access denied anonymously" in warnings[0]
    assert f"pulled anonymously: {SECOND}. They are published" in result.stderr
    token_registry.token_server.private = set()  # made public: the re-run passes, nothing pushed again
    again = run_invoke(project_copy, "release", **env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "all 2 pack(s) can be pulled anonymously" in again.stdout


HOLD_SECONDS = 10  # how long the proof's read-back waits for the anonymous check; only a check after it waits


def env_at(host: str, **extra: str) -> dict[str, str]:
    return {"OCI_REGISTRY": host, "OCI_ORG": "acme", "PACK_VERSION": "1.2.3", **extra}


def ours(req: BaseHTTPRequestHandler) -> bool:
    """A request of the publisher's own client (the proof's, the anonymous check's), not one of oras'."""
    return req.headers.get("User-Agent", "").startswith("greentic-pack-publisher/")


def not_found(req: BaseHTTPRequestHandler) -> None:
    req.send_response(404)
    req.send_header("Content-Length", "0")
    req.end_headers()


class ReadBackHeld(ReferrersApiProxy):
    """docker-registry behind a proxy that holds the proof's first read-back of the version tag until the
    anonymous check fetches the manifest by digest: a push that checks only after the proof waits the
    whole hold. `refuse_read_back`: the read-back is answered 404 instead, so the proof fails."""

    def __init__(self, upstream_port: int, *, refuse_read_back: bool = False) -> None:
        self.refuse_read_back = refuse_read_back
        self.checked = threading.Event()
        self.held: list[bool] = []  # for the first read-back: whether the anonymous check came while it waited
        super().__init__(upstream_port, api=False)

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        path = urlsplit(req.path).path
        if req.command == "GET" and ours(req) and "/manifests/sha256:" in path:
            self.checked.set()
        if req.command == "GET" and ours(req) and path.endswith("/manifests/1.2.3"):
            with self.lock:
                first = not self.held
                self.held.append(False)
            if first:
                self.held[0] = self.checked.wait(HOLD_SECONDS)
            if self.refuse_read_back:
                not_found(req)
                return
        super().handle(req)


def test_the_anonymous_check_runs_beside_the_proof(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    proxy = ReadBackHeld(registry.port)
    try:
        result = run_invoke(project_copy, "release", **env_at(proxy.host, **client))
    finally:
        proxy.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert proxy.held[:1] == [True], "the anonymous check waited for the proof"
    assert "all 1 pack(s) can be pulled anonymously" in result.stdout


def test_a_pack_that_fails_its_proof_is_not_reported_pullable(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    proxy = ReadBackHeld(registry.port, refuse_read_back=True)
    try:
        result = run_invoke(project_copy, "release", **env_at(proxy.host, OCI_CLIENT="python"))
    finally:
        proxy.close()
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"FAILED {PACK}: " in result.stdout
    assert proxy.held[:1] == [True]  # its check ran, beside the proof that failed, and is not reported
    assert "pulled anonymously" not in result.stdout + result.stderr


class FirstFetchLags(ReferrersApiProxy):
    """A registry that serves a manifest it just stored a moment late: the first fetch by digest of our
    client (the anonymous check's, made beside the proof) is answered 404, as for a private package."""

    def __init__(self, upstream_port: int) -> None:
        self.fetches: list[int] = []  # the status each fetch by digest was answered with
        super().__init__(upstream_port, api=False)

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        if req.command == "GET" and ours(req) and "/manifests/sha256:" in urlsplit(req.path).path:
            with self.lock:
                lagging = not self.fetches
                self.fetches.append(404 if lagging else 200)
            if lagging:
                not_found(req)
                return
        super().handle(req)


def test_a_check_made_before_the_proof_is_asked_again_before_naming_a_pack(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    proxy = FirstFetchLags(registry.port)
    try:
        result = run_invoke(project_copy, "release", **env_at(proxy.host, REQUIRE_PUBLIC="1", **client))
    finally:
        proxy.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert proxy.fetches == [404, 200]  # the early check's answer was not taken as the last word
    assert "all 1 pack(s) can be pulled anonymously" in result.stdout and "anonymously (" not in result.stderr


def test_ghcr_settings_pages() -> None:
    org_page, user_page = pullability.settings_pages("acme", "packs/messaging", "provider")
    assert org_page == "https://github.com/orgs/acme/packages/container/packs%2Fmessaging%2Fprovider/settings"
    assert user_page == "https://github.com/users/acme/packages/container/packs%2Fmessaging%2Fprovider/settings"
    text = pullability.how_to_publish("ghcr.io", "acme", "greentic-packs", "provider")
    assert org_page.replace("packs%2Fmessaging", "greentic-packs") in text and "if acme is a user account" in text


def fragment(folder: Path, name: str, components: object) -> None:
    digest = "sha256:" + name[0] * 64
    content = {
        "version": "1.2.3",
        "generated_at": "2026-01-01T00:00:00Z",
        "git_sha": "0" * 40,
        "registry": "ghcr.io",
        "org": "acme",
        "repo": "greentic-packs",
        "dry_run": False,
        "packs": [{"name": name, "file": f"{name}.gtpack", "oci_ref": f"r/{name}:1.2.3", "digest": digest}],
        "schema_version": 1,
        "components": components,
    }
    (folder / f"{name}.json").write_text(json.dumps(content))


def test_merge_carries_each_shards_signed_components(tmp_path: Path) -> None:
    folder = tmp_path / "locks"
    folder.mkdir()
    ref = "oci://ghcr.io/acme/greentic-packs/{0}@sha256:" + "{1}" * 64
    fragment(folder, "zeta", [{"name": "zeta", "reference": ref.format("zeta", "z"), "digest": "d", "signature": "s1"}])
    fragment(
        folder, "alpha", [{"name": "alpha", "reference": ref.format("alpha", "a"), "digest": "d", "signature": "s2"}]
    )
    merged = lockfile.merge(folder, ["alpha", "zeta"], tmp_path / "packs.lock.json", tmp_path / "packs")
    assert merged["schema_version"] == 1
    assert [(c["name"], c["signature"]) for c in merged["components"]] == [("alpha", "s2"), ("zeta", "s1")]
    assert json.loads((tmp_path / "packs.lock.json").read_text())["components"] == merged["components"]

    fragment(folder, "zeta", [{"name": "zeta", "reference": 7, "digest": "d"}])
    with pytest.raises(ConfigError, match=r"every entry of 'components' needs name, reference, digest \(strings\)"):
        lockfile.merge(folder, None, tmp_path / "other.lock.json", tmp_path / "packs")
    fragment(folder, "zeta", "not a list")
    with pytest.raises(ConfigError, match="'components' is not a list"):
        lockfile.merge(folder, None, tmp_path / "other.lock.json", tmp_path / "packs")
