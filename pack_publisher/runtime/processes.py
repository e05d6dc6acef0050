"""One runner for every external command the tasks start: the builder, oras, git, credential helpers.

Each command can be shown before it runs, in Invoke's echo style (`run.echo_format`), with every
secret masked: when Invoke is asked to echo (`invoke --echo`, or `run.echo` in its configuration) and
always when `CI` or `GITHUB_ACTIONS` is set, so a release log shows what was run.

Why not Invoke's `Context.run`: it starts the command through a shell from one string (quoting every
path and argument by hand), decodes output as text (oras blob bytes must stream, hashed, to a file),
and on timeout or Ctrl-C kills only its direct child. A builder or oras that leaves a grandchild
behind would keep running, or keep a pipe open and hold the run. Here each command gets its own
session, a wall-clock deadline that kills its whole process group, stderr in a file (read back as a
tail) and registration with `cleanup`, so Ctrl-C and SIGTERM stop it too. The echo is Invoke's own.

On Linux every command also dies with this process, even when it is killed outright (`PR_SET_PDEATHSIG`).
Setting that from Python code run between fork and exec (`preexec_fn`) forces a full fork of this process:
about 7 ms of wall time and as much CPU per command, and a publish of 20 packs through oras runs 40 of
them. So where util-linux's setpriv takes `--pdeathsig` (2.33 and later), the command is started as
`setpriv --pdeathsig KILL -- /bin/sh -c GUARD PID PROGRAM ARGS...` instead, which Python starts with
vfork. The guard is one line of shell: it execs the program only if its parent is still this process,
since one killed before setpriv set the signal would leave the child running (about 1 ms in all).
The `preexec_fn` way stays where setpriv cannot do it.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pack_publisher.runtime import cleanup

INVOKE_ECHO_FORMAT = "\033[1;37m{command}\033[0m"  # Invoke's default `run.echo_format`
STDERR_TAIL_BYTES = 64 * 1024  # enough for the last lines; a builder may write megabytes before failing
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: bytes  # empty when streamed into a sink or discarded
    stderr_tail: str  # the last STDERR_TAIL_BYTES of stderr, decoded leniently
    expired: bool  # killed at its deadline


class Commands:
    """Runs commands with the run's child environment (no secrets) and shows them when asked."""

    def __init__(
        self,
        env: Mapping[str, str],
        show: Callable[[str], None],
        *,
        echo: bool = False,
        echo_format: str = INVOKE_ECHO_FORMAT,
    ) -> None:
        self.env = dict(env)
        self._show = show  # prints one line, secrets masked (the run's printer)
        self.echo = echo
        self.echo_format = echo_format

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        stdin: bytes | None = None,
        stdout: IO[bytes] | bool = True,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        pass_fds: Sequence[int] = (),
    ) -> Completed:
        """Run `argv` to its end or its deadline; `stdout` True captures, False discards, a file receives.

        `pass_fds`: descriptors the child inherits (oras reads its registry config from one). On Linux
        the child is killed when this process dies, even by SIGKILL (`PR_SET_PDEATHSIG`, see above).
        Raises OSError when the program cannot be started (missing, not executable).
        """
        if self.echo:
            self._show(self.echo_format.format(command=shlex.join(argv)))
        child_env = dict(env) if env is not None else self.env
        started = functools.partial(_start, timeout=timeout, stdin=stdin, stdout=stdout, env=child_env, cwd=cwd)
        setpriv = _setpriv(self.env.get("PATH", os.defpath))
        if setpriv is None:
            return started(list(argv), _die_with_parent(), pass_fds)
        program = _executable(argv[0], child_env, cwd)
        guarded = [setpriv, "--pdeathsig", "KILL", "--", "/bin/sh", "-c", _GUARD, str(os.getpid()), program, *argv[1:]]
        done = started(guarded, None, pass_fds)
        if done.returncode != 0 and done.stderr_tail.startswith("setpriv: "):
            # setpriv refused before starting anything (util-linux before 2.33 has no --pdeathsig)
            _SETPRIV_REFUSED.add(setpriv)
            return started(list(argv), _die_with_parent(), pass_fds)
        if done.returncode in (126, 127):
            _raise_if_not_started(argv[0], done.stderr_tail)
        return done


