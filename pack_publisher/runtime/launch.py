"""How a command is started so that it dies with this process, even one killed outright (Linux).

Ctrl-C and SIGTERM are handled by `cleanup`. A parent killed outright (`kill -9`, the OOM killer)
would otherwise leave oras uploading with the run's credentials, so every child gets
`PR_SET_PDEATHSIG`. Setting it from Python code run between fork and exec (`preexec_fn`) forces a full
fork of this process, which costs about 7 ms of wall time and as much CPU per command; a publish of
20 packs through oras runs 40 commands. So a program that will surely start runs as
`setpriv --pdeathsig KILL -- PROGRAM ARGS...`, which Python starts with vfork. setpriv comes from
util-linux 2.33 or later, found in /usr/bin or /bin. Its environment, arguments and descriptors reach the
program untouched.

Written here rather than taken from a library: no Python package sets the death signal without
`preexec_fn`. The price is setpriv's own start. It sets the signal about a millisecond after it starts,
and a parent killed within that millisecond leaves that one command running to its end. The
`preexec_fn` way checks for that.

Everything that might start differently under setpriv takes the `preexec_fn` way, and so behaves, and
fails, exactly as `subprocess` does:
- no setpriv, or an old one;
- a program not surely startable (`_runnable`); setpriv execs with `execvp`, which hands a file the
  kernel refuses to /bin/sh;
- a loader variable (`LD_*`), which would act on setpriv too.

setpriv is started under a name made up for the command (`setpriv-<random>`). Its messages and its
loader's begin with that name, and the program, once started, cannot know it. So "the program never
ran" (an old setpriv refusing the option, a failed exec) is told apart from anything the program
prints; the command then runs the other way.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import signal
import stat
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

SETPRIV_SEARCH = "/usr/bin:/bin"  # the system's own setpriv: not whatever a PATH offers first
_REFUSED: set[str] = set()  # setprivs that refused --pdeathsig (util-linux before 2.33): not asked again
_ELF = b"\x7fELF"
_EXECUTABLE_ELF_TYPES = (2, 3)  # ET_EXEC, ET_DYN; an object file (ET_REL) or a core dump does not run
_SCRIPT_HEAD = 256  # the kernel reads a script's `#!` line from this many bytes (BINPRM_BUF_SIZE)

PR_SET_PDEATHSIG = 1
_LINUX = sys.platform.startswith("linux")


@functools.cache
def _libc() -> Any:
    """The C library, for prctl; loaded in the parent (never between fork and exec), and only by the first
    command that cannot go through setpriv: ctypes costs about a millisecond to import."""
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # no C library to ask: children then end by `cleanup` alone
        return None


class FastStart:
    """One command as setpriv starts it: `argv` for `Popen` with `executable`, and how to tell that the
    program never ran (setpriv's or its loader's message, under the made-up name, and a failing status)."""

    def __init__(self, setpriv: str, program: str, args: Sequence[str]) -> None:
        self.executable = setpriv
        self.name = f"setpriv-{secrets.token_hex(8)}"  # what setpriv's messages begin with
        self.argv = [self.name, "--pdeathsig", "KILL", "--", program, *args]

    def never_ran(self, returncode: int, stderr_tail: str) -> bool:
        first = stderr_tail.lstrip().partition("\n")[0]
        if returncode == 0 or not first.startswith(f"{self.name}: "):
            return False
        if returncode == 1 and "pdeathsig" in first:  # getopt's refusal, in any language
            _REFUSED.add(self.executable)
        return True


def fast_start(argv: Sequence[str], env: Mapping[str, str], cwd: Path | None) -> FastStart | None:
    """The setpriv way for `argv`, or None when the command takes the `preexec_fn` way (see above)."""
    setpriv = _setpriv()
    if setpriv is None or any(name.startswith("LD_") for name in env):
        return None
    program = _startable(os.fspath(argv[0]), env, cwd)
    return FastStart(setpriv, program, list(argv[1:])) if program is not None else None


@functools.cache
def _find_setpriv(search_path: str) -> str | None:
    return shutil.which("setpriv", path=search_path) if _LINUX else None


def _setpriv() -> str | None:
    """util-linux's setpriv, unless it refused `--pdeathsig` already. It is not asked beforehand (a
    process of its own, 4 ms at every start): an old one refuses the first command, which then runs the
    other way, as every later one does."""
    found = _find_setpriv(SETPRIV_SEARCH)
    return None if found in _REFUSED else found


def _startable(program: str, env: Mapping[str, str], cwd: Path | None) -> str | None:
    """What to hand setpriv for `program`, when `subprocess` would start that same file and the kernel
    surely runs it; None when in doubt.

    A path is passed as given, so setpriv, started in `cwd`, resolves it as `subprocess` does (`..` after a
    symlink included). A bare name is looked up on the child's PATH as `subprocess` looks it up. The
    first file found must be runnable, and a relative folder on PATH is left to `subprocess`.
    """
    if os.sep in program:
        return program if _runnable(os.path.join(cwd, program) if cwd is not None else program) else None
    for folder in os.get_exec_path(dict(env)):
        if not os.path.isabs(folder):  # resolved in the child's folder, not this process's
            return None
        candidate = os.path.join(folder, program)
        if os.path.lexists(candidate):
            return candidate if _runnable(candidate) else None
    return None


def _runnable(path: str, *, interpreter: bool = False) -> bool:
    """A regular executable file the kernel runs here: an ELF program for this machine, or a `#!` script
    whose interpreter is one (a FIFO or a device is not opened for reading)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode) or not os.access(path, os.X_OK):
            return False
        head = os.read(fd, _SCRIPT_HEAD)
    except OSError:
        return False
    finally:
        os.close(fd)
    if head.startswith(_ELF):
        return _elf_kind(head) == _own_elf_kind() and _elf_type(head) in _EXECUTABLE_ELF_TYPES
    if interpreter or not head.startswith(b"#!") or b"\n" not in head:
        return False
    line = head[2:].split(b"\n", 1)[0].split()
    return bool(line) and line[0].startswith(b"/") and _runnable(os.fsdecode(line[0]), interpreter=True)


def _elf_kind(head: bytes) -> bytes:
    """An ELF file's class, byte order and machine: what must match for this kernel to run it here."""
    return head[4:6] + head[18:20]


def _elf_type(head: bytes) -> int:
    return int.from_bytes(head[16:18], "little" if head[5:6] == b"\x01" else "big")


@functools.cache
def _own_elf_kind() -> bytes | None:
    try:
        with open(sys.executable, "rb") as file:
            head = file.read(20)
    except OSError:
        return None
    return _elf_kind(head) if head.startswith(_ELF) else None


def die_with_parent() -> Callable[[], None] | None:
    """Code for the child, between fork and exec: be killed when the parent dies (Linux only).

    The signal follows the thread that started the child, which here waits for it to end
    (`Commands.run`).
    """
    libc = _libc() if _LINUX else None
    if libc is None:
        return None
    parent = os.getpid()

    def child() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above: go with it
            os.kill(os.getpid(), signal.SIGKILL)

    return child
