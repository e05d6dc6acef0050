"""The command runner starts children either through `setpriv --pdeathsig` (vfork, the fast way) or with
`preexec_fn` (a fork): both must behave as `subprocess` does, and every child must die with a parent
killed outright."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pack_publisher.runtime import processes
from pack_publisher.runtime.processes import Commands


@pytest.fixture(params=["setpriv", "fork"])
def launcher(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(processes, "_SETPRIV_REFUSED", set())  # whatever an earlier test made of it
    if request.param == "setpriv":
        # util-linux is on every Debian system and in CI: without its setpriv the fast way is never tested
        runner().run(["true"], timeout=10)  # an older setpriv refuses --pdeathsig here, and is then not used
        assert processes._setpriv() is not None, "setpriv --pdeathsig is missing (util-linux 2.33 or later)"
    else:
        monkeypatch.setattr(processes, "_setpriv", lambda: None)
    yield request.param


def runner() -> Commands:
    return Commands({"PATH": os.environ.get("PATH", os.defpath)}, lambda line: None)


def test_input_output_status_and_stderr_pass_through(launcher: str) -> None:
    done = runner().run(["sh", "-c", "cat; echo oops >&2; exit 3"], timeout=10, stdin=b"bytes in")
    assert (done.returncode, done.stdout, done.stderr_tail.strip(), done.expired) == (3, b"bytes in", "oops", False)


def test_a_passed_descriptor_reaches_the_program(launcher: str, tmp_path: Path) -> None:
    read, write = os.pipe()
    try:
        os.write(write, b"secret-free config")
        os.close(write)
        done = runner().run(["cat", f"/dev/fd/{read}"], timeout=10, pass_fds=[read])
    finally:
        os.close(read)
    assert done.stdout == b"secret-free config"


def test_the_working_folder_and_environment_are_the_childs(launcher: str, tmp_path: Path) -> None:
    done = runner().run(["sh", "-c", 'pwd; echo "$ONLY_HERE"'], timeout=10, cwd=tmp_path, env={"ONLY_HERE": "yes"})
    assert done.stdout.decode().split() == [str(tmp_path), "yes"]


def test_the_environment_reaches_the_program_untouched(launcher: str) -> None:
    """Names no shell would keep (GitHub's `INPUT_MY-INPUT`, dotted ones) and ones a shell rewrites."""
    given = {"PATH": "/usr/bin:/bin", "INPUT_MY-INPUT": "1", "a.b": "2", "IFS": "z", "PPID": "77", "SHLVL": "9"}
    done = runner().run(["env"], timeout=10, env=given)
    assert dict(line.split("=", 1) for line in done.stdout.decode().splitlines()) == given


def test_a_program_that_fails_like_a_failed_start_runs_once(launcher: str, tmp_path: Path) -> None:
    """A wrapper whose own `exec` fails, or whose message starts like setpriv's: its result, run once."""
    count = tmp_path / "count"
    script = f'echo x >> {count}; echo "sh: 1: exec: /no/tool: not found" >&2; exit 127'
    done = runner().run(["sh", "-c", script], timeout=10)
    refused = runner().run(
        ["sh", "-c", f"echo x >> {count}; echo 'setpriv: cannot switch uid' >&2; exit 1"], timeout=10
    )
    assert (done.returncode, refused.returncode, count.read_text()) == (127, 1, "x\nx\n")
    assert (processes._setpriv() is None) == (launcher == "fork")  # and setpriv is still used


def _unstartable(tmp_path: Path) -> dict[str, tuple[str, Path | None]]:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    not_executable = tmp_path / "not-executable"
    not_executable.write_text("#!/bin/sh\n")
    no_header = tmp_path / "no-header"
    no_header.write_text("echo I would run as a shell script\n")
    other_machine = tmp_path / "other-machine"
    other_machine.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(56))  # an ELF header the kernel refuses
    no_interpreter = tmp_path / "no-interpreter"
    no_interpreter.write_text("#!/no/such/interpreter\n")
    here_only = tmp_path / "only-here"
    here_only.write_text("#!/bin/sh\necho ran from the working folder\n")
    for path in (no_header, other_machine, no_interpreter, folder, here_only):
        path.chmod(0o755)
    return {
        "missing path": (str(tmp_path / "missing"), None),
        "missing on PATH": ("no-such-program-anywhere", None),
        "a folder": (str(folder), None),
        "not executable": (str(not_executable), None),
        "no header": (str(no_header), None),
        "another machine's program": (str(other_machine), None),
        "a script without its interpreter": (str(no_interpreter), None),
        "relative to the working folder": ("./missing", tmp_path),
        "in the working folder but not on PATH": ("only-here", tmp_path),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing path",
        "missing on PATH",
        "a folder",
        "not executable",
        "no header",
        "another machine's program",
        "a script without its interpreter",
        "relative to the working folder",
        "in the working folder but not on PATH",
    ],
)
def test_a_program_that_cannot_start_raises_what_subprocess_raises(launcher: str, tmp_path: Path, case: str) -> None:
    program, cwd = _unstartable(tmp_path)[case]
    with pytest.raises(OSError) as expected:
        subprocess.run([program], cwd=cwd, env={"PATH": os.environ.get("PATH", os.defpath)}, check=False)
    with pytest.raises(OSError) as raised:
        runner().run([program], timeout=10, cwd=cwd)
    assert (type(raised.value), raised.value.errno) == (type(expected.value), expected.value.errno)
    assert raised.value.strerror == expected.value.strerror


