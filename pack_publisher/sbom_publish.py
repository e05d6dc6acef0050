"""The SBOM beside every pack, from build to registry: write it, attach it as a referrer, check it back.

At build, the archive's `sbom.cbor` becomes `OUT_DIR/<pack>.cdx.json` (`sbom.cyclonedx`) and the
referrer manifest attaching it to the pack's manifest is composed (`referrers.compose_sbom_referrer`):
both digests are known before anything is pushed. At push, after the pack is proven, the referrer is
attached unless the registry already lists it (a re-run adds nothing; a pack published before SBOMs
existed gets one, since a version tag is immutable but its referrers may grow), then listed again to
prove it landed. `verify` finds it, downloads the document, and compares it with the archive's
`sbom.cbor`.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from . import sbom
from .archive import ArchiveFacts
from .artifact import CREATED, Artifact
from .content import VerifiedRegistry
from .descriptor import Descriptor, describe
from .errors import PublisherError
from .records import BuiltPack, write_atomic
from .referrers import CYCLONEDX_MEDIA_TYPE, Referrer, check_sbom_referrer, compose_sbom_referrer, lists
from .run import Run
from .transports.base import AttachRequest, NotFound

MAX_SBOM_BYTES = 16 * 1024 * 1024  # far above the SBOM of a 64 MiB pack; read whole by verify
ATTACH_ATTEMPTS = 3  # attach-and-list cycles: another writer of the referrers index may drop the entry once


def prepare(
    run: Run, name: str, gtpack: Path, facts: ArchiveFacts, pack: Artifact
) -> tuple[Descriptor, Referrer] | None:
    """Write OUT_DIR/<pack>.cdx.json from the archive's sbom.cbor and compose its referrer; None without one."""
    s = run.settings
    path = gtpack.parent / sbom.file_name(name)
    files = sbom.read_sbom(gtpack)
    if files is None:
        path.unlink(missing_ok=True)  # an SBOM of an earlier build must not pass for this one's
        run.warn(f"pack {name!r}: the archive holds no {sbom.SBOM_ENTRY}; no SBOM is written or attached")
        return None
    identity = sbom.PackIdentity(
        pack_id=facts.pack_id,
        version=facts.version,
        manifest_digest=pack.descriptor.digest,
        gtpack_digest=facts.layer.digest,
        repository_url=f"{s.registry}/{s.repository(name)}",
        created=s.created,
    )
    document = sbom.cyclonedx(files, identity)
    write_atomic(path, document)
    described = describe(CYCLONEDX_MEDIA_TYPE, document)
    return described, compose_sbom_referrer(described, path.name, pack.descriptor, s.created)


def document_path(built: BuiltPack) -> Path:
    return built.gtpack.parent / sbom.file_name(built.name)


def load_referrer(built: BuiltPack, pack: Artifact) -> Referrer | None:
    """The build's referrer, composed again from the SBOM file and the pack manifest, refusing either changed."""
    if built.sbom is None or built.sbom_referrer is None:
        return None
    path = document_path(built)
    try:
        document = path.read_bytes()
    except OSError as exc:
        raise PublisherError(f"pack {built.name!r}: cannot read {path} ({exc.strerror}); rebuild it") from None
    if describe(CYCLONEDX_MEDIA_TYPE, document) != built.sbom:
        raise PublisherError(f"pack {built.name!r}: {path} changed since the build; rebuild it")
    created = json.loads(pack.manifest)["annotations"][CREATED]
    referrer = compose_sbom_referrer(built.sbom, path.name, pack.descriptor, created)
    if referrer.descriptor != built.sbom_referrer:
        raise PublisherError(f"pack {built.name!r}: its SBOM referrer no longer composes to the build's; rebuild it")
    return referrer


def ensure_attached(
    registry: VerifiedRegistry, repository: str, referrer: Referrer, document: Path, *, fresh: bool
) -> str:
    """Attach the referrer unless listed, then prove it is listed; `fresh`: the pack was just pushed.

    A just-pushed pack skips the first look (attaching is idempotent on both transports, and the look
    costs an oras process). Returns "attached" or "already attached".
    """
    transport = registry.transport
    subject, digest = referrer.subject.digest, referrer.descriptor.digest
    if not fresh and lists(transport.referrers(repository, subject), digest):
        return "already attached"
    request = AttachRequest(repository=repository, referrer=referrer, document=document)
    for attempt in range(ATTACH_ATTEMPTS):
        # NotFound: oras-go deleting the old index another writer deleted first; look, then try again
        with contextlib.suppress(NotFound):
            if attempt == 0:
                transport.attach(request)
            else:  # stored but not listed: its manifest was already there, or another writer dropped it
                transport.index_referrer(request)
        if lists(transport.referrers(repository, subject), digest):
            return "attached"
    raise PublisherError(
        f"{registry.registry}/{repository}: SBOM referrer {referrer.descriptor.short} is not listed among the "
        f"referrers of {referrer.subject.short} after {ATTACH_ATTEMPTS} attempts"
    )


def verify_sbom(registry: VerifiedRegistry, repository: str, digest: str, gtpack: Path, pinned: str | None) -> str:
    """Check the pack's SBOM referrer against the archive's sbom.cbor; what was found, for the `ok` line."""
    files = sbom.read_sbom(gtpack)
    if files is None:
        if pinned:
            raise PublisherError(f"the lockfile names SBOM referrer {pinned}, but the archive holds no sbom.cbor")
        return "no sbom.cbor, so no SBOM"
    listed = [
        r for r in registry.transport.referrers(repository, digest) if r.get("artifactType") == CYCLONEDX_MEDIA_TYPE
    ]
    if pinned:
        listed = [r for r in listed if r.get("digest") == pinned]
        if not listed:
            raise PublisherError(f"SBOM referrer {pinned} is not among the referrers of {digest}")
    if not listed:
        raise PublisherError(
            f"no SBOM ({CYCLONEDX_MEDIA_TYPE}) refers to {digest}; a re-run of the release attaches it"
        )
    found = str(listed[0].get("digest"))
    layer = check_sbom_referrer(registry.manifest(repository, found), found, digest)
    if layer.size > MAX_SBOM_BYTES:
        raise PublisherError(f"SBOM {found} is {layer.size} bytes, over the {MAX_SBOM_BYTES}-byte limit")
    target = gtpack.with_suffix(".cdx.json")
    registry.blob_to_file(repository, layer, target)
    published = sbom.files_of_cyclonedx(target.read_bytes(), f"SBOM {layer.short}")
    if published != files:
        archived, listed_files = {f.path: f for f in files}, {f.path: f for f in published}
        differing = sorted(p for p in archived.keys() | listed_files.keys() if archived.get(p) != listed_files.get(p))
        shown = ", ".join(differing[:3]) + (f" and {len(differing) - 3} more" if len(differing) > 3 else "")
        raise PublisherError(f"SBOM {found} does not match the archive's sbom.cbor (it differs for {shown})")
    return f"sbom {found[:19]}, {len(files)} files"
