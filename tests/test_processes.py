"""The command runner starts children either through `setpriv --pdeathsig` (vfork, the fast way) or with
`preexec_fn` (a fork): both must behave as `subprocess` does, and every child must die with a parent
killed outright."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pack_publisher.runtime import launch
from pack_publisher.runtime.processes import Commands

PATH = os.environ.get("PATH", os.defpath)


@pytest.fixture(params=["setpriv", "fork"])
def launcher(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(launch, "_REFUSED", set())  # whatever an earlier test made of it
    if request.param == "setpriv":
        # util-linux is on every Debian system and in CI: without its setpriv the fast way is never tested
        runner().run(["true"], timeout=10)  # an older setpriv refuses --pdeathsig here, and is then not used
        assert launch._setpriv() is not None, "setpriv --pdeathsig is missing (util-linux 2.33 or later)"
        for program in ("sh", "env", "cat", "git", sys.executable, "tests/../tests/gtpacks.py"):
            if program.endswith(".py"):
                continue  # a file of the tree, not a program
            assert launch.fast_start([program], {"PATH": PATH}, None) is not None, program
    else:
        monkeypatch.setattr(launch, "fast_start", lambda argv, env, cwd: None)
    yield request.param


def runner() -> Commands:
    return Commands({"PATH": PATH}, lambda line: None)


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


@pytest.mark.parametrize(
    ("message", "status"),
    [
        ("sh: 1: exec: /no/tool: not found", 127),
        ("setpriv: unrecognized option '--pdeathsig'", 1),
        ("setpriv: failed to execute $0: No such file or directory", 127),
        ("setpriv-0123456789abcdef: failed to execute $0: No such file or directory", 127),
    ],
)
def test_a_program_that_fails_like_a_failed_start_runs_once(
    launcher: str, tmp_path: Path, message: str, status: int
) -> None:
    """A wrapper whose own `exec` fails, or whose message forges setpriv's: its result, after one run."""
    count = tmp_path / "count"
    wrapper = tmp_path / "wrapper"
    wrapper.write_text(f'#!/bin/sh\necho x >> {count}\necho "{message}" >&2\nexit {status}\n')
    wrapper.chmod(0o755)
    done = runner().run([str(wrapper)], timeout=10)
    assert (done.returncode, count.read_text()) == (status, "x\n")
    assert launcher == "fork" or launch._setpriv() is not None  # and setpriv is still used


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
    empty_interpreter = tmp_path / "empty-interpreter"
    empty_interpreter.write_text("#!\necho I would run as a shell script\n")
    script_interpreter = tmp_path / "script-interpreter"
    script_interpreter.write_text(f"#!{no_header}\n")
    long_interpreter = tmp_path / "long-interpreter"
    long_interpreter.write_text("#!/" + "x" * 300 + "\necho I would run as a shell script\n")
    object_file = tmp_path / "object-file"  # this machine's ELF, but an object file (ET_REL), not a program
    own = bytearray(Path(sys.executable).resolve().read_bytes()[:64])
    own[16:18] = (1).to_bytes(2, "little" if own[5] == 1 else "big")
    object_file.write_bytes(bytes(own))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (no_header, other_machine, no_interpreter, folder, here_only, empty_interpreter):
        path.chmod(0o755)
    for path in (script_interpreter, long_interpreter, object_file, fifo):
        path.chmod(0o755)
    cases = {
        "missing path": (str(tmp_path / "missing"), None),
        "missing on PATH": ("no-such-program-anywhere", None),
        "a folder": (str(folder), None),
        "not executable": (str(not_executable), None),
        "no header": (str(no_header), None),
        "another machine's program": (str(other_machine), None),
        "a script without its interpreter": (str(no_interpreter), None),
        "relative to the working folder": ("./missing", tmp_path),
        "in the working folder but not on PATH": ("only-here", tmp_path),
        "a script with an empty #! line": (str(empty_interpreter), None),
        "a script whose interpreter is a script without #!": (str(script_interpreter), None),
        "a script whose #! line is too long": (str(long_interpreter), None),
        "an object file of this machine": (str(object_file), None),
        "a FIFO": (str(fifo), None),
    }
    assert tuple(cases) == UNSTARTABLE
    return cases


