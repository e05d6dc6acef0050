"""`invoke verify --trusted-key` and `invoke keygen`: the trust side of signed lock entries.

`Trust` holds the public keys a consumer trusts (greentic-dist's trust root) and whether unsigned
entries are refused; `entry_problem` checks one pack's `components[]` entry the way `pull --lock`
would, plus that it names what `packs[]` names. `keygen` makes the key pair a release signs with.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pack_publisher.oci import signing
from pack_publisher.runtime.errors import ConfigError
from pack_publisher.runtime.frozen import frozen
from pack_publisher.state.components import oci_reference

MAX_KEY_BYTES = 64 * 1024


@frozen
class Trust:
    keys: dict[str, Ed25519PublicKey]  # key id -> public key
    require_signature: bool

    @classmethod
    def load(cls, paths: list[Path], require_signature: bool) -> Trust:
        if require_signature and not paths:
            raise ConfigError("--require-signature: give the keys to trust with --trusted-key PUB.pem")
        keys = {}
        for path in paths:
            try:
                with path.open("rb") as fh:
                    data = fh.read(MAX_KEY_BYTES + 1)
            except OSError as exc:
                raise ConfigError(f"--trusted-key: cannot read {path} ({exc.strerror})") from None
            if len(data) > MAX_KEY_BYTES:
                raise ConfigError(f"--trusted-key: {path} is too big to be a PEM public key")
            key = signing.load_public_key(data, f"--trusted-key {path}")
            keys[signing.key_id(key)] = key
        return cls(keys, require_signature)


def entry_problem(
    trust: Trust, content: dict[str, Any], entry: dict[str, Any], component: dict[str, Any] | None
) -> tuple[str | None, str]:
    """(why the pack's signature is refused or None, what was found) for one `packs[]` entry."""
    name, digest = str(entry["name"]), str(entry["digest"])
    if component is None:
        return ("no components[] entry, so nothing greentic-dist can pull or verify", "")
    expected = oci_reference(str(content["registry"]), f"{content['org']}/{content['repo']}/{name}", digest)
    if component["digest"] != digest:
        return (f"components[] digest {component['digest'][:80]} differs from packs[] digest {digest}", "")
    if component["reference"] != expected:
        return (f"components[] reference {component['reference'][:200]!r} is not {expected}", "")
    if "signature" not in component:
        return ("unsigned (--require-signature)" if trust.require_signature else None, "unsigned")
    if not trust.keys:
        return (None, "signed (not checked: no --trusted-key)")
    try:
        key_id = signing.check(component["signature"], component["digest"], trust.keys)
    except signing.SignatureProblem as exc:
        return (f"signature: {exc}", "")
    return (None, f"signed by {key_id}")


def keygen(private: Path, public: Path, root: Path, say: Callable[[str], None]) -> None:
    """Write a new key pair (never over an existing file; the private key 0600) and say where it goes next."""
    for path in (private, public):
        if path.exists():
            raise ConfigError(f"keygen: {path} exists; not overwriting a key (choose another path)")
    private_pem, public_pem, key_id = signing.new_key_pair()
    try:
        private.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(private_pem)
        public.parent.mkdir(parents=True, exist_ok=True)
        public.write_bytes(public_pem)
    except OSError as exc:
        raise ConfigError(f"keygen: cannot write the key pair ({exc.strerror}: {exc.filename})") from None
    say(f"wrote the private key {private} (mode 0600) and the public key {public}; key id {key_id}")
    if private.is_relative_to(root):
        say(f"warning: {private} is inside the repository: never commit it; move it out once stored")
    say(f"store the private key as the repository secret PACK_SIGNING_KEY: gh secret set PACK_SIGNING_KEY < {private}")
    say("then delete the file (or keep it in a password manager); the release workflow passes the secret to the run")
    say(f"commit or publish the public key: consumers trust it (`invoke verify --trusted-key {public.name}`)")
