"""`invoke tools`: pinned downloads from a local file server, sha256-checked, cached; the builder via cargo."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pack_publisher.commands import tools
from pack_publisher.runtime.errors import ConfigError, PublisherError
from testsupport.inprocess import run_in_process
from testsupport.serving import serve_in_thread

from .conftest import PROJECT

ORAS_TARBALL = "oras_1.3.3_linux_amd64.tar.gz"


class FileServer:
    """Serves one folder on 127.0.0.1 and counts the requests it answers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, directory=str(server.root), **kwargs)  # type: ignore[arg-type]

            def do_GET(self) -> None:
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = serve_in_thread(self.httpd)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FileServer]:
    root = tmp_path / "served"
    root.mkdir()
    running = FileServer(root)
    yield running
    running.stop()


def tarball(path: Path, files: dict[str, bytes]) -> str:
    """Write a .tar.gz holding `files`; its sha256."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


FAKE_ORAS = b"#!/bin/sh\necho 'Version:        1.3.3'\n"


def served_oras(server: FileServer, files: dict[str, bytes] | None = None) -> tools.Tool:
    """A tool shaped like the pinned oras whose recorded sha256 is the one of the tarball served."""
    digest = tarball(server.root / ORAS_TARBALL, files or {"LICENSE": b"Apache-2.0\n", "oras": FAKE_ORAS})
    url = f"https://github.invalid/oras/{ORAS_TARBALL}"  # never reached: the base URL points at the server
    return tools.Tool("oras", "1.3.3", {"linux_amd64": tools.Asset(url, digest)})


def test_downloads_verifies_and_installs_the_executable(server: FileServer, tmp_path: Path) -> None:
    tool = served_oras(server)
    said: list[str] = []
    tools.install([tool], tmp_path / "bin", tmp_path / "cache", said.append, server.url, "linux_amd64")
    installed = tmp_path / "bin" / "oras"
    assert installed.read_bytes() == FAKE_ORAS
    assert os.access(installed, os.X_OK)
    assert subprocess.run([str(installed)], capture_output=True, text=True, check=True).stdout.startswith("Version:")
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["oras"]  # not the LICENSE, no temp files
    assert server.requests == [f"/{ORAS_TARBALL}"]
    assert said == [
        f"installed oras 1.3.3 -> {installed} (sha256 {tool.assets['linux_amd64'].sha256})",
        "summary: installed oras 1.3.3",
    ]


def test_a_verified_cached_download_is_reused_and_a_tampered_one_fetched_again(
    server: FileServer, tmp_path: Path
) -> None:
    tool = served_oras(server)
    bin_dir, cache = tmp_path / "bin", tmp_path / "cache"
    tools.install([tool], bin_dir, cache, print, server.url, "linux_amd64")
    (bin_dir / "oras").unlink()
    tools.install([tool], bin_dir, cache, print, server.url, "linux_amd64")
    assert len(server.requests) == 1, "the verified cached archive was downloaded again"
    assert (bin_dir / "oras").read_bytes() == FAKE_ORAS

    cached = next(cache.rglob(ORAS_TARBALL))
    cached.write_bytes(b"tampered")
    tools.install([tool], bin_dir, cache, print, server.url, "linux_amd64")
    assert len(server.requests) == 2, "a cached archive that no longer matches its sha256 was trusted"
    assert (bin_dir / "oras").read_bytes() == FAKE_ORAS


def test_a_sha256_mismatch_installs_and_keeps_nothing(server: FileServer, tmp_path: Path) -> None:
    tool = served_oras(server)
    tarball(server.root / ORAS_TARBALL, {"oras": b"#!/bin/sh\necho evil\n"})  # the server now serves other bytes
    bin_dir, cache = tmp_path / "bin", tmp_path / "cache"
    with pytest.raises(PublisherError) as raised:
        tools.install([tool], bin_dir, cache, print, server.url, "linux_amd64")
    assert raised.value.exit_code == 1
    assert f"expected {tool.assets['linux_amd64'].sha256}; nothing installed" in raised.value.message
    assert list(bin_dir.iterdir()) == []
    assert [p for p in cache.rglob("*") if p.is_file()] == [], "an unverified download was kept"


def test_a_missing_download_is_one_clean_error(server: FileServer, tmp_path: Path) -> None:
    tool = served_oras(server)
    (server.root / ORAS_TARBALL).unlink()
    with pytest.raises(PublisherError, match=r"download of .*oras_1\.3\.3_linux_amd64\.tar\.gz failed: HTTP 404"):
        tools.install([tool], tmp_path / "bin", tmp_path / "cache", print, server.url, "linux_amd64")


def test_an_archive_without_the_executable_is_refused(server: FileServer, tmp_path: Path) -> None:
    tool = served_oras(server, {"LICENSE": b"x", "bin/other": b"y"})
    with pytest.raises(PublisherError, match="holds 0 files named oras"):
        tools.install([tool], tmp_path / "bin", tmp_path / "cache", print, server.url, "linux_amd64")
    assert not (tmp_path / "bin" / "oras").exists()


def test_a_platform_without_a_recorded_sha256_is_refused_without_downloading(
    server: FileServer, tmp_path: Path
) -> None:
    assert tools.ORAS.assets["linux_arm64"].sha256 is None
    with pytest.raises(ConfigError, match=r"oras 1\.3\.3: no sha256 recorded for linux_arm64"):
        tools.install([tools.ORAS], tmp_path / "bin", tmp_path / "cache", print, server.url, "linux_arm64")
    with pytest.raises(ConfigError, match="no sha256 recorded for plan9_mips"):
        tools.install([tools.ORAS], tmp_path / "bin", tmp_path / "cache", print, server.url, "plan9_mips")
    assert server.requests == []


def test_the_pinned_oras_is_the_one_the_workflows_verify() -> None:
    asset = tools.ORAS.assets["linux_amd64"]
    assert asset.url == ("https://github.com/oras-project/oras/releases/download/v1.3.3/oras_1.3.3_linux_amd64.tar.gz")
    assert asset.sha256 == "9ce999f8d2de03fc03968b29d743077a58783e545e5eaa53917ca177352d0e59"
    assert all(a.url and a.url.endswith(f"oras_1.3.3_{p}.tar.gz") for p, a in tools.ORAS.assets.items())


# --- through `invoke tools`, as a developer runs it ---------------------------------------------------


def invoke_tools(*args: str, path: str, cwd: Path = PROJECT) -> subprocess.CompletedProcess[str]:
    """`invoke tools ARGS` in this repository, in-process, with only PATH, HOME and LANG set."""
    env = {"PATH": path, "HOME": str(cwd), "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    return run_in_process(PROJECT, ("tools", *args), env)


SYSTEM_PATH = f"{Path(sys.executable).parent}{os.pathsep}/usr/bin{os.pathsep}/bin"


def test_invoke_tools_refuses_an_upstream_file_whose_sha256_differs(server: FileServer, tmp_path: Path) -> None:
    if tools.current_platform() != "linux_amd64":
        pytest.skip("the recorded oras sha256 is for linux_amd64")
    served = tarball(server.root / ORAS_TARBALL, {"oras": FAKE_ORAS})  # not the official tarball
    bin_dir, cache = tmp_path / "bin", tmp_path / "cache"
    args = ["--tool", "oras", "--bin-dir", str(bin_dir), "--cache-dir", str(cache), "--base-url", server.url]
    result = invoke_tools(*args, path=SYSTEM_PATH)
    assert result.returncode == 1, result.stdout + result.stderr
    expected = tools.ORAS.assets["linux_amd64"].sha256
    assert result.stderr.strip().splitlines() == [
        f"error: oras 1.3.3: {server.url}/{ORAS_TARBALL} has sha256 {served}, expected {expected}; nothing installed"
    ]
    assert server.requests == [f"/{ORAS_TARBALL}"]
    assert not (bin_dir / "oras").exists()
    assert [p for p in cache.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tool", "docker"], "error: --tool: unknown tool 'docker' (pinned: oras, greentic-pack)"),
        (["--base-url", "file:///etc"], "error: --base-url: 'file:///etc' is not an http(s) URL"),
    ],
)
def test_invoke_tools_bad_input_is_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    result = invoke_tools(*args, "--bin-dir", str(tmp_path / "bin"), path=SYSTEM_PATH)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == message


def test_outside_a_virtual_environment_the_default_bin_dir_is_refused(tmp_path: Path) -> None:
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    code = (
        "from pack_publisher.commands import tools\n"
        "try:\n    tools.default_bin_dir()\nexcept Exception as e:\n    print(e)"
    )
    result = subprocess.run(
        [str(base_python), "-I", "-c", f"import sys; sys.path.insert(0, {str(PROJECT)!r})\n{code}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip().startswith("not in a virtual environment: activate the project's .venv")
    assert tools.default_bin_dir() == Path(sys.executable).parent  # the tests run in a venv


# --- the builder: cargo-binstall restricted to the upstream asset, else cargo install --locked ---------


FAKE_CARGO = """#!/bin/sh
# Records how it was called, then succeeds or fails as the test asks.
echo "argv: $*" >> "{log}"
echo "strategies: $BINSTALL_DISABLE_STRATEGIES" >> "{log}"
echo "telemetry: $BINSTALL_DISABLE_TELEMETRY" >> "{log}"
if [ "$1" = binstall ]; then
  [ "{binstall_ok}" = yes ] || exit 1
  while [ "$1" != --install-path ]; do shift; done
  printf '#!/bin/sh\\necho greentic-pack 1.1.3\\n' > "$2/greentic-pack"; chmod +x "$2/greentic-pack"