UNSTARTABLE = (
    "missing path",
    "missing on PATH",
    "a folder",
    "not executable",
    "no header",
    "another machine's program",
    "a script without its interpreter",
    "relative to the working folder",
    "in the working folder but not on PATH",
    "a script with an empty #! line",
    "a script whose interpreter is a script without #!",
    "a script whose #! line is too long",
    "an object file of this machine",
    "a FIFO",
)


@pytest.mark.parametrize("case", UNSTARTABLE)
def test_a_program_that_cannot_start_raises_what_subprocess_raises(launcher: str, tmp_path: Path, case: str) -> None:
    program, cwd = _unstartable(tmp_path)[case]
    with pytest.raises(OSError) as expected:
        subprocess.run([program], cwd=cwd, env={"PATH": PATH}, check=False, timeout=10)
    with pytest.raises(OSError) as raised:
        runner().run([program], timeout=10, cwd=cwd)
    assert (type(raised.value), raised.value.errno) == (type(expected.value), expected.value.errno)
    assert raised.value.strerror == expected.value.strerror


def test_the_program_is_the_file_subprocess_would_run(
    launcher: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`..` after a symlink resolves through the link. A relative PATH folder is the child's, not ours: there,
    a file the kernel refuses is passed over for the next one on PATH (setpriv's exec would run it with sh)."""
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real" / "sub")
    ours, theirs, later = tmp_path / "ours" / "bin", tmp_path / "theirs" / "bin", tmp_path / "later"
    for folder in (ours, theirs, later):
        folder.mkdir(parents=True)
    scripts = {
        tmp_path / "real" / "tool": "#!/bin/sh\necho right\n",
        tmp_path / "tool": "#!/bin/sh\necho wrong\n",
        ours / "tool": "#!/bin/sh\necho ours\n",
        theirs / "tool": "echo headerless\n",  # execve refuses it; subprocess goes on along PATH
        later / "tool": "#!/bin/sh\necho later\n",
    }
    for path, text in scripts.items():
        path.write_text(text)
        path.chmod(0o755)
    through_link = str(tmp_path / "link" / ".." / "tool")
    monkeypatch.chdir(ours.parent)
    relative_path = {"PATH": f"bin:{later}:{PATH}"}
    expected = [
        subprocess.run([through_link], capture_output=True, check=True).stdout,
        subprocess.run(["tool"], cwd=theirs.parent, env=relative_path, capture_output=True, check=True).stdout,
    ]
    got = [
        runner().run([through_link], timeout=10).stdout,
        runner().run(["tool"], timeout=10, cwd=theirs.parent, env=relative_path).stdout,
    ]
    assert got == expected == [b"right\n", b"later\n"]


def test_loader_variables_keep_setpriv_out(tmp_path: Path) -> None:
    """LD_PRELOAD and its kind would act on setpriv as on the program: such a command takes the other way."""
    assert launch.fast_start(["env"], {"PATH": PATH, "LD_PRELOAD": ""}, None) is None
    assert launch.fast_start(["env"], {"PATH": PATH, "LD_LIBRARY_PATH": str(tmp_path)}, None) is None


CHILD = textwrap.dedent(
    """
    import sys
    from pack_publisher.runtime import launch, processes
    if sys.argv[1] == "fork":
        launch.fast_start = lambda argv, env, cwd: None
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


def test_a_setpriv_without_pdeathsig_is_not_used_and_the_command_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """util-linux before 2.33 has setpriv but not --pdeathsig: its getopt refuses the option before
    anything starts, and the command runs the other way, as every later one does. GNU sleep stands in
    for it: the same getopt, the same refusal under the name it was started as."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "setpriv").symlink_to(shutil.which("sleep") or "/bin/sleep")
    monkeypatch.setattr(launch, "SETPRIV_SEARCH", str(folder))
    monkeypatch.setattr(launch, "_REFUSED", set())
    commands = Commands({"PATH": "/usr/bin:/bin"}, lambda line: None)
    first = commands.run(["sh", "-c", "read line; echo got $line"], timeout=10, stdin=b"input\n")
    assert launch._setpriv() is None
    second = commands.run(["echo", "again"], timeout=10)
    assert (first.returncode, first.stdout, second.stdout) == (0, b"got input\n", b"again\n")
