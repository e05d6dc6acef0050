"""`invoke verify`: prove a lockfile against the registry, as a consumer about to trust it would.

A lockfile may come from anyone: its registry is validated, and credentials are sent only when it
names the configured registry (OCI_REGISTRY). Access problems (unreachable, refused) stop with an
`error:` line and exit 3 (AccessError); `MISMATCH` is printed only when what the registry serves differs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pack_publisher.commands.consumers import verify_sbom
from pack_publisher.oci.descriptor import is_digest
from pack_publisher.oci.manifest import check_pack_manifest
from pack_publisher.oci.names import REGISTRY_RE, pack_name_problem
from pack_publisher.registry.connect import PublishOptions, connect
from pack_publisher.registry.verified import VerifiedRegistry
from pack_publisher.runtime.errors import AccessError, ConfigError, PublisherError
from pack_publisher.runtime.processes import Commands
from pack_publisher.runtime.redact import Redactor
from pack_publisher.runtime.safe_files import read_regular
from pack_publisher.sources import archive
from pack_publisher.state import lockfile

if TYPE_CHECKING:
    from pack_publisher.state.lock_signatures import Trust

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
    pinned_sbom = entry.get("sbom_digest")
    if pinned_sbom is not None and not is_digest(pinned_sbom):
        raise PublisherError(f"sbom_digest {str(pinned_sbom)[:80]!r} is not a sha256 manifest digest")
    found = verify_sbom(registry, repository, digest, target, pinned_sbom)
    return f"ok {entry['oci_ref']} @ {digest} (pack {facts.pack_id} {facts.version}, {facts.size} bytes; {found})"


def _selected(lock_path: Path, packs: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """The entries named by --pack, refusing a name the lockfile does not list (never checking nothing)."""
    listed = {str(entry["name"]) for entry in packs}
    unknown = sorted(set(names) - listed)
    if unknown:
        shown = ", ".join(sorted(listed)[:10])
        raise ConfigError(f"--pack: {unknown[0][:80]!r} is not in {lock_path.name} (it lists {shown})")
    return [entry for entry in packs if str(entry["name"]) in set(names)]


def verify(
    lock_path: Path,
    options: PublishOptions,
    configured_registry: str,
    redactor: Redactor,
    report: Report,
    commands: Commands,
    trust: Trust | None = None,
    selected: list[str] | None = None,
) -> None:
    """Check the packs of the lockfile at `lock_path` (those named in `selected`, else all) against the registry,
    then each one's `components[]` entry; with `trust` (--trusted-key) its signature."""
    data = read_regular(lock_path, lockfile.MAX_LOCKFILE_BYTES, "lockfile")  # no FIFO, device or endless file
    if data is None:
        raise ConfigError(f"{lock_path}: cannot read the lockfile (No such file or directory)")
    content = lockfile.read(str(lock_path), data)
    packs = content["packs"]
    if not packs:
        raise ConfigError(f"{lock_path}: lists no packs")
    if any(p["digest"] == lockfile.DRY_RUN_DIGEST for p in packs):
        raise ConfigError(f"{lock_path}: is a dry-run lockfile (digest DRY_RUN); there is nothing published to verify")
    if selected:
        packs = _selected(lock_path, packs, selected)
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
    signatures = _signature_checks(content, trust)
    with (
        connect(registry, options, redactor, commands, use_credentials=own) as verified,
        tempfile.TemporaryDirectory(prefix="verify-") as tmp,
    ):
        for entry in packs:
            name = str(entry["name"])
            try:
                shown = verify_pack(verified, name, entry, Path(tmp))
            except PublisherError as exc:
                if isinstance(exc, ConfigError | AccessError):
                    raise
                failures += 1
                report(redactor(f"MISMATCH {name}: {exc.message}"))
                continue
            problem, found = signatures(entry)  # what packs[] pins is served; is it what components[] signs?
            if problem is not None:
                failures += 1
                report(redactor(f"MISMATCH {name}: {problem}"))
                continue
            report(shown + (f", {found}" if found else ""))
    if failures:
        what = "the registry or their signatures" if trust is not None else "the registry"
        raise PublisherError(f"{lock_path.name}: {failures} of {len(packs)} pack(s) do not match {what}")


def _signature_checks(
    content: dict[str, Any], trust: Trust | None
) -> Callable[[dict[str, Any]], tuple[str | None, str]]:
    """Per `packs[]` entry: why its `components[]` entry is refused (or None) and what it showed.

    Without --trusted-key or --require-signature, an older lockfile without components is checked as before;
    components that are there must still name the same digest and reference as `packs[]`.
    """
    from pack_publisher.state.lock_signatures import (  # imported here: `cryptography` only when verifying
        Trust,
        entry_problem,
    )

    components = {str(c["name"]): c for c in content.get("components", [])}
    if trust is None and not components:
        return lambda entry: (None, "")
    chosen = trust or Trust({}, require_signature=False)
    return lambda entry: entry_problem(chosen, content, entry, components.get(str(entry["name"])))
