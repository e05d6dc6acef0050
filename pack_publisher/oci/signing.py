"""Lock-entry signatures in Greentic's own format, the one greentic-distributor-client verifies.

greentic-dist (src/signing.rs, `verify_artifact_dsse`) accepts a lock entry's `signature` as standard
base64 of a DSSE envelope: payloadType `application/vnd.in-toto+json`, the payload an in-toto
Statement v1 whose subject pins the pack's manifest digest, an Ed25519 signature over the DSSE PAE,
and a `keyid` of the first 16 bytes of SHA-256 of the raw public key, in hex. This module makes such
envelopes and checks them by the same rules (`invoke verify --trusted-key`). All cryptography is the
`cryptography` package's; none is written here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pack_publisher import __version__
from pack_publisher.runtime.errors import ConfigError

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "gtpack"
TOOL = "greentic-pack-publisher"
MAX_SIGNATURE_CHARS = 64 * 1024  # a real envelope is under 2 KiB; a bigger one is not ours


class SignatureProblem(Exception):
    """Why a lock entry's signature is refused, in one line (what greentic-dist would refuse it for)."""


def builder_id() -> str:
    """`<tool>/<version>`: names the builder in the provenance predicate."""
    return f"{TOOL}/{__version__}"


def load_private_key(pem: str, origin: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from PKCS#8 PEM text; a clear error (never the text) when it is not one."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ConfigError(
            f"{origin}: not an unencrypted PKCS#8 PEM private key (make one with `invoke keygen`)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{origin}: the private key is not an Ed25519 key (make one with `invoke keygen`)")
    return key


def load_public_key(pem: bytes, origin: str) -> Ed25519PublicKey:
    """An Ed25519 public key from SPKI PEM (`-----BEGIN PUBLIC KEY-----`)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise ConfigError(f"{origin}: not an SPKI PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{origin}: the public key is not an Ed25519 key")
    return key


def key_id(public_key: Ed25519PublicKey) -> str:
    """Hex of the first 16 bytes of SHA-256 over the raw 32-byte public key (signing.rs `key_id_for_...`)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:16].hex()


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE Pre-Authentication Encoding: the bytes actually signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def bare_hex(digest: str) -> str:
    """A digest without its `sha256:` prefix (either case), as signing.rs compares them."""
    for prefix in ("sha256:", "SHA256:"):
        if digest.startswith(prefix):
            return digest[len(prefix) :]
    return digest


def statement(name: str, digest: str, built_at: str) -> dict[str, Any]:
    """The in-toto Statement v1 pinning `digest` (the pack's manifest digest) under `name`."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": bare_hex(digest)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {"builder_id": builder_id(), "build_type": BUILD_TYPE, "built_at": built_at},
    }


def sign(key: Ed25519PrivateKey, name: str, digest: str, built_at: str) -> str:
    """A lock entry's `signature`: standard base64 of the DSSE envelope JSON."""
    payload = json.dumps(statement(name, digest, built_at), separators=(",", ":")).encode()
    envelope = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [
            {
                "keyid": key_id(key.public_key()),
                "sig": base64.b64encode(key.sign(pae(PAYLOAD_TYPE, payload))).decode(),
            }
        ],
    }
    return base64.b64encode(json.dumps(envelope, separators=(",", ":")).encode()).decode()


