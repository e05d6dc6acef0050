"""OUT_DIR for one run: its lock (one run per OUT_DIR), and no litter when the run is refused.

A run refused by its preflight (a missing builder, half a credential pair, an unknown pack) must leave
the checkout as it found it: no `OUT_DIR/.publisher.lock`, no empty `dist/packs/` it created.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
from pathlib import Path

from .errors import ConfigError
from .run import Run

LOCK_NAME = ".publisher.lock"


def _writable_out_dir(run: Run) -> None:
    out_dir = run.settings.out_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"OUT_DIR: {out_dir} is not writable ({exc.strerror})") from None


def _missing_folders(path: Path) -> list[Path]:
    """`path` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path.parent != path:
        missing.append(path)
        path = path.parent
    return missing


def leave_no_litter(run: Run) -> None:
    """Should this run stop on an error, remove the folders it created (OUT_DIR, STAGE_DIR, the lockfile's)
    that are still empty, and its OUT_DIR lock. Call before anything is made."""
    s = run.settings
    made = sorted({p for f in (s.out_dir, s.stage_dir, s.lock_file.parent) for p in _missing_folders(f)}, reverse=True)

    def tidy() -> None:
        _release(run)
        for folder in made:  # deepest first; a folder holding anything stays
            with contextlib.suppress(OSError):
                folder.rmdir()

    run.on_failure.append(tidy)


def _release(run: Run) -> None:
    """Remove the lock file while still holding its lock (a run taking it re-checks it is the file on disk)."""
    if run.out_dir_lock is not None:
        with contextlib.suppress(OSError):
            (run.settings.out_dir / LOCK_NAME).unlink()


def hold_out_dir(run: Run) -> None:
    """Take OUT_DIR for this run (a file lock the OS releases on any exit); a second run fails at once.

    Held until the process ends, so chained tasks (`invoke build push lock`) keep it throughout; the
    lock file is removed as the process ends (or the run fails), so no run leaves it behind.
    """
    if run.out_dir_lock is not None:
        return
    _writable_out_dir(run)
    path = run.settings.out_dir / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 300).decode("utf-8", "replace").strip() or "another run"
            os.close(fd)
            raise ConfigError(
                f"OUT_DIR: {run.settings.relative(run.settings.out_dir)} is in use by {holder}; "
                "wait for it to finish, or give this run its own OUT_DIR"
            ) from None
        if _is_on_disk(fd, path):
            break
        os.close(fd)  # its holder removed it as it ended, after this run opened it: take the new one
    os.ftruncate(fd, 0)
    os.write(fd, run.redact(f"pid {os.getpid()} ({run.command})\n").encode())
    run.out_dir_lock = fd  # closed by the OS when the process exits, however it exits
    atexit.register(_release, run)


def _is_on_disk(fd: int, path: Path) -> bool:
    try:
        found = path.stat()
    except OSError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (found.st_dev, found.st_ino)
