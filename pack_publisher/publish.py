"""Push built packs: refuse to move release tags, publish through a transport, prove what landed.

A pack's published record is written only after the registry served back exactly the manifest
that was composed, with its blobs present, so a lockfile made from records never claims more
than the registry holds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import records
from .artifact import Artifact
from .content import VerifiedRegistry
from .descriptor import describe
from .errors import PublisherError
from .records import BuiltPack, PublishedPack
from .redact import Redactor
from .settings import Settings
from .transports import PushRequest, Transports

Report = Callable[[str], None]
LATEST = "latest"
_print_lock = threading.Lock()


@dataclass(frozen=True)
class PackResult:
    name: str
    reference: str
    status: str  # "published", "already published" or "failed"
    record: PublishedPack | None = None
    error: str | None = None


def load_artifact(built: BuiltPack) -> Artifact:
    """The composed artifact of a build, refusing a manifest file changed since."""
    manifest = built.manifest.read_bytes()
    descriptor = describe(built.manifest_descriptor.media_type, manifest)
    if descriptor != built.manifest_descriptor:
        raise PublisherError(f"pack {built.name!r}: {built.manifest} changed since the build; rebuild it")
    return Artifact(manifest=manifest, descriptor=descriptor, layer=built.layer)


def push_one(settings: Settings, registry: VerifiedRegistry, built: BuiltPack, latest: bool, force: bool) -> PackResult:
    repository = settings.repository(built.name)
    artifact = load_artifact(built)
    digest = artifact.descriptor.digest
    tags = [settings.version, *([LATEST] if latest else [])]
    request = PushRequest(repository=repository, tags=tags, gtpack=built.gtpack, artifact=artifact)
    existing = registry.resolve(repository, settings.version)  # None only when the registry said "not found"
    uploaded: int | None = 0
    if existing is not None and existing.digest == digest and not latest:
        status = "already published"
        registry.check_landed(request)
    else:
        if existing is not None and existing.digest != digest and not force:
            raise PublisherError(
                f"{built.reference} already holds {existing.digest}, but this build is {digest}; "
                "release tags are immutable: publish a new version, or pass --force to overwrite"
            )
        uploaded = registry.push(request).uploaded_blobs
        already = existing is not None and existing.digest == digest
        status = "already published" if already and not uploaded else "published"
    record = PublishedPack.of(
        built,
        digest=digest,
        pinned_reference=f"{settings.registry}/{repository}@{digest}",
        tags=tags,
        transport=registry.name,
        uploaded_blobs=uploaded,
        already_published=status == "already published",
    )
    records.save(settings.out_dir, record)
    return PackResult(built.name, built.reference, status, record=record)


def push(
    settings: Settings,
    built: list[BuiltPack],
    *,
    latest: bool,
    force: bool,
    jobs: int,
    redactor: Redactor,
    report: Report,
) -> list[PackResult]:
    """Push every pack, up to `jobs` at once; one failing pack does not stop the others."""
    transports = Transports(settings.registry, settings.publish, redactor)

    def run(one: BuiltPack) -> PackResult:
        try:
            registry = VerifiedRegistry(transports.get(), settings.registry)
            result = push_one(settings, registry, one, latest, force)
        except PublisherError as exc:
            result = PackResult(one.name, one.reference, "failed", error=redactor(exc.message))
        line = _line(result)
        with _print_lock:  # one whole line per pack, whatever the threads do
            report(line)
        return result

    executor = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="push")
    try:
        results = list(executor.map(run, built))
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)  # Ctrl-C: never wait for a stalled request
        raise
    finally:
        transports.close()
    executor.shutdown(wait=True)
    return results


def _line(result: PackResult) -> str:
    if result.record is None:
        return f"FAILED {result.name}: {result.error}"
    via = result.record.transport
    uploaded = result.record.uploaded_blobs
    blobs = f", {uploaded} blob(s) uploaded" if uploaded is not None else ""
    return f"{result.status} {result.reference} digest={result.record.digest} (via {via}{blobs})"
