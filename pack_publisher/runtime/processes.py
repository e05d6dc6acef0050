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

On Linux every command also dies with this process, even when it is killed outright: `launch` says how.
"""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import IO

from pack_publisher.runtime import cleanup, launch
from pack_publisher.runtime.frozen import frozen

INVOKE_ECHO_FORMAT = "\033[1;37m{command}\033[0m"  # Invoke's default `run.echo_format`
STDERR_TAIL_BYTES = 64 * 1024  # enough for the last lines; a builder may write megabytes before failing
CHUNK = 1024 * 1024


@frozen
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
        self._echo(argv)
        child_env = dict(env) if env is not None else self.env
        started = functools.partial(_start, timeout=timeout, stdin=stdin, stdout=stdout, env=child_env, cwd=cwd)
        fast = launch.fast_start(argv, child_env, cwd)
        if fast is not None:
            done = started(fast.argv, fast.executable, None, pass_fds)
            if not fast.never_ran(done.returncode, done.stderr_tail):
                return done
        # the other way: it runs, or fails as `subprocess` fails
        return started(list(argv), None, launch.die_with_parent(), pass_fds)

    def start(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, pass_fds: Sequence[int] = ()
    ) -> Started:
        """Start `argv` now (output captured, no input) and wait for it later (`Started.finish`), or never.

        For a command held at a gate of its own until the caller knows it is wanted (oras reading its
        layout's index from a FIFO): its start-up overlaps the caller's work. It is echoed when the
        caller lets it through (`announce`); its deadline starts at `finish`. The death signal follows
        the thread that starts it (`launch`): start it from one that outlives it (the main thread).
        Raises OSError when the program cannot be started.
        """
        child_env = dict(env) if env is not None else self.env
        spawn = functools.partial(_spawn, pass_fds=pass_fds, stdin=None, stdout=True, env=child_env)
        fast = launch.fast_start(argv, child_env, None)
        echo = functools.partial(self._echo, argv)  # shown when let through: one never wanted did nothing
        # the caller sees a program setpriv could not start as one that ended early (`Started.ended`)
        if fast is not None:
            return Started(*spawn(fast.argv, fast.executable, None), echo)
        return Started(*spawn(list(argv), None, launch.die_with_parent()), echo)

    def _echo(self, argv: Sequence[str]) -> None:
        if self.echo:
            self._show(self.echo_format.format(command=shlex.join(argv)))


class Started:
    """A command started by `Commands.start`: finished (waited for under a deadline) or abandoned, once.

    The caller must know it is wanted before letting it pass its gate; one that ended before (it failed,
    or setpriv could not start it) is abandoned and its work run the usual way (`Commands.run`).
    """

    def __init__(self, process: subprocess.Popen[bytes], stderr: IO[bytes], echo: Callable[[], None]) -> None:
        self.process = process
        self._stderr = stderr
        self._echo = echo
        self._done = False  # finished or abandoned

    def ended(self) -> bool:
        return self.process.poll() is not None

    def announce(self) -> None:
        """Echo it (when commands are echoed): it is let through now, before it does its work."""
        self._echo()

    def finish(self, timeout: float) -> Completed:
        """Wait for its end, or kill it at `timeout` seconds from now; its output and status."""
        self._done = True
        return _wait(self.process, self._stderr, timeout=timeout, stdin=None, stdout=True)

    def abandon(self) -> None:
        """Kill it, with anything it started, and wait for it: it was not wanted (once finished: nothing)."""
        if self._done:
            return
        self._done = True
        try:
            if self.process.returncode is None:  # once reaped, its number may be another process's
                cleanup.kill_group(self.process)
            self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
        finally:
            cleanup.untrack(self.process)
            self._stderr.close()


class HeldCommands:
    """Commands started ahead of need (`Commands.start`), each with its scratch folder, kept by key until
    taken; `drop_all` stops the rest and removes their folders. Safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[Hashable, tuple[Path, Started]] = {}

    def hold(self, key: Hashable, folder: Path, started: Started) -> None:
        with self._lock:
            replaced = self._held.pop(key, None)
            self._held[key] = (folder, started)
        if replaced is not None:
            _drop(replaced)

    def take(self, key: Hashable) -> tuple[Path, Started] | None:
        with self._lock:
            return self._held.pop(key, None)

    def drop_all(self) -> None:
        with self._lock:
            unused, self._held = list(self._held.values()), {}
        for held in unused:
            _drop(held)


def _drop(held: tuple[Path, Started]) -> None:
    held[1].abandon()
    cleanup.remove_folder(held[0])


def _start(
    argv: list[str],
    executable: str | None,
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
    process, stderr = _spawn(argv, executable, preexec, pass_fds=pass_fds, stdin=stdin, stdout=stdout, env=env, cwd=cwd)
    return _wait(process, stderr, timeout=timeout, stdin=stdin, stdout=stdout)


def _spawn(
    argv: list[str],
    executable: str | None,
    preexec: Callable[[], None] | None,
    *,
    pass_fds: Sequence[int],
    stdin: bytes | None,
    stdout: IO[bytes] | bool,
    env: Mapping[str, str],
    cwd: Path | None = None,
) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """Start one process in a session of its own, stderr into a scratch file; tracked by `cleanup`."""
    # closed by `_wait` or `Started.abandon`, which outlive this function
    stderr = tempfile.TemporaryFile()  # noqa: SIM115
    try:
        process = subprocess.Popen(
            argv,
            executable=executable,  # None: argv[0], found as usual
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
    except BaseException:
        stderr.close()
        raise
    cleanup.track(process)
    return process, stderr


def _wait(
    process: subprocess.Popen[bytes],
    stderr: IO[bytes],
    *,
    timeout: float,
    stdin: bytes | None,
    stdout: IO[bytes] | bool,
) -> Completed:
    """Feed `stdin`, read stdout, and wait for the end or the deadline; kill what it left; close `stderr`."""
    with stderr:
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
