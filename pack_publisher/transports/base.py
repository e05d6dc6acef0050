"""What every transport offers: storage primitives with a typed "not found", nothing more.

Transports move bytes and report what the registry said; they do not judge content. Every digest
check happens once, above them, in `pack_publisher.content`. Every primitive may be called from several
threads at once (`together` runs a pack's independent requests side by side).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

from ..artifact import Artifact
from ..descriptor import Descriptor

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # what oras accepts; a bigger "manifest" is not one of ours

# Opens a fresh sink for one download attempt (a retry starts again from an empty sink).
SinkFactory = Callable[[], AbstractContextManager[BinaryIO]]
T = TypeVar("T")


class NotFound(Exception):
    """The registry answered that the tag, manifest or blob does not exist (404), and nothing else went wrong."""


@dataclass(frozen=True)
class FetchedManifest:
    data: bytes
    reported_digest: str | None  # Docker-Content-Digest, when the transport sees it


@dataclass(frozen=True)
class PushRequest:
    """One pack's artifact, ready to go: the archive on disk and the exact manifest bytes."""

    repository: str  # path inside the registry: <org>/<repo>/<pack>
    tags: list[str]  # the version tag first; 'latest' after it when asked for
    gtpack: Path
    artifact: Artifact


@dataclass(frozen=True)
class PushOutcome:
    uploaded_blobs: int | None  # None when the transport cannot tell


class Transport(Protocol):
    name: str
    # True when asking whether a blob is there costs a request that can overlap others (the built-in
    # client); False when it costs a process of its own (oras), and the registry's refusal of a manifest
    # naming a blob it does not hold is relied on instead (see `content.VerifiedRegistry.check_landed`).
    cheap_blob_checks: bool

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

    def push(self, request: PushRequest) -> PushOutcome:
        """Blobs first (skipping those present), then the manifest bytes under every tag."""
        ...

    def close(self) -> None: ...


def together(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run independent calls side by side (one thread each, the first on this one); results in call order.

    Each call runs to its end (with its own retries) before anything is raised, so no request outlives
    the pack it serves; then the first failure, in call order, is raised. The threads are daemons: Ctrl-C
    never waits for them.
    """
    if len(calls) < 2:
        return [call() for call in calls]
    results: list[Any] = [None] * len(calls)
    failures: list[BaseException | None] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as exc:  # re-raised below, on the caller's thread
            failures[index] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(1, len(calls))]
    for thread in threads:
        thread.start()
    run(0)
    for thread in threads:
        thread.join()
    for failure in failures:
        if failure is not None:
            raise failure
    return results
