"""`invoke verify`: prove a lockfile against the registry, as a consumer about to trust it would."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import archive, lockfile
from .errors import ConfigError, PublisherError
from .oci_names import DIGEST_RE
from .publish import check_manifest
from .redact import Redactor
from .settings import PublishOptions
from .transport import Transport, open_transport

Report = Callable[[str], None]


def _split(ref: str, registry: str) -> tuple[str, str]:
    prefix = f"{registry}/"
    if not ref.startswith(prefix) or ":" not in ref[len(prefix) :]:
        raise ConfigError(f"oci_ref {ref!r} is not <registry>/<repository>:<tag> on {registry}")
    repository, tag = ref[len(prefix) :].rsplit(":", 1)
    return repository, tag


def verify_pack(transport: Transport, registry: str, entry: dict[str, Any], scratch: Path) -> str:
    repository, tag = _split(str(entry["oci_ref"]), registry)
    digest = str(entry["digest"])
    if not DIGEST_RE.match(digest):
        raise PublisherError(f"digest {digest!r} is not a sha256 manifest digest")
    pinned = entry.get("pinned_ref")
    if pinned is not None and pinned != f"{registry}/{repository}@{digest}":
        raise PublisherError(f"pinned_ref {pinned!r} does not match oci_ref and digest")
    served = transport.resolve(repository, tag)
    if served is None:
        raise PublisherError(f"tag {tag} is not in the registry")
    if served != digest:
        raise PublisherError(f"tag {tag} points at {served}, but the lockfile pins {digest}")
    manifest = transport.fetch_manifest(repository, digest)
    if manifest is None:
        raise PublisherError(f"the pinned manifest {digest} is not in the registry")
    expected_layer = entry.get("gtpack_sha256")
    doc = check_manifest(manifest, digest, expected_layer, entry.get("size"))
    layer = doc["layers"][0]  # type: ignore[index]
    target = scratch / f"{entry['name']}.gtpack"
    transport.fetch_blob(repository, str(layer["digest"]), target)  # the transport checks the digest
    facts = archive.inspect_gtpack(target)
    return f"ok {entry['oci_ref']} @ {digest} (pack {facts.pack_id} {facts.version}, {facts.size} bytes)"


def verify(lock_path: Path, options: PublishOptions, redactor: Redactor, report: Report) -> None:
    try:
        data = lock_path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{lock_path}: cannot read the lockfile ({exc.strerror})") from None
    content = lockfile.read(str(lock_path), data)
    packs = content["packs"]
    if not packs:
        raise ConfigError(f"{lock_path}: lists no packs")
    if any(p["digest"] == lockfile.DRY_RUN_DIGEST for p in packs):
        raise ConfigError(f"{lock_path}: is a dry-run lockfile (digest DRY_RUN); there is nothing published to verify")
    registry = str(content["registry"])
    transport = open_transport(registry, options, redactor)
    failures = 0
    try:
        with tempfile.TemporaryDirectory(prefix="verify-") as tmp:
            for entry in packs:
                try:
                    report(verify_pack(transport, registry, entry, Path(tmp)))
                except PublisherError as exc:
                    failures += 1
                    report(redactor(f"MISMATCH {entry['name']}: {exc.message}"))
    finally:
        transport.close()
    if failures:
        raise PublisherError(f"{lock_path.name}: {failures} of {len(packs)} pack(s) do not match the registry")