CHILD = textwrap.dedent(
    """
    import sys
    from pack_publisher.runtime import processes
    if sys.argv[1] == "fork":
        processes._setpriv = lambda: None
    processes.Commands({"PATH": "/usr/bin:/bin"}, print).run(["sleep", sys.argv[2]], timeout=60)
    """
)


def _sleeping(marker: str, program: bytes = b"sleep") -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
            if argv[:1] and argv[0].endswith(program) and argv[1:] == [marker.encode(), b""]:
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile
    return found


def test_a_child_dies_with_its_parent_killed_outright(launcher: str) -> None:
    marker = f"59.{os.getpid()}{launcher == 'fork':d}"  # a sleep no other test starts
    parent = subprocess.Popen([sys.executable, "-c", CHILD, launcher, marker], cwd=Path(__file__).parents[1])
    try:
        deadline = time.monotonic() + 10
        while not _sleeping(marker) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _sleeping(marker), "the child never started"
        # started by setpriv, the program is named by its full path (found as subprocess finds it)
        assert bool(_sleeping(marker, b"/sleep")) == (launcher == "setpriv")
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _sleeping(marker) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _sleeping(marker) == [], "the child outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in _sleeping(marker):
            os.kill(pid, signal.SIGKILL)


def test_a_setpriv_without_pdeathsig_is_asked_once_and_the_command_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """util-linux before 2.33 has setpriv but not --pdeathsig: it refuses the first command before
    starting anything, which then runs the other way, and so do the later ones."""
    folder = tmp_path / "bin"
    folder.mkdir()
    asked = tmp_path / "asked"
    old = folder / "setpriv"
    old.write_text(
        f"#!/bin/sh\necho x >> {asked}\necho \"setpriv: unrecognized option '$1'\" >&2\n"
        "echo \"Try 'setpriv --help' for more information.\" >&2\nexit 1\n"
    )
    old.chmod(0o755)
    monkeypatch.setattr(processes, "SETPRIV_SEARCH", str(folder))
    monkeypatch.setattr(processes, "_SETPRIV_REFUSED", set())
    commands = Commands({"PATH": "/usr/bin:/bin"}, lambda line: None)
    first = commands.run(["sh", "-c", "read line; echo got $line"], timeout=10, stdin=b"input\n")
    second = commands.run(["echo", "again"], timeout=10)
    assert (first.returncode, first.stdout, second.stdout) == (0, b"got input\n", b"again\n")
    assert asked.read_text() == "x\n"
    assert processes._setpriv() is None
