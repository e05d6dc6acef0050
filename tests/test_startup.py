"""Start-up (issue 24): a command imports only what its path uses, pydantic models are built on first use,
git runs only for what no variable says, and the environment is read as pydantic-settings read it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from pack_publisher.config.environment import read_environment
from pack_publisher.config.settings import resolve_settings
from pack_publisher.runtime.errors import ConfigError
from pack_publisher.runtime.processes import Commands
from testsupport.registries import Registry

from .conftest import COMMIT_DATE, PROJECT, RunInvoke, git, init_repo

BUILD_ONLY = ["pack_publisher.sources.archive", "pack_publisher.sources.builder", "blake3", "cbor2"]
NEVER = ["pydantic_settings"]  # replaced by settings.environment_values
LATEST_ONLY = ["semver"]
NOT_IMPORTED = ["requests", "urllib3"]  # the built-in client is on http.client: no path pays ~50 ms for them
MODELS = {
    "pack_publisher.state.records": ["BuiltPack", "PublishedPack"],
    "pack_publisher.config.environment": ["EnvSettings"],
    "pack_publisher.registry.connect": ["PublishOptions"],
    "pack_publisher.config.settings": ["Settings"],
    "pack_publisher.sources.packs": ["PackMeta"],
}
SETTINGS_VARS = [
    *("OCI_REGISTRY", "OCI_ORG", "OCI_REPO", "PACK_VERSION", "PACKC", "PACKC_BIN", "SOURCE_DATE_EPOCH", "DRY_RUN"),
    *("GITHUB_REPOSITORY", "GITHUB_REPOSITORY_OWNER", "OCI_CLIENT", "PUBLISH_JOBS", "GIT_SHA", "GITHUB_SHA"),
]


def imported_after(code: str) -> dict[str, object]:
    """Run `code` in a fresh interpreter; what it left in sys.modules and whether each model was built."""
    probe = f"""
import importlib, json, sys
{code}
built = {{}}
for module, names in {MODELS!r}.items():
    if module in sys.modules:
        for name in names:
            built[name] = getattr(sys.modules[module], name).__pydantic_complete__
