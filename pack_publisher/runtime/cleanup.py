"""What must not outlive a run, even one stopped by Ctrl-C: scratch folders (one may hold credentials)
and child processes.

Ctrl-C leaves through `os._exit` (so a stalled push thread cannot hold the exit), which skips
`finally` blocks; `clean_exit` calls `run_all` first so this list is honoured on every exit path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

_lock = threading.Lock()
_folders: set[Path] = set()
_processes: set[subprocess.Popen[bytes]] = set()


def register_folder(path: Path) -> None:
    with _lock:
        _folders.add(path)


def scratch_folder(parent: Path, prefix: str) -> Path:
    """A new private folder `<prefix><pid>-*` in `parent` (mode 0700), removed at exit if not before; such
    folders left by a run killed outright are swept first."""
    sweep_stale(parent, prefix)
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))
    register_folder(path)
    return path


def remove_folder(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    with _lock:
        _folders.discard(path)


def track(process: subprocess.Popen[bytes]) -> None:
    with _lock:
        _processes.add(process)


def untrack(process: subprocess.Popen[bytes]) -> None:
    with _lock:
        _processes.discard(process)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill a child started in its own session, with anything it started."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        if process.poll() is None:
            with contextlib.suppress(OSError):
                process.kill()  # the group is gone or not ours to signal: end the child itself at least


def run_all() -> None:
    with _lock:
        processes, folders = list(_processes), list(_folders)
    for process in processes:
        kill_group(process)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def sweep_stale(parent: Path, prefix: str) -> None:
    """Remove folders `<prefix><pid>-*` in `parent` whose process no longer runs (a run killed outright)."""
    try:
        found = list(parent.glob(f"{prefix}*"))
    except OSError:
        return
    for folder in found:
        pid = folder.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)) and folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