def _start(
    launch: list[str],
    preexec: Callable[[], None] | None,
    pass_fds: Sequence[int],
    *,
    timeout: float,
    stdin: bytes | None,
    stdout: IO[bytes] | bool,
    env: Mapping[str, str],
    cwd: Path | None,
) -> Completed:
    """Start one process and wait for its end or its deadline (see `Commands.run`)."""
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            launch,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            # discarded output goes to /dev/null, not a pipe: a grandchild holding it cannot hold the run
            stdout=subprocess.PIPE if stdout is not False else subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            cwd=cwd,  # None: this process's folder
            start_new_session=True,  # so a deadline or Ctrl-C kills it and anything it started
            pass_fds=tuple(pass_fds),
            preexec_fn=preexec,
        )
        cleanup.track(process)
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            cleanup.kill_group(process)

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            if stdin is not None and process.stdin is not None:
                try:
                    process.stdin.write(stdin)
                    process.stdin.close()
                except BrokenPipeError:
                    pass  # it did not read its input; its exit status says the rest
            out = _drain(process.stdout, stdout) if process.stdout is not None else b""
            code = process.wait()
        finally:
            timer.cancel()
            cleanup.kill_group(process)  # whatever it left running ends with it
            process.wait()
            cleanup.untrack(process)
        size = stderr.seek(0, os.SEEK_END)
        stderr.seek(max(0, size - STDERR_TAIL_BYTES))
        tail = stderr.read().decode("utf-8", errors="replace")
    return Completed(code, out, tail, expired.is_set())


def _drain(pipe: IO[bytes], target: IO[bytes] | bool) -> bytes:
    """Read a child's stdout to the end: whole (True), into a file in chunks, or nowhere."""
    if target is True:
        return pipe.read()
    while chunk := pipe.read(CHUNK):
        if not isinstance(target, bool):
            target.write(chunk)
    return b""


PR_SET_PDEATHSIG = 1
_LIBC: Any = None
if sys.platform.startswith("linux"):
    try:
        _LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: the child only calls into it
    except OSError:  # no C library to ask: children then end by `cleanup` alone
        _LIBC = None


# $0 is this process's id; "$PPID" is the shell's parent when it started, after setpriv set the signal
_GUARD = '[ "$PPID" = "$0" ] && exec "$@"'


_SETPRIV_REFUSED: set[str] = set()  # setprivs that refused --pdeathsig: not asked again by this process


@functools.cache
def _find_setpriv(search_path: str) -> str | None:
    return shutil.which("setpriv", path=search_path) if _LIBC is not None else None


def _setpriv(search_path: str) -> str | None:
    """util-linux's setpriv on the children's PATH, unless it refused `--pdeathsig` already. It is not
    asked beforehand (a process of its own, 4 ms at every start): an old one refuses the first command,
    which then runs the other way."""
    found = _find_setpriv(search_path)
    return None if found in _SETPRIV_REFUSED else found


def _executable(program: str, env: Mapping[str, str], cwd: Path | None) -> str:
    """The file `program` names, found as `subprocess` finds it (the child's PATH, or a path from `cwd`).

    What `subprocess` would refuse with an OSError is refused here the same way before anything starts: a
    missing file, one that is not executable, one that is neither a program nor a script (the shell would
    run it as a script).
    """
    if os.sep in program:
        path = os.path.join(cwd, program) if cwd is not None else program
    else:
        path = shutil.which(program, path=env.get("PATH", os.defpath)) or program
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), program)
    try:
        with open(path, "rb") as file:
            head = file.read(4)
    except OSError:  # executable but not readable: only the kernel can tell
        head = b"#!"
    if not head.startswith((b"\x7fELF", b"#!")):
        raise OSError(errno.ENOEXEC, os.strerror(errno.ENOEXEC), program)
    return os.path.abspath(path)


def _raise_if_not_started(program: str, stderr_tail: str) -> None:
    """The guard's failure to exec the program (126 or 127, and the shell's `exec: PATH: REASON` line: a
    script's missing interpreter, a program for another machine) as the OSError `subprocess` would raise."""
    lines = [line for line in stderr_tail.splitlines() if line.strip()]
    if lines and ": exec: " in lines[-1]:
        reason = lines[-1].rsplit(": ", 1)[-1]
        code = errno.ENOENT if reason == "not found" else _ERRNO_BY_TEXT.get(reason, errno.ENOEXEC)
        raise OSError(code, os.strerror(code), program)


_ERRNO_BY_TEXT = {os.strerror(code): code for code in errno.errorcode}


def _die_with_parent() -> Callable[[], None] | None:
    """Code for the child, between fork and exec: be killed when the parent dies (Linux only).

    Ctrl-C and SIGTERM are handled by `cleanup`; this covers a parent killed outright (`kill -9`, the
    OOM killer), which would otherwise leave oras uploading with the run's credentials. The signal
    follows the thread that started the child, which here waits for it to end (`Commands.run`).
    """
    if _LIBC is None:
        return None
    parent = os.getpid()

    def child() -> None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above: go with it
            os.kill(os.getpid(), signal.SIGKILL)

    return child
