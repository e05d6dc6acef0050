"""OCI image layouts written for oras to copy from: the exact bytes composed here, archives linked, not copied.

A layout may be gated: its `index.json` is a FIFO. oras reads a layout's index before it does anything
else (it must know what to copy), so an `oras cp` started early, while the plan is still being made, waits
there without a single request; `open_gate` hands it the index once the push is decided, and a copy that
is not wanted is killed at the gate. A regular file then replaces the FIFO, for any later attempt.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Protocol

from pack_publisher.oci.descriptor import Descriptor

LAYOUT_VERSION = '{"imageLayoutVersion":"1.0.0"}'
INDEX = "index.json"
_GATE_POLL = 0.0005  # seconds between looks for the reader: oras opens its gate a few ms after it starts


def start_layout(layout: Path, *, gated: bool) -> None:
    """An empty layout: its blob folder and `oci-layout` file, and, if `gated`, the FIFO for its index."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text(LAYOUT_VERSION, encoding="utf-8")
    if gated:
        os.mkfifo(layout / INDEX, 0o600)


def add_blobs(
    layout: Path, blobs: list[tuple[Descriptor, Path | bytes]], manifests: list[tuple[Descriptor, bytes]]
) -> None:
    """Every blob and manifest, under its digest: files linked (copied only where links cannot be made)."""
    folder = layout / "blobs" / "sha256"
    for blob, source in [*blobs, *manifests]:
        path = folder / blob.digest.split(":", 1)[1]
        if isinstance(source, Path):
            _link(source, path)
        elif not path.exists():  # the empty config, once
            path.write_bytes(source)


def index_of(manifests: list[tuple[Descriptor, bytes]], tag: str | None) -> bytes:
    """The layout's index: the manifests in order, the first tagged `tag` in the layout if given."""
    entries: list[dict[str, Any]] = []
    for descriptor, _ in manifests:
        entries.append({"mediaType": descriptor.media_type, "digest": descriptor.digest, "size": descriptor.size})
    if tag is not None:
        entries[0]["annotations"] = {"org.opencontainers.image.ref.name": tag}
    return json.dumps({"schemaVersion": 2, "manifests": entries}).encode()


def write_index(layout: Path, index: bytes) -> None:
    """The index as a regular file, replacing the gate if there is one (a reader holding it keeps it)."""
    path = layout / INDEX
    path.unlink(missing_ok=True)
    path.write_bytes(index)


class Reader(Protocol):
    """The process waiting at a gate, as `open_gate` sees it."""

    def ended(self) -> bool: ...

    def announce(self) -> None:
        """Called once it holds the gate, before it gets the index: it has sent nothing yet."""


def open_gate(layout: Path, index: bytes, reader: Reader, seconds: float) -> bool:
    """Hand `index` to the process waiting at the layout's gate; False if it ended first, or never came within
    `seconds` (then the caller stops it and copies the usual way)."""
    give_up = time.monotonic() + seconds
    while True:
        try:
            # non-blocking: a FIFO opened for writing with no reader fails at once (ENXIO) instead of hanging
            fd = os.open(layout / INDEX, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO or reader.ended() or time.monotonic() > give_up:
                return False
            time.sleep(_GATE_POLL)  # still starting: it has not opened its gate yet
    reader.announce()
    os.set_blocking(fd, True)
    try:
        with open(fd, "wb") as gate:  # closing it is the end of the index for the reader
            gate.write(index)
    except BrokenPipeError:  # it went away while reading: it read nothing whole, so it copied nothing
        return False
    return True


def _link(source: Path, blob: Path) -> None:
    try:
        os.link(source, blob)
    except OSError:  # another file system, or links not allowed: a copy is correct, only slower
        shutil.copyfile(source, blob)
