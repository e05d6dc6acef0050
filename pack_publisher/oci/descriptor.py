"""Content descriptors: what travels from the archive to the lockfile instead of loose digests.

A descriptor (media type, digest, size) names content exactly; `digest_of` and `file_descriptor` are
the one place digests are made, so no other module builds a `sha256:` string by hand.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

from pack_publisher.oci.names import DIGEST_RE
from pack_publisher.runtime.frozen import frozen

ALGORITHM = "sha256"
CHUNK = 1024 * 1024


@frozen
class Descriptor:
    media_type: str
    digest: str  # "sha256:<hex>"
    size: int

    @property
    def short(self) -> str:
        """The digest cut to what people compare by eye in messages (`sha256:` and 12 hex digits)."""
        return self.digest[:19]


def digest_of(data: bytes) -> str:
    return f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


def describe(media_type: str, data: bytes) -> Descriptor:
    return Descriptor(media_type, digest_of(data), len(data))


def file_digest(path: Path) -> str:
    """The digest of a file, read in chunks: archives can be large."""
    hasher = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)
    return f"{ALGORITHM}:{hasher.hexdigest()}"


def file_descriptor(media_type: str, path: Path) -> Descriptor:
    return Descriptor(media_type, file_digest(path), path.stat().st_size)


def is_digest(value: object) -> bool:
    return isinstance(value, str) and DIGEST_RE.match(value) is not None


class DigestWriter:
    """Wraps a binary sink and hashes everything written through it, so content is checked as it streams."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink = sink
        self._hasher = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> int:
        self._hasher.update(chunk)
        self.size += len(chunk)
        return self.sink.write(chunk)

    @property
    def digest(self) -> str:
        return f"{ALGORITHM}:{self._hasher.hexdigest()}"
