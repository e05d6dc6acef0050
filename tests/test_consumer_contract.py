"""The consumer contract: a release is pulled and verified by a consumer written from Greentic's source.

The consumer below follows greentic-distributor-client 1.1.3 (repository greenticai/greentic-distributor-client,
commit 9f1a1fc, MIT), reimplemented here without any of this project's code (only `requests` and
`cryptography`), so that a publisher bug cannot hide behind a shared helper:

- src/dist.rs, `parse_lockfile` (`LockFile`, `LockEntry::to_resolved`): a JSON array of entries, else an
  object whose `components` (default empty) holds them, `schema_version` an optional integer, any other
  key ignored; an entry is a string ref or `{reference | ref, digest, name, signature}`, the reference
  falling back to `ref`, then to `digest`. `pull_lock_verified`: the signature is checked before
  anything is cached, and the entry's digest must equal the resolved manifest digest.
- src/oci_packs.rs, `OciPackFetcher::fetch_pack_to_cache`: refs without `oci://` (stripped by
  `classify_reference`), tags refused (`allow_tags` is false by default), the manifest media types of
  `DEFAULT_ACCEPTED_MANIFEST_TYPES`, every layer's media type on `default_pack_layer_media_types`, the
  layer picked by `select_layer` over `default_preferred_pack_layer_media_types` (else the first), and a
  pinned digest equal to the manifest digest (`DigestMismatch`). Pulls are anonymous (docs/oci_packs.md);
  loopback plain HTTP only as `allow_insecure_local_http` allows for local tests.
- src/signing.rs, `verify_artifact_dsse` / `verify_envelope` / `pae` / `key_id_for_public_key_pem`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from testsupport.registries import PASSWORD, USER, Registry

from .conftest import RunInvoke, git
from .test_publish import add_pack, env_for, lock_of

SECOND = "second-pack"
ACCEPTED_MANIFESTS = (
    "application/vnd.oci.artifact.manifest.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
LAYER_ALLOWLIST = (
    "application/vnd.greentic.pack+json",
    "application/vnd.greentic.gtpack.v1+zip",
    "application/vnd.greentic.gtpack+zip",
    "application/vnd.greentic.pack+zip",
    "application/vnd.greentic.gtpack.layer.v1+tar",
    "text/markdown",
    "application/octet-stream",
    "application/json",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
)
PREFERRED_LAYERS = (*LAYER_ALLOWLIST[:4], "text/markdown")  # select_layer, best first
INTOTO = "application/vnd.in-toto+json"


class Refused(Exception):
    """What greentic-dist would fail the pull with."""


@dataclass
class LockEntry:
    reference: str | None
    digest: str | None
    signature: str | None


def parse_lockfile(text: str) -> list[LockEntry]:
    data = json.loads(text)
    if isinstance(data, dict):
        version = data.get("schema_version")
        if version is not None and (not isinstance(version, int) or version < 0):
            raise Refused("schema_version is not an unsigned integer")
        data = data.get("components", [])
    if not isinstance(data, list):
        raise Refused("not a lockfile")
    entries = []
    for item in data:
        if isinstance(item, str):
            entries.append(LockEntry(item, None, None))
        elif isinstance(item, dict):
            reference = item.get("reference") or item.get("ref") or item.get("digest")
            entries.append(LockEntry(reference, item.get("digest"), item.get("signature")))
        else:
            raise Refused("an entry is neither a string nor an object")
    return entries


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def verify_artifact_dsse(signature: str, artifact_digest: str, trust: list[Ed25519PublicKey]) -> None:
    """signing.rs: payloadType, statement type, one trusted signature over the PAE, subject digest."""
    envelope = json.loads(base64.b64decode(signature, validate=True))
    if envelope["payloadType"] != INTOTO:
        raise Refused(f"UnsupportedPayloadType {envelope['payloadType']}")
    payload = base64.b64decode(envelope["payload"], validate=True)
    statement = json.loads(payload)
    if statement["_type"] != "https://in-toto.io/Statement/v1":
        raise Refused("MalformedStatement")
    pae = b"DSSEv1 %d %s %d %s" % (len(INTOTO), INTOTO.encode(), len(payload), payload)
    roots = {key_id(k): k for k in trust}
    verified = False
    for sig in envelope["signatures"]:
        key = roots.get(sig["keyid"].lower()) if sig["keyid"] else None
        if key is None:
            continue
        try:
            key.verify(base64.b64decode(sig["sig"], validate=True), pae)
            verified = True
        except InvalidSignature:
            continue
    if not verified:
        raise Refused("NoTrustedKey or SignatureInvalid")
    pinned = next(s["digest"]["sha256"] for s in statement["subject"] if "sha256" in s["digest"])
    if pinned.removeprefix("sha256:").lower() != artifact_digest.removeprefix("sha256:").lower():
        raise Refused("SubjectDigestMismatch")


def _anonymous_get(url: str, accept: str | None = None) -> requests.Response:
    """GET without credentials, answering a Bearer challenge with an anonymous token (the token dance)."""
    headers = {"Accept": accept} if accept else {}
    response = requests.get(url, headers=headers, timeout=30)
    challenge = response.headers.get("WWW-Authenticate", "")
    if response.status_code == 401 and challenge.lower().startswith("bearer "):
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        token = requests.get(params["realm"], params={k: v for k, v in params.items() if k != "realm"}, timeout=30)
        if token.status_code != 200:
            raise Refused(f"token refused: HTTP {token.status_code}")
        headers["Authorization"] = f"Bearer {token.json().get('token') or token.json()['access_token']}"
        response = requests.get(url, headers=headers, timeout=30)
    if response.status_code != 200:
        raise Refused(f"PullFailed: HTTP {response.status_code}")
    return response


def fetch_pack(reference: str) -> tuple[str, bytes, str]:
    """OciPackFetcher: (manifest digest, the chosen layer's bytes, its media type)."""
    ref = reference.removeprefix("oci://")
    if "@" not in ref:
        raise Refused("TagDisallowed")
    name, pinned = ref.split("@", 1)
    registry, repository = name.split("/", 1)
    scheme = "http" if registry.split(":")[0] in {"127.0.0.1", "localhost"} else "https"
    base = f"{scheme}://{registry}/v2/{repository}"
    answer = _anonymous_get(f"{base}/manifests/{pinned}", ", ".join(ACCEPTED_MANIFESTS))
    manifest_digest = "sha256:" + hashlib.sha256(answer.content).hexdigest()
    manifest = answer.json()
    kind = manifest.get("mediaType") or answer.headers.get("Content-Type", "")
    if kind not in ACCEPTED_MANIFESTS:
        raise Refused(f"manifest media type {kind}")
    layers = manifest["layers"]
    if not layers:
        raise Refused("MissingLayers")
    for layer in layers:
        if layer["mediaType"] not in LAYER_ALLOWLIST:
            raise Refused(f"Incompatible layer media type: {layer['mediaType']}")
    ranked = [
        (PREFERRED_LAYERS.index(la["mediaType"]), i)
        for i, la in enumerate(layers)
        if la["mediaType"] in PREFERRED_LAYERS
    ]
    chosen = layers[min(ranked)[1]] if ranked else layers[0]
    blob = _anonymous_get(f"{base}/blobs/{chosen['digest']}").content
    if "sha256:" + hashlib.sha256(blob).hexdigest() != chosen["digest"]:
        raise Refused("layer digest mismatch")
    if pinned != manifest_digest:
        raise Refused("DigestMismatch")
    return manifest_digest, blob, chosen["mediaType"]


def pull_lock_verified(text: str, trust: list[Ed25519PublicKey], require_signature: bool) -> list[tuple[str, bytes]]:
    """greentic-dist pull --lock: every entry verified (signature first), then pulled; (digest, pack bytes)."""
    pulled = []
    for entry in parse_lockfile(text):
        assert entry.reference is not None
        if entry.signature is None:
            if require_signature:
                raise Refused("SignatureRequired")
        else:
            verify_artifact_dsse(entry.signature, entry.digest or "", trust)
        digest, data, _ = fetch_pack(entry.reference)
        if entry.digest is not None and entry.digest != digest:
            raise Refused("CorruptArtifact: the entry's digest is not the manifest's")
        pulled.append((digest, data))
    return pulled


# --- the contract, against real releases ------------------------------------------------------------------


def signed_release(repo: Path, run_invoke: RunInvoke, registry: Registry, **env: str) -> Ed25519PrivateKey:
    add_pack(repo, SECOND)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "second pack")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    result = run_invoke(repo, "release", **env_for(registry, PACK_SIGNING_KEY=pem.decode(), **env))
    assert result.returncode == 0, result.stdout + result.stderr
    return key


