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
from collections.abc import Callable, Mapping, Sequence
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
        if self.echo:
            self._show(self.echo_format.format(command=shlex.join(argv)))
        child_env = dict(env) if env is not None else self.env
        started = functools.partial(_start, timeout=timeout, stdin=stdin, stdout=stdout, env=child_env, cwd=cwd)
        fast = launch.fast_start(argv, child_env, cwd)
        if fast is not None:
            done = started(fast.argv, fast.executable, None, pass_fds)
            if not fast.never_ran(done.returncode, done.stderr_tail):
                return done
        # the other way: it runs, or fails as `subprocess` fails
        return started(list(argv), None, launch.die_with_parent(), pass_fds)


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
    with tempfile.TemporaryFile() as stderr:
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
