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
them. So where util-linux's setpriv takes `--pdeathsig` (2.33 and later, in /usr/bin or /bin), a program
known to start (`_startable`) runs as `setpriv --pdeathsig KILL -- PROGRAM ARGS...`, which Python starts
with vfork; its environment, arguments and descriptors reach the program untouched. The price: setpriv
sets the signal about a millisecond after it starts, and a parent killed outright within that
millisecond leaves that one command running to its end (the `preexec_fn` way checks for it). Anything
else (no setpriv, an old one, a program `subprocess` might refuse or the kernel might hand to another
loader) takes the `preexec_fn` way, so it behaves, and fails, exactly as `subprocess` does.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
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
        Raises OSError when the program cannot be started (missing, not executable), as `subprocess` does.
        """
        if self.echo:
            self._show(self.echo_format.format(command=shlex.join(argv)))
        child_env = dict(env) if env is not None else self.env
        started = functools.partial(_start, timeout=timeout, stdin=stdin, stdout=stdout, env=child_env, cwd=cwd)
        setpriv = _setpriv()
        program = _startable(argv[0], child_env, cwd) if setpriv is not None else None
        if setpriv is None or program is None:
            return started(list(argv), _die_with_parent(), pass_fds)
        done = started([setpriv, "--pdeathsig", "KILL", "--", program, *argv[1:]], None, pass_fds)
        if _setpriv_refused(done):  # util-linux before 2.33: nothing started
            _SETPRIV_REFUSED.add(setpriv)
        elif not _exec_failed(done, program):
            return done
        # the program never ran: started the other way, it runs, or fails as `subprocess` fails
        return started(list(argv), _die_with_parent(), pass_fds)


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


SETPRIV_SEARCH = "/usr/bin:/bin"  # the system's own: not whatever a PATH offers first
_SETPRIV_REFUSED: set[str] = set()  # setprivs that refused --pdeathsig: not asked again by this process


@functools.cache
def _find_setpriv(search_path: str) -> str | None:
    return shutil.which("setpriv", path=search_path) if _LIBC is not None else None


def _setpriv() -> str | None:
    """util-linux's setpriv, unless it refused `--pdeathsig` already. It is not asked beforehand (a
    process of its own, 4 ms at every start): an old one refuses the first command, which then runs the
    other way."""
    found = _find_setpriv(SETPRIV_SEARCH)
    return None if found in _SETPRIV_REFUSED else found


def _setpriv_refused(done: Completed) -> bool:
    """An old setpriv's refusal of the option, before any exec: its getopt's exact line (glibc's, musl's)."""
    first = done.stderr_tail.lstrip().partition("\n")[0].rstrip()
    return done.returncode == 1 and _REFUSAL.fullmatch(first) is not None


_REFUSAL = re.compile(r"setpriv: unrecognized option(?: '--pdeathsig'|: pdeathsig)")


def _exec_failed(done: Completed, program: str) -> bool:
    """setpriv could not exec `program` (126/127 and its `failed to execute PROGRAM: REASON` line)."""
    lines = done.stderr_tail.rstrip().splitlines()
    return (
        done.returncode in (126, 127)
        and bool(lines)
        and lines[-1].startswith(f"setpriv: failed to execute {program}: ")
    )


def _startable(program: str, env: Mapping[str, str], cwd: Path | None) -> str | None:
    """The absolute path of `program` when it will surely start as `subprocess` would start it: found as
    `subprocess` finds it (the child's PATH, or a path from `cwd`), a regular executable file, and an ELF
    program for this machine or a `#!` script. None otherwise: the caller then starts it the `subprocess`
    way, which runs it or fails exactly as before (a missing file, a folder, another machine's program,
    a format the kernel hands to a registered loader)."""
    if os.sep in program:
        path = os.path.join(cwd, program) if cwd is not None else program
    else:
        found = shutil.which(program, path=env.get("PATH", os.defpath))
        if found is None:
            return None
        path = found
    try:
        with open(path, "rb") as file:
            head = file.read(20)
    except OSError:
        return None
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        return None
    if head.startswith(b"#!") or (head.startswith(b"\x7fELF") and _elf_kind(head) == _own_elf_kind()):
        return os.path.abspath(path)
    return None


def _elf_kind(head: bytes) -> bytes:
    """An ELF file's class, byte order and machine: what must match for this kernel to run it here."""
    return head[4:6] + head[18:20]


@functools.cache
def _own_elf_kind() -> bytes | None:
    try:
        with open(sys.executable, "rb") as file:
            head = file.read(20)
    except OSError:
        return None
    return _elf_kind(head) if head.startswith(b"\x7fELF") else None


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