print(json.dumps({{"modules": sorted(sys.modules), "built": built}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT, capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_the_oras_push_path_imports_nothing_it_does_not_use() -> None:
    found = imported_after(
        "import tasks\nfrom pack_publisher.commands import push, release\nfrom pack_publisher.registry import oras"
    )
    modules = set(found["modules"])  # type: ignore[call-overload]
    assert "pack_publisher.commands.push" in modules and "pydantic" in modules
    for name in [*BUILD_ONLY, *NEVER, *LATEST_ONLY, *NOT_IMPORTED]:
        assert name not in modules, f"{name} imported on the oras push path"
    assert "pack_publisher.registry.http" not in modules


def test_the_built_in_client_imports_neither_requests_nor_urllib3() -> None:
    modules = set(
        imported_after("from pack_publisher.commands import push\nfrom pack_publisher.registry import http")["modules"]
    )  # type: ignore[call-overload]
    assert {"pack_publisher.registry.http", "pack_publisher.registry.client", "http.client"} <= modules
    assert not {*BUILD_ONLY, *NEVER, *LATEST_ONLY, *NOT_IMPORTED} & modules


def test_listing_the_tasks_imports_no_pydantic() -> None:
    modules = set(imported_after("import tasks")["modules"])  # type: ignore[call-overload]
    assert "pack_publisher.cli.context" in modules
    assert not {"pydantic", "pack_publisher.commands.push", *NOT_IMPORTED} & modules


def test_models_are_built_on_first_use() -> None:
    found = imported_after("from pack_publisher.commands import push, release")
    assert found["built"] == {name: False for names in MODELS.values() for name in names}
    used = imported_after(
        "from pack_publisher.commands import push\nfrom pack_publisher.config import environment\n"
        "from pack_publisher.registry import connect\nenvironment.read_environment()\n"
        "connect.PublishOptions.model_json_schema()"
    )
    built = used["built"]
    assert built["EnvSettings"] is True and built["PublishOptions"] is True  # type: ignore[index]
    assert built["BuiltPack"] is False  # type: ignore[index]


# git: only what no variable says


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in SETTINGS_VARS:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "README").write_text("x\n")
    init_repo(tmp_path)
    git(tmp_path, "remote", "add", "origin", "https://github.com/Acme/packs.git")
    return tmp_path


def git_calls(repo: Path) -> tuple[list[str], object]:
    shown: list[str] = []
    commands = Commands({"PATH": "/usr/bin:/bin"}, shown.append, echo=True, echo_format="{command}")
    settings = resolve_settings(repo, commands=commands)
    return [line.split(" ", 3)[3] for line in shown], settings


def test_one_git_process_when_variables_give_version_org_and_source(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACK_VERSION", "1.2.3")
    monkeypatch.setenv("OCI_ORG", "acme")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/packs")
    calls, settings = git_calls(repo)
    assert calls == ["rev-list -1 --timestamp 'HEAD^{commit}' --"]  # HEAD and its time, together
    assert settings.git_sha == git(repo, "rev-parse", "HEAD")  # type: ignore[attr-defined]
    assert settings.created == COMMIT_DATE  # type: ignore[attr-defined]


def test_the_origin_and_tags_are_read_when_nothing_else_says(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    git(repo, "tag", "v2.0.0")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    calls, settings = git_calls(repo)
    assert calls == ["rev-list -1 --timestamp 'HEAD^{commit}' --", "tag --points-at HEAD", "remote get-url origin"]
    assert settings.org == "acme" and settings.version == "2.0.0"  # type: ignore[attr-defined]
    assert settings.source_url == "https://github.com/Acme/packs"  # type: ignore[attr-defined]


def test_a_repository_without_commits_is_still_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS_VARS:
        monkeypatch.delenv(name, raising=False)
    git(tmp_path, "init", "-q", "-b", "main")
    monkeypatch.setenv("PACK_VERSION", "1.2.3")
    monkeypatch.setenv("OCI_ORG", "acme")
    with pytest.raises(ConfigError, match="not a git checkout with a commit"):
        resolve_settings(tmp_path)


# the environment, read without pydantic-settings as it read it


def test_environment_names_compare_case_insensitively_and_empty_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("oci_registry", "registry.example:5000")
    monkeypatch.setenv("OCI_REPO", "")
    monkeypatch.setenv("PACKC_BIN", "/opt/packc")
    monkeypatch.setenv("Publish_Jobs", "7")
    monkeypatch.setenv("NOT_A_SETTING", "ignored")
    env = read_environment()
    assert env.oci_registry == "registry.example:5000" and env.oci_repo == "greentic-packs"
    assert env.packc == "/opt/packc" and env.publish_jobs == 7
    monkeypatch.setenv("PACKC", "/opt/first")
    assert read_environment().packc == "/opt/first"  # PACKC before PACKC_BIN
    assert read_environment({"publish_jobs": 2, "dry_run": None}).publish_jobs == 2  # flags over the environment


def test_a_bad_environment_value_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCI_CLIENT", "curl")
    with pytest.raises(ConfigError) as info:
        read_environment()
    assert info.value.message.startswith("OCI_CLIENT: 'curl': input should be")


def test_a_push_runs_one_git_process(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry, client: dict[str, str], tmp_path: Path
) -> None:
    """The whole command, on both transports: HEAD and its time, nothing else from git, and the pack lands."""
    shim = tmp_path / "shim"
    shim.mkdir()
    log = tmp_path / "git.log"
    real_git = shutil.which("git")
    assert real_git is not None
    (shim / "git").write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real_git} "$@"\n')
    (shim / "git").chmod(0o755)
    env = {
        "OCI_REGISTRY": registry.host,
        "OCI_ORG": "acme",
        "PACK_VERSION": "1.2.3",
        "GITHUB_REPOSITORY": "acme/packs",
        **client,
    }
    built = run_invoke(project_copy, "build", **env)
    assert built.returncode == 0, built.stdout + built.stderr
    log.unlink(missing_ok=True)
    path = f"{shim}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    pushed = run_invoke(project_copy, "push", PATH=path, **env)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    calls = log.read_text().splitlines()
    assert len(calls) == 1 and calls[0].endswith("rev-list -1 --timestamp HEAD^{commit} --"), calls
    answer = urllib.request.urlopen(  # what landed, read without the publisher
        urllib.request.Request(
            f"{registry.url}/v2/acme/greentic-packs/messaging-provider-bundle/manifests/1.2.3",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        ),
        timeout=30,
    )
    assert json.loads(answer.read())["layers"][0]["mediaType"] == "application/vnd.greentic.gtpack.v1+zip"
