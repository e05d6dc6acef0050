"""The path CI takes, proven on both transports: a registry failing the first request of each kind still
gets the digest the dry run predicted, no credential is left on disk, and a failing read never lets a
release tag move."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from testsupport.fault_proxy import FaultProxy, Rule
from testsupport.registries import PASSWORD, USER, Registry

from .conftest import RunInvoke, git

PACK = "messaging-provider-bundle"
REPO = f"acme/greentic-packs/{PACK}"
CANARY = "canary-Passw0rd-4e9d"
FIRST_OF_EACH_KIND = [
    ("HEAD", r"/manifests/"),
    ("GET", r"/manifests/"),
    ("HEAD", r"/blobs/"),
    ("POST", r"/blobs/uploads/(\?|$)"),
    ("PUT", r"/blobs/uploads/"),
    ("PUT", r"/manifests/"),
]


@pytest.fixture
def basic_proxy(basic_registry: Registry) -> Iterator[FaultProxy]:
    running = FaultProxy(basic_registry.port)
    yield running
    running.close()


def recording_oras(client: dict[str, str], folder: Path) -> tuple[dict[str, str], Path]:
    """For the oras transport, a shim that logs each call's argv then runs the real oras."""
    log = folder / "oras-calls.log"
    if client["OCI_CLIENT"] != "oras":
        return client, log
    shim = folder / "oras"
    shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{client["ORAS_BIN"]}" "$@"\n')
    shim.chmod(0o755)
    return {**client, "ORAS_BIN": str(shim)}, log


def secret_forms(password: str) -> list[str]:
    return [
        password,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(f"{USER}:{password}".encode()).decode(),
    ]


def files_holding(password: str, *roots: Path) -> list[str]:
    forms = [form.encode() for form in secret_forms(password)]
    found = []
    for root in roots:
        for path in root.rglob("*") if root.exists() else []:
            if path.is_file() and not path.is_symlink() and any(form in path.read_bytes() for form in forms):
                found.append(str(path))
    return found


def test_first_request_of_each_kind_failing_still_publishes_the_predicted_digest(
    client: dict[str, str],
    project_copy: Path,
    run_invoke: RunInvoke,
    basic_registry: Registry,
    basic_proxy: FaultProxy,
    tmp_path: Path,
) -> None:
    chosen, log = recording_oras(client, tmp_path)
    home, docker, scratch = tmp_path / "home", tmp_path / "docker", tmp_path / "tmp"
    for folder in (docker, scratch):
        folder.mkdir()
    base = {"OCI_REGISTRY": basic_proxy.host, "OCI_ORG": "acme", "PACK_VERSION": "1.2.3", **chosen}
    env = {**base, "OCI_USERNAME": USER, "OCI_PASSWORD": PASSWORD, "DOCKER_CONFIG": str(docker), "TMPDIR": str(scratch)}
    assert run_invoke(project_copy, "release", "--dry-run", **base).returncode == 0
    predicted = json.loads((project_copy / "packs.lock.json").read_text())["packs"][0]["expected_digest"]

    for method, path in FIRST_OF_EACH_KIND:
        basic_proxy.add(Rule(method, path, "status", times=1, status=503))
    result = run_invoke(project_copy, "release", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(rule.fired == 1 for rule in basic_proxy.rules), [(r.method, r.path, r.fired) for r in basic_proxy.rules]
    assert json.loads((project_copy / "packs.lock.json").read_text())["packs"][0]["digest"] == predicted
    assert basic_registry.raw_manifest(REPO, "1.2.3").headers["Docker-Content-Digest"] == predicted

    # no credential behind: not in the user's Docker config, the output folder, HOME or the temp folder
    assert files_holding(PASSWORD, home, docker, project_copy / "dist", scratch) == []
    assert not (docker / "config.json").exists()
    assert list(scratch.iterdir()) == []
    if client["OCI_CLIENT"] == "oras":
        calls = log.read_text().splitlines()
        assert calls and not [c for c in calls if c.startswith("login")]  # credentials are never logged in twice
        assert all("--registry-config" in c or "--to-registry-config" in c for c in calls)
        assert not [c for c in calls if any(form in c for form in secret_forms(PASSWORD))]

    # a failing run leaves no credential either
    wrong = run_invoke(project_copy, "release", "--force", **{**env, "OCI_PASSWORD": CANARY, "PACK_VERSION": "1.2.4"})
    assert wrong.returncode == 1 and "access denied as publisher" in wrong.stdout
    assert files_holding(CANARY, home, docker, project_copy / "dist", scratch) == []
    assert list(scratch.iterdir()) == []


def test_reads_that_fail_never_let_a_release_tag_move(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry, tmp_path: Path
) -> None:
    proxy = FaultProxy(registry.port)
    try:
        env = {"OCI_REGISTRY": proxy.host, "OCI_ORG": "acme", "PACK_VERSION": "1.2.3", **client}
        assert run_invoke(project_copy, "release", **env).returncode == 0
        first = registry.raw_manifest(REPO, "1.2.3").headers["Docker-Content-Digest"]
        (project_copy / "packs" / PACK / "assets").mkdir()
        (project_copy / "packs" / PACK / "assets" / "new.txt").write_text("changed content\n")
        git(project_copy, "add", "-A")
        git(project_copy, "commit", "-qm", "change")

        # the first reads fail, then the registry recovers: the existing tag is seen, and kept
        proxy.add(Rule("HEAD", r"/manifests/", "status", times=2, status=503))
        refused = run_invoke(project_copy, "release", **env)
        assert refused.returncode == 1
        assert f"REFUSED: holds {first}" in refused.stdout and "release tags are immutable" in refused.stdout

        # reads keep failing (outage, then refused access): an error, never "absent", and nothing is uploaded
        for rule in (Rule("HEAD", r"/manifests/", "status", times=None, status=401),):
            proxy.clear()
            proxy.seen.clear()
            proxy.add(rule)
            failed = run_invoke(project_copy, "release", **env)
            assert failed.returncode == 1
            [line] = [line for line in failed.stdout.splitlines() if line.startswith("FAILED")]
            assert line.startswith(f"FAILED {PACK}: {proxy.host}: ") and "401" in line.replace("Unauthorized", "401")
            assert not [s for s in proxy.seen if s[0] in ("POST", "PUT")]
        assert registry.raw_manifest(REPO, "1.2.3").headers["Docker-Content-Digest"] == first
    finally:
        proxy.close()
