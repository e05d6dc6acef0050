"""Canary credentials through every task and failure path: never printed, written, passed in argv,
or handed to a child's environment; anything relayed from the builder or oras is redacted."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from testsupport.registries import PASSWORD, USER, Registry, free_port

from .conftest import RunInvoke

OCI_CANARY = "canary-oci-pw-9f8e7d6c"
GH_CANARY = "canary-gh-token-1a2b3c4d"
DOCKER_CANARY = "canary-docker-pw-5x6y7z8w"
CANARIES = [OCI_CANARY, GH_CANARY, DOCKER_CANARY, PASSWORD]


def leaks(text: str) -> list[str]:
    forms = {c for c in CANARIES} | {base64.b64encode(c.encode()).decode() for c in CANARIES}
    forms |= {base64.b64encode(f"{USER}:{c}".encode()).decode() for c in CANARIES}
    return [form for form in forms if form in text]


def files_text(project: Path) -> str:
    parts = []
    for path in [*(project / "dist").rglob("*"), project / "packs.lock.json"]:
        if path.is_file():
            parts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


def assert_no_leak(project: Path, *outputs: str) -> None:
    assert leaks("\n".join(outputs)) == [], "a credential appeared in the output"
    assert leaks(files_text(project)) == [], "a credential was written under the output folder or lockfile"


def docker_config(tmp_path: Path, host: str, password: str) -> Path:
    folder = tmp_path / "docker"
    folder.mkdir(exist_ok=True)
    auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return folder


def env_for(host: str, **extra: str) -> dict[str, str]:
    return {"OCI_REGISTRY": host, "OCI_ORG": "acme", "PACK_VERSION": "1.2.3", "OCI_CLIENT": "python", **extra}


@pytest.mark.parametrize(
    "credentials",
    [
        {"OCI_USERNAME": USER, "OCI_PASSWORD": OCI_CANARY},
        {"GITHUB_ACTOR": USER, "GITHUB_TOKEN": GH_CANARY},
        {"DOCKER": DOCKER_CANARY},
    ],
    ids=["oci-password", "github-token", "docker-config"],
)
def test_wrong_password(
    project_copy: Path, run_invoke: RunInvoke, basic_registry: Registry, tmp_path: Path, credentials: dict[str, str]
) -> None:
    extra = dict(credentials)
    if "DOCKER" in extra:
        extra = {"DOCKER_CONFIG": str(docker_config(tmp_path, basic_registry.host, extra.pop("DOCKER")))}
    for args in (["release"], ["--echo", "release"], ["--debug", "release"]):
        result = run_invoke(project_copy, *args, **env_for(basic_registry.host, **extra))
        assert result.returncode == 1
        assert "access denied as publisher" in result.stdout
        assert_no_leak(project_copy, result.stdout, result.stderr)


def test_successful_release_with_debug_and_echo(
    project_copy: Path, run_invoke_process: RunInvoke, basic_registry: Registry, tmp_path: Path
) -> None:
    env = env_for(basic_registry.host, OCI_USERNAME=USER, OCI_PASSWORD=PASSWORD, GITHUB_TOKEN=GH_CANARY)
    for args in (["--debug", "--echo", "release"], ["--debug", "verify"], ["--debug", "release", "--dry-run"]):
        # the dry run writes its own lockfile: it never replaces the real release's
        extra = {"LOCK_FILE": "dry-run.lock.json"} if "--dry-run" in args else {}
        result = run_invoke_process(project_copy, *args, **env, **extra)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "invoke.loader" in result.stderr  # debug output really was on
        assert_no_leak(project_copy, result.stdout, result.stderr)


def test_registry_down(project_copy: Path, run_invoke: RunInvoke, tmp_path: Path) -> None:
    host = f"127.0.0.1:{free_port()}"
    env = env_for(
        host,
        OCI_USERNAME=USER,
        OCI_PASSWORD=OCI_CANARY,
        GITHUB_TOKEN=GH_CANARY,
        DOCKER_CONFIG=str(docker_config(tmp_path, host, DOCKER_CANARY)),
    )
    result = run_invoke(project_copy, "--debug", "release", **env)
    assert result.returncode == 1
    assert_no_leak(project_copy, result.stdout, result.stderr)


def test_builder_sees_no_secret_and_its_output_is_redacted(project_copy: Path, run_invoke: RunInvoke) -> None:
    env = env_for("ghcr.io", OCI_USERNAME=USER, OCI_PASSWORD=OCI_CANARY, GITHUB_TOKEN=GH_CANARY)
    dumped = run_invoke(project_copy, "build", FAKE_GREENTIC_PACK_MODE="echo-env", **env)
    assert dumped.returncode == 1 and "dumped the environment" in dumped.stderr
    assert_no_leak(project_copy, dumped.stdout, dumped.stderr)
    # a builder that prints a secret it got some other way: the relayed text is masked
    echoed = run_invoke(
        project_copy, "build", FAKE_GREENTIC_PACK_MODE="echo", FAKE_GREENTIC_PACK_ECHO=OCI_CANARY, **env
    )
    assert echoed.returncode == 1
    assert "registry said: ***" in echoed.stderr
    assert_no_leak(project_copy, echoed.stdout, echoed.stderr)


def test_invalid_settings(project_copy: Path, run_invoke: RunInvoke) -> None:
    env = env_for("ghcr.io", OCI_PASSWORD=OCI_CANARY, GITHUB_TOKEN=GH_CANARY, PACK_VERSION="not-semver")
    result = run_invoke(project_copy, "--debug", "release", **env)
    assert result.returncode == 2
    assert_no_leak(project_copy, result.stdout, result.stderr)
    no_user = run_invoke(project_copy, "release", **env_for("ghcr.io", OCI_PASSWORD=OCI_CANARY))
    assert no_user.returncode == 2 and "OCI_USERNAME: not set, but OCI_PASSWORD is" in no_user.stderr
    assert_no_leak(project_copy, no_user.stdout, no_user.stderr)


def test_tokens_added_from_many_threads_at_once_are_all_masked() -> None:
    """Planning, pushing and reading back share one token cache and its redactor: no token may be lost."""
    import sys
    import threading

    from pack_publisher.runtime.redact import Redactor

    redact = Redactor()
    tokens = [[f"token-{thread}-{n}-secret" for n in range(40)] for thread in range(8)]
    start = threading.Barrier(len(tokens))

    def add_all(mine: list[str]) -> None:
        start.wait()
        for token in mine:
            redact.add(token)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: a lost update shows at once
    try:
        threads = [threading.Thread(target=add_all, args=(mine,)) for mine in tokens]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    everything = [token for mine in tokens for token in mine]
    assert redact(" ".join(everything)) == " ".join(["***"] * len(everything))