elif [ "$1" = install ]; then
  while [ "$1" != --root ]; do shift; done
  mkdir -p "$2/bin"; printf '#!/bin/sh\\necho built\\n' > "$2/bin/greentic-pack"; chmod +x "$2/bin/greentic-pack"
fi
"""


def fake_cargo(folder: Path, log: Path, binstall_ok: bool, with_binstall: bool = True) -> str:
    folder.mkdir()
    cargo = folder / "cargo"
    cargo.write_text(FAKE_CARGO.format(log=log, binstall_ok="yes" if binstall_ok else "no"))
    cargo.chmod(0o755)
    if with_binstall:
        (folder / "cargo-binstall").write_text("#!/bin/sh\nexit 0\n")
        (folder / "cargo-binstall").chmod(0o755)
    return f"{folder}{os.pathsep}{SYSTEM_PATH}"


def test_builder_goes_through_hardened_cargo_binstall(tmp_path: Path) -> None:
    log, bin_dir = tmp_path / "cargo.log", tmp_path / "bin"
    path = fake_cargo(tmp_path / "fake", log, binstall_ok=True)
    result = invoke_tools("--tool", "greentic-pack", "--bin-dir", str(bin_dir), path=path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert log.read_text().splitlines() == [
        f"argv: binstall --no-confirm --locked --install-path {bin_dir} greentic-pack@1.1.3",
        "strategies: quick-install,compile",
        "telemetry: true",
    ]
    assert (bin_dir / "greentic-pack").is_file()
    assert f"installed greentic-pack 1.1.3 -> {bin_dir / 'greentic-pack'}" in result.stdout


def test_builder_falls_back_to_a_locked_cargo_install(tmp_path: Path) -> None:
    log, bin_dir = tmp_path / "cargo.log", tmp_path / "bin"
    path = fake_cargo(tmp_path / "fake", log, binstall_ok=False)
    result = invoke_tools("--tool", "greentic-pack", "--bin-dir", str(bin_dir), path=path)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = [line for line in log.read_text().splitlines() if line.startswith("argv: ")]
    assert calls[0].startswith("argv: binstall ")
    assert calls[1].startswith("argv: install --locked --root ") and calls[1].endswith(" greentic-pack@1.1.3")
    assert len(calls) == 2
    assert (bin_dir / "greentic-pack").read_text() == "#!/bin/sh\necho built\n"


@pytest.mark.subprocess  # `invoke --echo` as a developer types it
def test_cargo_commands_are_echoed_with_invoke_echo(tmp_path: Path) -> None:
    log, bin_dir = tmp_path / "cargo.log", tmp_path / "bin"
    path = fake_cargo(tmp_path / "fake", log, binstall_ok=False)
    quiet = invoke_tools("--tool", "greentic-pack", "--bin-dir", str(bin_dir), path=path)
    assert quiet.returncode == 0 and "binstall --no-confirm" not in quiet.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "invoke", "--echo", "tools", "--tool", "greentic-pack", "--bin-dir", str(bin_dir)],
        cwd=PROJECT,
        env={"PATH": path, "HOME": str(tmp_path), "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    echoed = [line for line in shown.stdout.splitlines() if line.startswith("\x1b[1;37m")]
    assert len(echoed) == 2 and "cargo binstall --no-confirm --locked" in echoed[0]
    assert "cargo install --locked --root" in echoed[1]


def test_builder_without_cargo_binstall_falls_back_to_a_locked_cargo_install(tmp_path: Path) -> None:
    log, bin_dir = tmp_path / "cargo.log", tmp_path / "bin"
    path = fake_cargo(tmp_path / "fake", log, binstall_ok=True, with_binstall=False)
    result = invoke_tools("--tool", "greentic-pack", "--bin-dir", str(bin_dir), path=path)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = [line for line in log.read_text().splitlines() if line.startswith("argv: ")]
    assert len(calls) == 1 and calls[0].startswith("argv: install --locked --root "), calls
    assert (bin_dir / "greentic-pack").read_text() == "#!/bin/sh\necho built\n"
    assert (
        "greentic-pack 1.1.3: cargo-binstall is not on PATH; building it from source with `cargo install --locked`"
        in (result.stdout)
    )
    assert result.stdout.strip().endswith("summary: installed greentic-pack 1.1.3")


def test_builder_without_cargo_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    path = f"{empty}{os.pathsep}{Path(sys.executable).parent}"  # no cargo anywhere on it
    result = invoke_tools("--tool", "greentic-pack", "--bin-dir", str(tmp_path / "bin"), path=path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: greentic-pack 1.1.3: no sha256 recorded for its release asset")
    assert "cargo is not on PATH" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout.strip().endswith("summary: installed nothing; could not install greentic-pack 1.1.3")


def test_readme_table_is_rendered_from_the_data() -> None:
    readme = (PROJECT / "README.md").read_text()
    assert tools.markdown_table() in readme
