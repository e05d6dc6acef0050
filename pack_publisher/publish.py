"""Push built packs: refuse to move release tags, publish through a transport, prove what landed.

A pack's published record is written only after the registry served back exactly the manifest
that was composed, with its blobs present, so a lockfile made from records never claims more
than the registry holds.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import records
from .artifact import EMPTY_CONFIG_DIGEST, GTPACK_MEDIA_TYPE
from .errors import PublisherError
from .records import BuiltPack, PublishedPack
from .redact import Redactor
from .settings import Settings
from .transport import PushRequest, Transport, transport_factory

Report = Callable[[str], None]
LATEST = "latest"


@dataclass(frozen=True)
class PackResult:
    name: str
    reference: str
    status: str  # "published", "already published" or "failed"
    record: PublishedPack | None = None
    error: str | None = None


def check_manifest(manifest: bytes, digest: str, layer_digest: str | None, layer_size: int | None) -> dict[str, object]:
    """The parsed manifest, after checking it is the pack artifact it claims to be."""
    actual = "sha256:" + hashlib.sha256(manifest).hexdigest()
    if actual != digest:
        raise PublisherError(f"the registry served a manifest with digest {actual}, expected {digest}")
    try:
        doc = json.loads(manifest)
        layers = doc["layers"]
    except (ValueError, KeyError, TypeError):
        raise PublisherError(f"manifest {digest} is not an OCI image manifest") from None
    if doc.get("artifactType") != GTPACK_MEDIA_TYPE:
        raise PublisherError(f"manifest {digest} has artifactType {doc.get('artifactType')!r}, not {GTPACK_MEDIA_TYPE}")
    if not isinstance(layers, list) or len(layers) != 1 or layers[0].get("mediaType") != GTPACK_MEDIA_TYPE:
        raise PublisherError(f"manifest {digest} does not hold exactly one {GTPACK_MEDIA_TYPE} layer")
    if layer_digest is not None and layers[0].get("digest") != layer_digest:
        raise PublisherError(f"manifest {digest} points at layer {layers[0].get('digest')}, expected {layer_digest}")
    if layer_size is not None and layers[0].get("size") != layer_size:
        raise PublisherError(
            f"manifest {digest} says the layer is {layers[0].get('size')} bytes, expected {layer_size}"
        )
    return dict(doc)


def verify_landed(transport: Transport, repository: str, tags: list[str], built: BuiltPack) -> None:
    """Read every tag back from the registry and check manifest and blobs, independently of the push."""
    manifest = transport.fetch_manifest(repository, tags[0])  # its digest is checked from these bytes
    if manifest is None:
        raise PublisherError(f"after the push, {repository}:{tags[0]} is not served")
    check_manifest(manifest, built.manifest_digest, f"sha256:{built.sha256}", built.size)
    for tag in tags[1:]:
        served = transport.resolve(repository, tag)
        if served != built.manifest_digest:
            raise PublisherError(
                f"after the push, {repository}:{tag} resolves to {served}, not {built.manifest_digest}"
            )
    for blob in (f"sha256:{built.sha256}", EMPTY_CONFIG_DIGEST):
        if not transport.blob_exists(repository, blob):
            raise PublisherError(f"after the push, blob {blob} is missing from {repository}")


def push_one(settings: Settings, transport: Transport, built: BuiltPack, latest: bool, force: bool) -> PackResult:
    repository = settings.repository(built.name)
    manifest = built.manifest.read_bytes()
    if "sha256:" + hashlib.sha256(manifest).hexdigest() != built.manifest_digest:
        raise PublisherError(f"pack {built.name!r}: {built.manifest} changed since the build; rebuild it")
    tags = [settings.version, *([LATEST] if latest else [])]
    existing = transport.resolve(repository, settings.version)
    uploaded: int | None = 0
    if existing == built.manifest_digest and not latest:
        status = "already published"
    else:
        if existing is not None and existing != built.manifest_digest and not force:
            raise PublisherError(
                f"{built.reference} already holds {existing}, but this build is {built.manifest_digest}; "
                "release tags are immutable: publish a new version, or pass --force to overwrite"
            )
        request = PushRequest(
            repository=repository,
            tags=tags,
            gtpack=built.gtpack,
            layer_digest=f"sha256:{built.sha256}",
            layer_size=built.size,
            manifest=manifest,
            digest=built.manifest_digest,
        )
        outcome = transport.push(request)
        if outcome.digest != built.manifest_digest:
            raise PublisherError(
                f"the registry reports {outcome.digest} for {built.reference}, expected {built.manifest_digest}"
            )
        uploaded = outcome.uploaded_blobs
        status = "already published" if existing == built.manifest_digest and not uploaded else "published"
    verify_landed(transport, repository, tags, built)
    record = PublishedPack.of(
        built,
        digest=built.manifest_digest,
        pinned_reference=f"{settings.registry}/{repository}@{built.manifest_digest}",
        tags=tags,
        transport=transport.name,
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
    new_transport = transport_factory(settings.registry, settings.publish, redactor)
    local = threading.local()
    opened: list[Transport] = []
    lock = threading.Lock()

    def transport() -> Transport:
        if not hasattr(local, "transport"):
            local.transport = new_transport()
            with lock:
                opened.append(local.transport)
        return local.transport  # type: ignore[no-any-return]

    def run(one: BuiltPack) -> PackResult:
        try:
            result = push_one(settings, transport(), one, latest, force)
        except PublisherError as exc:
            result = PackResult(one.name, one.reference, "failed", error=redactor(exc.message))
        line = _line(result)
        report(line)
        return result

    executor = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="push")
    try:
        results = list(executor.map(run, built))
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)  # Ctrl-C: never wait for a stalled request
        raise
    executor.shutdown(wait=True)
    for t in opened:
        t.close()
    return results


def _line(result: PackResult) -> str:
    if result.record is None:
        return f"FAILED {result.name}: {result.error}"
    via = result.record.transport
    uploaded = result.record.uploaded_blobs
    blobs = f", {uploaded} blob(s) uploaded" if uploaded is not None else ""
    return f"{result.status} {result.reference} digest={result.record.digest} (via {via}{blobs})"
