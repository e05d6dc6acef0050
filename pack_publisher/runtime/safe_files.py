"""Reading and naming the files a user points the tool at, without trusting what they turn out to be.

A path from the environment or a flag may name a FIFO (an open blocks for ever), a device (`/dev/zero`
never ends), a folder, or a symbolic link out of the repository (a lockfile written through it lands
anywhere). `read_regular` opens without blocking, refuses anything that is not a regular file and reads
at most a cap; `lock_file_path` refuses a LOCK_FILE that is a link, or that a link leads out of the
repository.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from pack_publisher.runtime.errors import ConfigError


def kind_of(mode: int) -> str:
    """What a file of this mode is, in words."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_regular(path: Path, cap: int, what: str) -> bytes | None:
    """The bytes of the regular file `path` (None when it does not exist); over `cap` bytes, or any other
    kind of file, is refused in one line naming `what` (e.g. "LOCK_FILE")."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))  # a FIFO must not block
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO with no writer, opened without blocking for writing
            raise ConfigError(f"{what}: {path} is a FIFO, not a regular file") from None
        raise ConfigError(f"{what}: cannot read {path} ({exc.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{what}: {path} is {kind_of(mode)}, not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= cap and (chunk := os.read(fd, min(1 << 20, cap + 1 - size))):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path} ({exc.strerror})") from None
    finally:
        os.close(fd)
    if size > cap:
        raise ConfigError(f"{what}: {path} is over {cap} bytes; not a lockfile")
    return b"".join(chunks)


def check_writable_kind(path: Path, what: str) -> None:
    """An existing `path` to be replaced must be a regular file (not a FIFO, device, socket or folder)."""
    try:
        mode = path.lstat().st_mode
    except OSError:  # absent, or its folder cannot hold it: the folder's own check says why
        return
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{what}: {path} is {kind_of(mode)}, not a regular file; not writing there")


def lock_file_path(root: Path, given: str) -> Path:
    """The lockfile path LOCK_FILE names, refusing a symbolic link, or a path a link leads out of `root`.

    A plain path outside the repository (an absolute one the user wrote) is allowed: what is refused is
    a path that reads as being inside the repository but lands elsewhere.
    """
    named = Path(os.path.normpath(root / given))
    if named.is_symlink():
        raise ConfigError(f"LOCK_FILE: {given} is a symbolic link; name the lockfile itself (links are not followed)")
    resolved = named.resolve()
    base = root.resolve()
    inside_by_name = named.is_relative_to(root) or named.is_relative_to(base)
    if inside_by_name and not resolved.is_relative_to(base):
        raise ConfigError(
            f"LOCK_FILE: {given} leads out of the repository (to {resolved}) through a symbolic link; not following it"
        )
    return resolved
