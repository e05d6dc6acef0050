"""Verified content over any transport: every digest check, done once, here.

Manifests are checked by their bytes (bytes -> digest) against what was asked for and against the
registry's `Docker-Content-Digest`; blobs are hashed while they stream to disk; a push is read back
from the registry before anyone may record it. Transports only move bytes (see `transports.base`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .descriptor import Descriptor, DigestWriter, digest_of, is_digest
from .errors import PublisherError
from .transports.base import NotFound, PushOutcome, PushRequest, Transport


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

    def push(self, request: PushRequest) -> PushOutcome:
        """Push, then prove from the registry that every tag serves these exact bytes and every blob is there."""
        outcome = self.transport.push(request)
        self.check_landed(request)
        return outcome

    def check_landed(self, request: PushRequest) -> None:
        expected = request.artifact.descriptor.digest
        first, *others = request.tags
        self.manifest(request.repository, first, expected)  # the served bytes prove the digest
        for tag in others:
            served = self.resolve(request.repository, tag)
            if served is None or served.digest != expected:
                got = served.digest if served else "nothing"
                raise PublisherError(f"after the push, {request.repository}:{tag} serves {got}, not {expected}")
        for blob in request.artifact.blobs:
            if not self.transport.blob_exists(request.repository, blob.digest):
                raise PublisherError(f"after the push, blob {blob.short} is missing from {request.repository}")

    def close(self) -> None:
        self.transport.close()
