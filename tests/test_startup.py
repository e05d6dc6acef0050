"""Start-up (issue 24): a command imports only what its path uses, no path imports pydantic, git runs only
for what no variable says, and the environment is read as pydantic-settings read it."""

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
# pydantic_settings was replaced by settings.environment_values; pydantic by dataclasses checked by hand
# (runtime.values): its import was ~60 ms of a ~0.3 s command
NEVER = ["pydantic_settings", "pydantic", "pydantic_core"]
LATEST_ONLY = ["semver"]
NOT_IMPORTED = ["requests", "urllib3"]  # the built-in client is on http.client: no path pays ~50 ms for them
FALLBACK_ONLY = ["ctypes"]  # prctl for a command setpriv cannot start (runtime.launch): ~1 ms to import
SETTINGS_VARS = [
    *("OCI_REGISTRY", "OCI_ORG", "OCI_REPO", "PACK_VERSION", "PACKC", "PACKC_BIN", "SOURCE_DATE_EPOCH", "DRY_RUN"),
    *("GITHUB_REPOSITORY", "GITHUB_REPOSITORY_OWNER", "OCI_CLIENT", "PUBLISH_JOBS", "GIT_SHA", "GITHUB_SHA"),
]


def imported_after(code: str) -> set[str]:
    """Run `code` in a fresh interpreter; the modules it left in sys.modules."""
    probe = f"""
import json, sys
{code}
print(json.dumps(sorted(sys.modules)))
"""
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT, capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(out.stdout))


def test_the_oras_push_path_imports_nothing_it_does_not_use() -> None:
    modules = imported_after(
        "import tasks\nfrom pack_publisher.commands import push, release\nfrom pack_publisher.registry import oras"
    )
    assert "pack_publisher.commands.push" in modules
    for name in [*BUILD_ONLY, *NEVER, *LATEST_ONLY, *NOT_IMPORTED, *FALLBACK_ONLY]:
        assert name not in modules, f"{name} imported on the oras push path"


def test_the_built_in_client_imports_neither_requests_nor_urllib3() -> None:
    modules = imported_after("from pack_publisher.commands import push\nfrom pack_publisher.registry import http")
    assert {"pack_publisher.registry.http", "pack_publisher.registry.client", "http.client"} <= modules
    assert not {*BUILD_ONLY, *NEVER, *LATEST_ONLY, *NOT_IMPORTED, *FALLBACK_ONLY} & modules


def test_a_plain_http_request_leaves_the_idna_codec_unloaded() -> None:
    """A str host given to `getaddrinfo` imports `encodings.idna`, `stringprep` and `unicodedata` (about 2 ms
    of a plain-HTTP push's first request): the pool's connections give it the ASCII name as bytes."""
    modules = imported_after(
        "import socket, threading\n"
        "listener = socket.socket()\n"
        "listener.bind(('127.0.0.1', 0))\n"
        "listener.listen()\n"
        "def answer():\n"
        "    peer, _ = listener.accept()\n"
        "    peer.recv(65536)\n"
        "    peer.sendall(b'HTTP/1.1 204 No Content\\r\\nContent-Length: 0\\r\\n\\r\\n')\n"
        "threading.Thread(target=answer, daemon=True).start()\n"
        "from pack_publisher.registry.connections import Pool\n"
        "key = ('http', '127.0.0.1', listener.getsockname()[1], '')\n"
        "assert Pool(lambda: None).send(key, 'GET', '/', None, {}, (5, 5), {}).status_code == 204\n"
    )
    assert "pack_publisher.registry.connections" in modules
    assert not {"encodings.idna", "stringprep", "unicodedata"} & modules


def test_listing_the_tasks_imports_no_pydantic() -> None:
    modules = imported_after("import tasks")
    assert "pack_publisher.cli.context" in modules
    assert not {*NEVER, "pack_publisher.commands.push", *NOT_IMPORTED} & modules


def test_no_command_path_imports_pydantic() -> None:
    """`invoke --list`, then a push's whole set-up on each transport: settings read, options made, a record
    written and read back, pack.yaml checked. None of it imports pydantic (nor anything else made for it)."""
    modules = imported_after(
        "import io, contextlib, tempfile, pathlib\n"
        "from invoke.main import program\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    program.run(['invoke', '--list'], exit=False)\n"
        "from pack_publisher.commands import push, release, build, lock\n"
        "from pack_publisher.registry import oras, http\n"
        "from pack_publisher.config import environment\n"
        "from pack_publisher.state import records\n"
        "from pack_publisher.oci.descriptor import describe\n"
        "from pack_publisher.sources import packs\n"
        "env = environment.read_environment({'publish_jobs': 2, 'dry_run': True})\n"
        "environment.options_of(env)\n"
        "d = describe('x/y', b'data')\n"
        "out = pathlib.Path(tempfile.mkdtemp())\n"
        "built = records.BuiltPack(name='p', pack_id='p', version='1.0.0', git_sha='0' * 40, gtpack=out / 'p',"
        " layer=d, manifest=out / 'm', manifest_descriptor=d, reference='r/o/p:1.0.0')\n"
        "records.save(out, built)\n"
        "assert records.load(out, 'p', records.BuiltPack) == built\n"
        "packs._validate({'pack_id': 'p', 'version': '1.0.0', 'kind': 'provider', 'publisher': 'G'}, 'p')\n"
    )
    assert {"pack_publisher.commands.push", "pack_publisher.registry.http", "pack_publisher.state.records"} <= modules
    found = sorted(m for m in modules if m.split(".")[0] in {*NEVER, "annotated_types", "typing_inspection"})
    assert not found, f"imported for pydantic: {found}"


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
