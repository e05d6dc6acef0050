"""Verified content over any transport: every digest check, done once, here.

Manifests are checked by their bytes (bytes -> digest) against what was asked for and against the
registry's `Docker-Content-Digest`; blobs are hashed while they stream to disk; a push is read back
from the registry before anyone may record it. Transports only move bytes (see `registry.transport`).

What proves a pack landed (`check_landed`): the first tag is read back and its bytes hash to the
composed manifest's digest (so it names exactly our blobs), every other tag resolves to that digest,
and the registry serves the layer with its digest and size (a HEAD checked against the descriptor: a
registry answering 200 with `Content-Length: 0` for a blob it threw away, and accepting the manifest,
is caught; issue #21), and so does the config blob. Every check is a request of the built-in client,
also on the oras transport, which reads through it (`registry.oras`): they overlap the read-back and
cost no extra round trip.

The checks of one pack run side by side (`runtime.parallel.together`): their order never mattered,
only that all of them pass before the pack is recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from pack_publisher.oci.descriptor import Descriptor, DigestWriter, digest_of, is_digest
from pack_publisher.registry.transport import LikelyPush, NotFound, PushOutcome, PushRequest, Transport
from pack_publisher.runtime.errors import PublisherError
from pack_publisher.runtime.parallel import together


class VerifiedRegistry:
    """One registry seen through a transport, trusting no answer it has not checked."""

    def __init__(self, transport: Transport, registry: str) -> None:
        self.transport = transport
        self.registry = registry

    @property
    def name(self) -> str:
        return self.transport.name

    def resolve(self, repository: str, tag: str) -> Descriptor | None:
        """What a tag holds: a descriptor, or None only when the registry said "not found".

        Any other failure (auth, outage, a garbled answer) raises: it must never read as "absent".
        """
        try:
            return self.transport.resolve(repository, tag)
        except NotFound:
            return None

    def manifest(self, repository: str, reference: str, expected: str | None = None) -> bytes:
        """The manifest bytes at a tag or digest, proven to be what was asked for."""
        try:
            fetched = self.transport.fetch_manifest(repository, reference)
        except NotFound:
            raise PublisherError(f"{self.registry}/{repository}: manifest {reference} is not in the registry") from None
        actual = digest_of(fetched.data)
        where = f"{self.registry}/{repository}:{reference}" if not is_digest(reference) else repository
        if fetched.reported_digest is not None and fetched.reported_digest != actual:
            raise PublisherError(
                f"{where}: the registry says the manifest is {fetched.reported_digest}, but its bytes are {actual}"
            )
        for wanted in (reference if is_digest(reference) else None, expected):
            if wanted is not None and actual != wanted:
                raise PublisherError(f"{where}: the registry served manifest {actual}, expected {wanted}")
        return fetched.data

    def blob_to_file(self, repository: str, blob: Descriptor, destination: Path) -> None:
        """Stream a blob to `destination`, hashing it on the way; anything else than `blob` is refused."""
        writers: list[DigestWriter] = []

        @contextmanager
        def open_sink() -> Iterator[BinaryIO]:
            with destination.open("wb") as fh:
                writer = DigestWriter(fh)
                writers.append(writer)
                yield writer  # type: ignore[misc]  # DigestWriter writes like a binary file

        try:
            self.transport.fetch_blob(repository, blob.digest, open_sink)
        except NotFound:
            raise PublisherError(f"{self.registry}/{repository}: blob {blob.short} is not in the registry") from None
        last = writers[-1] if writers else None
        if last is None or last.digest != blob.digest or last.size != blob.size:
            got = f"{last.digest[:19]}, {last.size} bytes" if last else "nothing"
            raise PublisherError(f"{self.registry}: blob {blob.short} arrived with other content ({got})")

    def prepare(self, likely: LikelyPush) -> None:
        """A push that may follow: the transport may get it ready (nothing is written before `write`)."""
        self.transport.prepare(likely)

    def write(self, request: PushRequest) -> PushOutcome:
        """Write blobs and manifest as asked; nothing is proven until `check_landed` read it back."""
        return self.transport.push(request)

    def check_landed(self, request: PushRequest) -> None:
        """Prove from the registry that every tag serves the composed manifest and its blobs are there."""
        expected = request.artifact.descriptor.digest
        repository = request.repository
        first, *others = request.tags

        def read_back() -> None:
            self.manifest(repository, first, expected)  # the served bytes prove the digest

        def tag_serves(tag: str) -> None:
            served = self.resolve(repository, tag)
            if served is None or served.digest != expected:
                got = served.digest if served else "nothing"
                raise PublisherError(f"after the push, {repository}:{tag} serves {got}, not {expected}")

        def blob_served(blob: Descriptor) -> None:
            served = self.transport.blob_served(repository, blob.digest)
            if served is None:
                raise PublisherError(f"after the push, blob {blob.short} is missing from {repository}")
            if served != (blob.digest, blob.size):
                raise PublisherError(
                    f"after the push, {repository} says it serves blob {blob.short} as {served[0][:19]}, "
                    f"{served[1]} bytes, not {blob.size} bytes: the registry does not hold it"
                )

        checks: list[Callable[[], None]] = [read_back, *(partial(tag_serves, tag) for tag in others)]
        checks += [partial(blob_served, blob) for blob in request.artifact.blobs]
        together(checks)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> VerifiedRegistry:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
