"""`invoke ARGS` run inside the test process, as `python -m invoke` would run it, for tests that check only
what a user sees: stdout, stderr and the exit code.

A child process costs about a second on a loaded 2-core machine (the interpreter, Invoke, the imports); this
costs the task alone. What a child would have of its own is given and taken back around the call: the
environment (replaced whole, as `subprocess.run(env=...)` does), the working directory, `sys.argv`,
`sys.path`, stdout and stderr, the SIGTERM handler, the temporary folder Python chose, and a bare root
logger (`invoke --debug` configures it; pytest's handlers on it would stop that). What the OS would
release at the child's exit is released too: the file lock a run holds on OUT_DIR. An exception escaping
Invoke is a traceback on stderr and exit 1, as from the interpreter.

Tests that need a process of their own (signals, start-up, `sys.flags`, concurrent shards) use the
`run_invoke_process` fixture instead.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

OUT_DIR_LOCK = ".publisher.lock"  # pack_publisher.commands.preflight.LOCK_NAME, held until the process exits


def run_in_process(cwd: Path, args: tuple[str, ...], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `invoke *args` in `cwd` with exactly `env`; stdout, stderr and exit code as from a child process."""
    from invoke import __version__
    from invoke.program import Program

    out, err = io.StringIO(), io.StringIO()
    argv = ["invoke", *args]
    code = 0
    with _as_a_child(cwd, argv, env), redirect_stdout(out), redirect_stderr(err):
        try:
            Program(name="Invoke", binary_names=["invoke", "inv"], version=__version__).run(argv)
        except SystemExit as exc:
            code = _exit_code(exc, err)
        except Exception:
            traceback.print_exc(file=err)
            code = 1
    return subprocess.CompletedProcess([sys.executable, "-m", *argv], code, out.getvalue(), err.getvalue())


def _exit_code(exc: SystemExit, err: io.StringIO) -> int:
    """The status the interpreter would exit with for `exc` (a message is printed and means 1)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=err)
    return 1


@contextmanager
def _as_a_child(cwd: Path, argv: list[str], env: dict[str, str]) -> Iterator[None]:
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    saved_sigterm, saved_tempdir = signal.getsignal(signal.SIGTERM), tempfile.tempdir
    saved_bytecode = sys.dont_write_bytecode  # tasks.py sets it
    fds_before = _open_fds()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers.clear()
    root.setLevel(logging.WARNING)
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None  # chosen again from TMPDIR, as a new process would
    os.chdir(cwd)
    sys.argv = argv
    try:
        yield
    finally:
        _release_out_dir_locks(fds_before)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv, sys.path[:] = saved_argv, saved_path
        tempfile.tempdir = saved_tempdir
        sys.dont_write_bytecode = saved_bytecode
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        signal.signal(signal.SIGTERM, saved_sigterm)
        sys.modules.pop("tasks", None)  # the next run loads its own tasks.py


def _open_fds() -> dict[int, str]:
    """What each open descriptor points at (not the one listing /proc/self/fd, gone once listed)."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
    return found


def _release_out_dir_locks(before: dict[int, str]) -> None:
    """What a process's exit does to the OUT_DIR lock a run left open: the product's exit handler removes the
    lock file (`preflight._release`, run here and unregistered, as this process does not exit), then the
    descriptor closes. The test's own descriptors stay."""
    import atexit

    from pack_publisher.commands import preflight

    for fd, target in _open_fds().items():
        if target.endswith("/" + OUT_DIR_LOCK) and before.get(fd) != target:
            with contextlib.suppress(OSError):
                if os.path.exists(target) and os.path.samestat(os.stat(target), os.fstat(fd)):
                    os.unlink(target)
            os.close(fd)
    atexit.unregister(preflight._release)
