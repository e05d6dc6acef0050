"""Shared fixtures: the builder stand-in on PATH, throw-away git repositories, running `invoke`, registries.

The tiers (CONTRIBUTING.md): each test is marked from the fixtures it asks for, so a new test lands in
the right tier by itself: `registry` (it uses a docker-registry process), `subprocess` (it runs a real
`python -m invoke` child), `slow` (it waits out real timeouts or bounds, marked by hand). `invoke test`
runs the tests with none of these; `invoke test --all` runs every test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pack_publisher.config.environment import child_environment
from pack_publisher.registry.connect import PublishOptions
from pack_publisher.runtime.processes import Commands
from testsupport.inprocess import run_in_process
from testsupport.oras import real_oras
from testsupport.registries import Registry, RegistryPool
from testsupport.standins import STANDINS, make_executable

PROJECT = Path(__file__).resolve().parent.parent
COMMIT_DATE = "2026-01-02T03:04:05Z"
COMMIT_EPOCH = 1767323045

# fixture -> the marker every test using it (directly or through another fixture) gets
MARKING_FIXTURES = {
    "registry_pool": "registry",
    "run_invoke_process": "subprocess",
}


COST = {"slow": 4, "subprocess": 2, "registry": 1}  # run order: the higher the sum, the earlier


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fail-on-skip",
        action="store_true",
        help="fail the run when a test was skipped (invoke test --all)",
    )


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """With --fail-on-skip, a skipped test fails the run (on the xdist controller, which sees every report)."""
    if not session.config.getoption("--fail-on-skip") or hasattr(session.config, "workerinput"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if skipped and session.exitstatus == pytest.ExitCode.OK:
        reporter.write_line(f"error: {skipped} test(s) skipped; every test must run here (--fail-on-skip)", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test from its fixtures, then run the costly ones first.

    Slow tests first, then the child processes, then the registry tests: with pytest-xdist handing out
    one test at a time (`--maxschedchunk 1`, as `invoke test --all` runs it) the long ones start at once
    on every worker and the many short ones fill in at the end, instead of one worker finishing a 45 s
    test alone while the others wait.
    """
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for fixture, marker in MARKING_FIXTURES.items():
            if fixture in used:
                item.add_marker(marker)
    items.sort(key=lambda item: -sum(COST[m] for m in COST if item.get_closest_marker(m) is not None))


@pytest.fixture(autouse=True)
def _fast_tier_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the fast tier honest: there, a test that starts `python -m invoke` or a registry unmarked fails.

    Only when the run leaves those tests out (`-m "not registry and not subprocess ..."`): elsewhere an
    unmarked test runs as it is, so `invoke test --all` and CI take a new test before it is marked.
    """
    expression = request.config.option.markexpr or ""
    node = request.node
    if "not subprocess" in expression and node.get_closest_marker("subprocess") is None:
        real_init = subprocess.Popen.__init__

        def guarded(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
            argv = [str(a) for a in args] if isinstance(args, list | tuple) else [str(args)]
            if any(argv[i : i + 2] == ["-m", "invoke"] for i in range(len(argv))):
                pytest.fail("this test runs `python -m invoke`: use run_invoke, or mark it (run_invoke_process)")
            real_init(self, args, *rest, **kwargs)

        monkeypatch.setattr(subprocess.Popen, "__init__", guarded)
    if "not registry" in expression and node.get_closest_marker("registry") is None:

        def refused(self: Registry) -> Registry:
            pytest.fail("this test starts a docker-registry: use the registry fixtures, or mark it `registry`")

        monkeypatch.setattr(Registry, "start", refused)


@pytest.fixture
def builder_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding `greentic-pack` (the stand-in), to put on PATH."""
    folder = tmp_path_factory.mktemp("bin")
    make_executable(folder / "greentic-pack", STANDINS / "greentic_pack.py")
    return folder


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        "GIT_AUTHOR_DATE": COMMIT_DATE,
        "GIT_COMMITTER_DATE": COMMIT_DATE,
    }
    out = subprocess.run(["git", "-C", str(repo), *args], env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def init_repo(repo: Path) -> str:
    """Commit whatever `repo` holds into a new git repository; the HEAD sha."""
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "test commit")
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A committed copy of this repository's tasks.py and packs/, as a clean clone would have."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy2(PROJECT / "tasks.py", repo / "tasks.py")
    shutil.copytree(PROJECT / "packs", repo / "packs")
    init_repo(repo)
    return repo