def _b64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise SignatureProblem(f"malformed envelope: {what} is not a string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureProblem(f"{what} is not standard base64") from None


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise SignatureProblem(f"malformed {what}: not JSON") from None
    if not isinstance(value, dict):
        raise SignatureProblem(f"malformed {what}: not a JSON object")
    return value


def _subject_sha256(statement_value: dict[str, Any]) -> str:
    subjects = statement_value.get("subject")
    if isinstance(subjects, list):
        for subject in subjects:
            digest = subject.get("digest") if isinstance(subject, dict) else None
            if isinstance(digest, dict) and isinstance(digest.get("sha256"), str):
                return str(digest["sha256"])
    raise SignatureProblem("the statement has no subject pinning a sha256 digest")


def check(signature: object, expected_digest: str, trusted: Mapping[str, Ed25519PublicKey]) -> str:
    """Verify a lock entry's signature as greentic-dist does; the key id that verified, else SignatureProblem.

    Order as in signing.rs: the envelope, its payloadType, the statement, at least one signature by a
    trusted key (an unknown key id never matches), then the subject digest against the entry's digest.
    """
    if not isinstance(signature, str) or len(signature) > MAX_SIGNATURE_CHARS:
        raise SignatureProblem("signature is not a base64 string of a DSSE envelope")
    envelope = _json_object(_b64(signature, "signature"), "DSSE envelope")
    payload_type = envelope.get("payloadType")
    if payload_type != PAYLOAD_TYPE:
        raise SignatureProblem(f"unsupported payloadType {str(payload_type)[:80]!r}, expected {PAYLOAD_TYPE!r}")
    payload = _b64(envelope.get("payload"), "payload")
    found = _json_object(payload, "in-toto statement")
    if found.get("_type") != STATEMENT_TYPE:
        raise SignatureProblem(f"unexpected statement _type {str(found.get('_type'))[:80]!r}")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list):
        raise SignatureProblem("malformed envelope: no signatures list")
    by_id = {k.lower(): v for k, v in trusted.items() if k}
    signed_bytes = pae(PAYLOAD_TYPE, payload)
    tried, invalid, verified = [], None, None
    for entry in signatures:
        if not isinstance(entry, dict) or not isinstance(entry.get("keyid"), str):
            raise SignatureProblem("malformed envelope: a signature without a keyid")
        keyid = str(entry["keyid"])
        tried.append(keyid[:64])
        public_key = by_id.get(keyid.lower()) if keyid else None
        if public_key is None:
            continue
        try:
            public_key.verify(_b64(entry.get("sig"), "sig"), signed_bytes)
        except InvalidSignature:
            invalid = keyid
            continue
        verified = keyid
        break
    if verified is None:
        if invalid is not None:
            raise SignatureProblem(f"signature does not verify against trusted key {invalid}")
        raise SignatureProblem(f"signed by an untrusted key (key ids: {', '.join(tried) or 'none'})")
    pinned = bare_hex(_subject_sha256(found))
    if pinned.lower() != bare_hex(expected_digest).lower():
        raise SignatureProblem(
            f"subject digest mismatch: the statement pins sha256:{pinned[:64]}, the entry is {expected_digest}"
        )
    return verified


def new_key_pair() -> tuple[bytes, bytes, str]:
    """A fresh Ed25519 key pair: (PKCS#8 PEM private key, SPKI PEM public key, key id)."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return private_pem, public_pem(private.public_key()), key_id(private.public_key())


def release_key(signing_key: str | None, require_signature: bool, releasing: bool) -> Ed25519PrivateKey | None:
    """The key a release signs its lock entries with, checked before anything is built or pushed.

    `signing_key` is the PEM text of PACK_SIGNING_KEY (or its file); REQUIRE_SIGNATURE=1 refuses a real
    release without one. A dry run signs nothing but still checks a key it is given.
    """
    if signing_key is None:
        if require_signature and releasing:
            raise ConfigError(
                "REQUIRE_SIGNATURE=1 but neither PACK_SIGNING_KEY nor PACK_SIGNING_KEY_FILE is set: refusing to "
                "release unsigned packs (pass the key from a repository secret, see docs/consumers.md)"
            )
        return None
    origin = "PACK_SIGNING_KEY / PACK_SIGNING_KEY_FILE"
    return load_private_key(signing_key, origin)


class LockSigner:
    """Signs each lock component (its reference and digest) with the release's key; `built_at` is the created time."""

    def __init__(self, key: Ed25519PrivateKey, built_at: str) -> None:
        self._key = key
        self.built_at = built_at
        self.key_id = key_id(key.public_key())

    def __call__(self, name: str, reference: str, digest: str) -> str:
        return sign(self._key, reference, digest, self.built_at)