def test_a_consumer_pulls_and_verifies_every_pack(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    key = signed_release(project_copy, run_invoke, registry, **client)
    text = (project_copy / "packs.lock.json").read_text()
    pulled = pull_lock_verified(text, [key.public_key()], require_signature=True)
    lock = json.loads(text)
    assert [d for d, _ in pulled] == [p["digest"] for p in lock["packs"]] and len(pulled) == 2
    for (_, data), entry in zip(pulled, lock["packs"], strict=True):
        assert "sha256:" + hashlib.sha256(data).hexdigest() == entry["gtpack_sha256"]
        assert data == (project_copy / entry["file"]).read_bytes()
    for component in lock["components"]:
        assert fetch_pack(component["reference"])[2] == "application/vnd.greentic.gtpack.v1+zip"
        assert component["reference"].startswith("oci://")  # greentic-bundle skips any other ref silently
    # the seed's `packs` list alone gives greentic-dist nothing to pull: components are what it reads
    assert parse_lockfile(json.dumps({"schema_version": 1, "packs": lock["packs"]})) == []


def tampered(repo: Path, change: Any) -> str:
    lock = lock_of(repo)
    change(lock)
    (repo / "tampered.json").write_text(json.dumps(lock))
    return json.dumps(lock)


def test_tampered_locks_are_refused_by_the_consumer_and_by_verify(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry, tmp_path: Path
) -> None:
    key = signed_release(project_copy, run_invoke, registry, OCI_CLIENT="python")
    public = tmp_path / "trusted.pem"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    stranger = Ed25519PrivateKey.generate().public_key()
    trust = [key.public_key()]

    def verify(*extra: str) -> int:
        done = run_invoke(
            project_copy,
            "verify",
            "--lock",
            "tampered.json",
            "--trusted-key",
            str(public),
            *extra,
            OCI_REGISTRY=registry.host,
        )
        assert "Traceback" not in done.stderr
        return done.returncode

    def swap(lock: dict[str, Any]) -> None:
        first, second = lock["components"]
        first["signature"], second["signature"] = second["signature"], first["signature"]

    def other_digest(lock: dict[str, Any]) -> None:
        lock["components"][0]["digest"] = lock["components"][1]["digest"]

    def unsigned(lock: dict[str, Any]) -> None:
        del lock["components"][0]["signature"]

    for change, why in ((swap, "SubjectDigestMismatch"), (other_digest, "SubjectDigestMismatch")):
        text = tampered(project_copy, change)
        with pytest.raises(Refused, match=why):
            pull_lock_verified(text, trust, require_signature=False)
        assert verify() == 1

    untouched = tampered(project_copy, lambda lock: None)
    with pytest.raises(Refused, match="NoTrustedKey"):
        pull_lock_verified(untouched, [stranger], require_signature=False)
    stranger_file = tmp_path / "stranger.pem"
    stranger_file.write_bytes(
        stranger.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    done = run_invoke(project_copy, "verify", "--trusted-key", str(stranger_file), OCI_REGISTRY=registry.host)
    assert done.returncode == 1 and done.stdout.count("signed by an untrusted key") == 2

    text = tampered(project_copy, unsigned)
    assert len(pull_lock_verified(text, trust, require_signature=False)) == 2  # allowed unless required
    with pytest.raises(Refused, match="SignatureRequired"):
        pull_lock_verified(text, trust, require_signature=True)
    assert verify() == 0 and verify("--require-signature") == 1


def test_what_the_release_names_is_what_a_consumer_cannot_pull(
    project_copy: Path, run_invoke: RunInvoke, token_registry: Registry
) -> None:
    assert token_registry.token_server is not None
    token_registry.token_server.private = {f"acme/greentic-packs/{SECOND}"}
    env = {"GITHUB_ACTOR": USER, "GITHUB_TOKEN": PASSWORD, "OCI_CLIENT": "python"}
    signed_release(project_copy, run_invoke, token_registry, **env)
    lock = lock_of(project_copy)
    public, private = lock["components"]  # type: ignore[misc]
    assert fetch_pack(public["reference"])[0] == public["digest"]
    with pytest.raises(Refused, match="PullFailed: HTTP 401"):
        fetch_pack(private["reference"])
    release = run_invoke(project_copy, "release", **env_for(token_registry, **env))
    assert [line.split(" cannot", 1)[0] for line in release.stderr.splitlines() if "anonymously (" in line] == [
        f"warning: pack {SECOND}"
    ]