def clean_env(builder_dir: Path | None, home: Path, **extra: str) -> dict[str, str]:
    """A minimal environment: no CI or GitHub variables leaking in from the machine running the tests."""
    path = os.environ.get("PATH", "/usr/bin:/bin")
    env = {
        "PATH": f"{builder_dir}{os.pathsep}{path}" if builder_dir else path,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(extra)
    return env


RunInvoke = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_invoke(builder_bin: Path, tmp_path: Path, fast_retries: None) -> RunInvoke:
    """Run `invoke ARGS` in a folder, as a user would, with the builder stand-in on PATH: stdout, stderr, exit code.

    It runs inside the test process (testsupport/inprocess.py), with the same minimal environment a child
    would get, and with the test retry budget (`fast_retries`); `run_invoke_process` is the same call in a
    real `python -m invoke` child, with the real retry waits.
    """
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)

    def run(cwd: Path, *args: str, builder: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        return run_in_process(cwd, args, clean_env(builder_bin if builder else None, home, **env))

    return run


@pytest.fixture
def run_invoke_process(builder_bin: Path, tmp_path: Path) -> RunInvoke:
    """`run_invoke` in a real `python -m invoke` child: for what only a process shows (start-up, signals, exit)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)

    def run(cwd: Path, *args: str, builder: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=cwd,
            env=clean_env(builder_bin if builder else None, home, **env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return run


@pytest.fixture(scope="session")
def registry_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryPool]:
    """One docker-registry per kind for the session (per xdist worker), started on first use."""
    pool = RegistryPool(tmp_path_factory.mktemp("registries"))
    yield pool
    pool.stop_all()


@pytest.fixture
def registry(registry_pool: RegistryPool) -> Registry:
    """An anonymous docker-registry on a loopback port, holding nothing when the test starts."""
    return registry_pool.fresh("none")


@pytest.fixture
def basic_registry(registry_pool: RegistryPool) -> Registry:
    """A docker-registry with htpasswd Basic auth (USER, PASSWORD), holding nothing when the test starts."""
    return registry_pool.fresh("htpasswd")


@pytest.fixture
def token_registry(registry_pool: RegistryPool) -> Registry:
    """A docker-registry with Bearer token auth (the GHCR flow), empty, its token server's log cleared."""
    return registry_pool.fresh("token")


RETRY_WAIT_SCALE = 0.01  # fast_retries: a 1 s backoff or Retry-After becomes 10 ms


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test-only retry budget for in-process runs: the waits between attempts shrink 100-fold.

    Attempts, timeouts and the total budget stay as configured, so a fault test still proves that a fault
    is retried and how often; the tests proving the real bounds in seconds run a child process instead
    (`run_invoke_process`), which this does not reach.
    """
    from pack_publisher.registry import retry

    real_sleep = retry.RealClock.sleep
    monkeypatch.setattr(retry.RealClock, "sleep", lambda self, seconds: real_sleep(self, seconds * RETRY_WAIT_SCALE))


def oras_path() -> str:
    """The real oras; a test that needs it fails loudly without it (CI installs it)."""
    found = real_oras()
    if found is None:
        pytest.fail("no real oras: set ORAS_BIN (.ci/run uses ../shared/tools/oras-1.3.3/oras) or put oras on PATH")
    return found


@pytest.fixture(params=["python", "oras"], ids=["builtin", "oras"])
def client(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment choosing one transport: every publishing test runs on both, oras being the real CLI."""
    if request.param == "python":
        return {"OCI_CLIENT": "python"}
    return {"OCI_CLIENT": "oras", "ORAS_BIN": oras_path()}


def runner() -> Commands:
    """The command runner a run would have, from the environment as it is now (tests monkeypatch it)."""
    return Commands(child_environment(), print)


def publish_options(**given: object) -> PublishOptions:
    """Publishing options as `options_of` makes them, from the environment as it is now, plus `given`."""
    docker = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    base: dict[str, object] = {
        "client": "python",
        "oras_bin": None,
        "plain_http": False,
        "oras_experimental": False,
        "timeout": 15.0,
        "docker_config": Path(docker) / "config.json",
        "child_env": child_environment(),
    }
    return PublishOptions(**{**base, **given})  # type: ignore[arg-type]
