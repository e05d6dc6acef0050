"""Shared fixtures: the builder stand-in on PATH, throw-away git repositories, running `invoke`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pack_publisher.config.environment import child_environment
from pack_publisher.registry.options import PublishOptions
from pack_publisher.runtime.processes import Commands
from testsupport.oras import real_oras
from testsupport.registries import Registry
from testsupport.standins import STANDINS, make_executable

PROJECT = Path(__file__).resolve().parent.parent
COMMIT_DATE = "2026-01-02T03:04:05Z"
COMMIT_EPOCH = 1767323045


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
def run_invoke(builder_bin: Path, tmp_path: Path) -> RunInvoke:
    """Run `invoke ARGS` in a folder, as a user would, with the builder stand-in on PATH."""
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


@pytest.fixture
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An anonymous docker-registry on a free loopback port, for one test."""
    running = Registry(tmp_path_factory.mktemp("registry")).start()
    yield running
    running.stop()


@pytest.fixture
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    running = Registry(tmp_path_factory.mktemp("registry"), auth="htpasswd").start()
    yield running
    running.stop()


@pytest.fixture
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    running = Registry(tmp_path_factory.mktemp("registry"), auth="token").start()
    yield running
    running.stop()


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
    return PublishOptions.model_validate({**base, **given})
