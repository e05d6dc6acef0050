"""`invoke verify`: prove a lockfile against the registry, as a consumer about to trust it would.

A lockfile may come from anyone: its registry is validated, and credentials are sent only when it
names the configured registry (OCI_REGISTRY). Access problems (unreachable, refused) stop with an
`error:` line and exit 3 (AccessError); `MISMATCH` is printed only when what the registry serves differs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import archive, lockfile
from .artifact import check_pack_manifest
from .commands import Commands
from .content import VerifiedRegistry
from .descriptor import is_digest
from .errors import AccessError, ConfigError, PublisherError
from .oci_names import REGISTRY_RE, pack_name_problem
from .redact import Redactor
from .safe_files import read_regular
from .settings import PublishOptions
from .transports import Transports

Report = Callable[[str], None]


def _split(ref: str, registry: str) -> tuple[str, str]:
    prefix = f"{registry}/"
    if not ref.startswith(prefix) or ":" not in ref[len(prefix) :]:
        raise ConfigError(f"oci_ref {ref!r} is not <registry>/<repository>:<tag> on {registry}")
    repository, tag = ref[len(prefix) :].rsplit(":", 1)
    return repository, tag


def verify_pack(registry: VerifiedRegistry, name: str, entry: dict[str, Any], scratch: Path) -> str:
    repository, tag = _split(str(entry["oci_ref"]), registry.registry)
    digest = str(entry["digest"])
    if not is_digest(digest):
        raise PublisherError(f"digest {digest!r} is not a sha256 manifest digest")
    pinned = entry.get("pinned_ref")
    if pinned is not None and pinned != f"{registry.registry}/{repository}@{digest}":
        raise PublisherError(f"pinned_ref {pinned!r} does not match oci_ref and digest")
    served = registry.resolve(repository, tag)
    if served is None:
        raise PublisherError(f"tag {tag} is not in the registry")
    if served.digest != digest:
        raise PublisherError(f"tag {tag} points at {served.digest}, but the lockfile pins {digest}")
    manifest = registry.manifest(repository, digest)
    layer = check_pack_manifest(manifest, digest, entry.get("gtpack_sha256"), entry.get("size"))
    target = scratch / f"{name}.gtpack"
    registry.blob_to_file(repository, layer, target)
    facts = archive.inspect_gtpack(target)
    return f"ok {entry['oci_ref']} @ {digest} (pack {facts.pack_id} {facts.version}, {facts.size} bytes)"


def verify(
    lock_path: Path,
    options: PublishOptions,
    configured_registry: str,
    redactor: Redactor,
    report: Report,
    commands: Commands,
) -> None:
    data = read_regular(lock_path, lockfile.MAX_LOCKFILE_BYTES, "lockfile")  # no FIFO, device or endless file
    if data is None:
        raise ConfigError(f"{lock_path}: cannot read the lockfile (No such file or directory)")
    content = lockfile.read(str(lock_path), data)
    packs = content["packs"]
    if not packs:
        raise ConfigError(f"{lock_path}: lists no packs")
    if any(p["digest"] == lockfile.DRY_RUN_DIGEST for p in packs):
        raise ConfigError(f"{lock_path}: is a dry-run lockfile (digest DRY_RUN); there is nothing published to verify")
    registry = content["registry"]
    if not isinstance(registry, str) or not REGISTRY_RE.match(registry):
        raise ConfigError(f"{lock_path}: registry {str(registry)[:80]!r} is not a registry host[:port]")
    for entry in packs:
        problem = pack_name_problem(str(entry["name"]))
        if problem:
            raise ConfigError(f"{lock_path}: pack name {problem}")
    own = registry == configured_registry
    if not own:
        report(
            f"note: {lock_path.name} names {registry}, not the configured OCI_REGISTRY {configured_registry}: "
            "checking it anonymously (no credentials are sent to it)"
        )
    failures = 0
    with Transports(registry, options, redactor, commands, use_credentials=own) as transports:
        verified = VerifiedRegistry(transports.get(), registry)
        with tempfile.TemporaryDirectory(prefix="verify-") as tmp:
            for entry in packs:
                name = str(entry["name"])
                try:
                    report(verify_pack(verified, name, entry, Path(tmp)))
                except PublisherError as exc:
                    if isinstance(exc, ConfigError | AccessError):
                        raise
                    failures += 1
                    report(redactor(f"MISMATCH {name}: {exc.message}"))
    if failures:
        raise PublisherError(f"{lock_path.name}: {failures} of {len(packs)} pack(s) do not match the registry")
