"""What every transport offers: storage primitives with a typed "not found", nothing more.

Transports move bytes and report what the registry said; they do not judge content. Every digest
check happens once, above them, in `registry.verified`. Every primitive may be called from several
threads at once (`together` runs a pack's independent requests side by side).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from pack_publisher.oci.descriptor import Descriptor
from pack_publisher.oci.manifest import Artifact
from pack_publisher.oci.referrers import Referrer
from pack_publisher.runtime.frozen import frozen

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # what oras accepts; a bigger "manifest" is not one of ours

# Opens a fresh sink for one download attempt (a retry starts again from an empty sink).
SinkFactory = Callable[[], AbstractContextManager[BinaryIO]]


class NotFound(Exception):
    """The registry answered that the tag, manifest or blob does not exist (404), and nothing else went wrong."""


@frozen
class FetchedManifest:
    data: bytes
    reported_digest: str | None  # Docker-Content-Digest, when the transport sees it


@frozen
class AttachRequest:
    """A referrer to attach to a pushed manifest: its exact manifest bytes and the document it carries."""

    repository: str
    referrer: Referrer
    document: Path  # the layer's bytes (the SBOM file); its name is the layer title


@frozen
class PushRequest:
    """One pack's artifact, ready to go: the archive on disk and the exact manifest bytes."""

    repository: str  # path inside the registry: <org>/<repo>/<pack>
    tags: list[str]  # the version tag first; 'latest' after it when asked for
    gtpack: Path
    artifact: Artifact
    # told how many bytes of the archive the current attempt has read, for progress lines (the built-in client)
    on_sent: Callable[[int], None] | None = None
    # the pack's SBOM referrer, written with it: whether it is listed is proven afterwards, as for any attach
    referrer: AttachRequest | None = None
    # other packs wait for this push's slot: oras then puts only the archive in it, the rest in `commit`
    slot_wanted: bool = False
    # the caller takes the manifests as a step of their own (`PushOutcome.commit`), once the bytes are in
    staged: bool = False


@frozen
class LikelyPush:
    """A push that may follow (a one-pack push, before its plan): a transport may get it ready, never write."""

    repository: str
    tags: list[str]  # the tags it would write, as `PushRequest.tags`
    folder: Path  # the archive's folder: scratch files go beside it
    with_referrer: bool  # the pack's SBOM referrer goes with it


@frozen
class PushOutcome:
    uploaded_blobs: int | None  # the pack's blobs sent; None when the transport cannot tell
    referrer_written: bool = False  # the request's referrer went up with the pack
    # a staged push's remaining writes (the built-in client's manifests; oras' `cp -r`), for the caller
    # to run once the archive is proven; it returns the final outcome. None: everything is written
    commit: Callable[[], PushOutcome] | None = None


class Transport(Protocol):
    name: str

    def resolve(self, repository: str, reference: str) -> Descriptor:
        """The descriptor a tag or digest points at; NotFound when there is none."""
        ...

    def fetch_manifest(self, repository: str, reference: str) -> FetchedManifest: ...

    def blob_exists(self, repository: str, digest: str) -> bool: ...

    def blob_served(self, repository: str, digest: str) -> tuple[str, int] | None:
        """The digest and size the registry says it serves for a blob (its HEAD answer); None when absent."""
        ...

    def fetch_blob(self, repository: str, digest: str, open_sink: SinkFactory) -> None:
        """Stream the blob into a sink from `open_sink` (a new one per attempt); NotFound when absent."""
        ...

    def prepare(self, likely: LikelyPush) -> None:
        """Get ready for a push that may follow; nothing reaches the registry until `push` asks for it."""
        ...

    def push(self, request: PushRequest) -> PushOutcome:
        """Blobs first (skipping those present), then the manifest bytes under every tag, then the referrer if
        the transport writes it with the pack; a `staged` request may leave the manifests to `commit`."""
        ...

    def referrers(self, repository: str, subject: str) -> list[dict[str, Any]]:
        """The descriptors of the manifests referring to `subject`: the referrers API, else the tag schema."""
        ...

    def attach(self, request: AttachRequest) -> None:
        """Push a referrer (blobs, then the manifest by digest) so that `referrers` lists it."""
        ...

    def index_referrer(self, request: AttachRequest) -> None:
        """Add an attached referrer to its subject's tag-schema index (for registries without the API).

        For a referrer `attach` left unlisted: its manifest was already stored (oras then pushes nothing,
        so indexes nothing), or another writer of the index dropped the entry.
        """
        ...

    def close(self) -> None: ...
