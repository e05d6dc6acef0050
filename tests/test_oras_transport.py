"""The oras transport: exact commands and JSON parsing with a stand-in, and a real oras when provided."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from .conftest import STANDINS, RunInvoke, make_executable
from .registries import Registry

PACK = "messaging-provider-bundle"
REPO = f"acme/greentic-packs/{PACK}"
HOST = "registry.example.test"
CANARY = "canary-token-7f3a9c"


@pytest.fixture
def oras(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(oras stand-in executable, its call log, its store)."""
    folder = tmp_path / "oras-bin"
    folder.mkdir()
    exe = make_executable(folder / "oras", STANDINS / "oras.py")
    store = tmp_path / "oras-store"
    store.mkdir()
    return exe, tmp_path / "oras.log", store


def calls(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def oras_env(oras: tuple[Path, Path, Path], **extra: str) -> dict[str, str]:
    exe, log, store = oras
    return {
        "OCI_REGISTRY": HOST,
        "OCI_ORG": "acme",
        "PACK_VERSION": "1.2.3",
        "ORAS_BIN": str(exe),
        "FAKE_ORAS_LOG": str(log),
        "FAKE_ORAS_STORE": str(store),
        **extra,
    }


def test_release_through_oras(project_copy: Path, run_invoke: RunInvoke, oras: tuple[Path, Path, Path]) -> None:
    dry = run_invoke(project_copy, "release", "--dry-run", **oras_env(oras))
    predicted = json.loads((project_copy / "packs.lock.json").read_text())["packs"][0]["expected_digest"]
    assert dry.returncode == 0
    result = run_invoke(
        project_copy,
        "release",
        "--latest",
        **oras_env(oras, GITHUB_ACTOR="bot", GITHUB_TOKEN=CANARY, ORAS_EXPERIMENTAL="1"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lock = json.loads((project_copy / "packs.lock.json").read_text())
    assert lock["packs"][0]["digest"] == predicted
    assert f"published {HOST}/{REPO}:1.2.3 digest={predicted} (via oras CLI)" in result.stdout

    log = calls(oras[1])
    argvs = [c["argv"] for c in log]
    login = log[0]
    assert login["argv"] == ["login", HOST, "-u", "bot", "--password-stdin"]
    assert login["stdin"] == CANARY  # the token travels on stdin only
    assert all(CANARY not in json.dumps(c["argv"]) for c in log)
    assert all(c["secret_env"] == [] for c in log)  # and never in a child's environment
    assert argvs[1] == ["resolve", f"{HOST}/{REPO}:1.2.3"]
    push = next(c for c in log if c["argv"][0] == "push")
    assert Path(str(push["cwd"])) == project_copy / "dist" / "packs"
    argv = push["argv"]
    assert isinstance(argv, list)
    assert argv[0:2] == ["push", "--oci-layout"] and argv[2].endswith("/layout:1.2.3")
    assert argv[3] == f"{PACK}.gtpack:application/vnd.greentic.gtpack.v1+zip"  # relative: the title
    assert argv[4:] == [
        "--artifact-type",
        "application/vnd.greentic.gtpack.v1+zip",
        "--annotation-file",
        argv[7],
        "--export-manifest",
        argv[9],
        "--format",
        "json",
    ]
    cp = next(c["argv"] for c in log if c["argv"][0] == "cp")
    assert cp == ["cp", "--from-oci-layout", argv[2], f"{HOST}/{REPO}:1.2.3,latest"]
    assert ["resolve", f"{HOST}/{REPO}:latest"] in argvs
    assert ["manifest", "fetch", f"{HOST}/{REPO}:1.2.3"] in argvs
    assert CANARY not in result.stdout + result.stderr
    assert not list((project_copy / "dist" / "packs").glob("oras-*"))  # the work folder is cleaned up

    again = run_invoke(project_copy, "release", **oras_env(oras))
    assert again.returncode == 0
    assert f"already published {HOST}/{REPO}:1.2.3 digest={predicted}" in again.stdout


def test_plain_http_flags_for_loopback(
    project_copy: Path, run_invoke: RunInvoke, oras: tuple[Path, Path, Path]
) -> None:
    result = run_invoke(
        project_copy, "release", **oras_env(oras, OCI_REGISTRY="localhost:5000", OCI_USERNAME="u", OCI_PASSWORD=CANARY)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    argvs = [c["argv"] for c in calls(oras[1])]
    assert argvs[0] == ["login", "--plain-http", "localhost:5000", "-u", "u", "--password-stdin"]
    assert ["resolve", "--plain-http", f"localhost:5000/{REPO}:1.2.3"] in argvs
    cp = next(a for a in argvs if a[0] == "cp")
    assert cp[:3] == ["cp", "--from-oci-layout", "--to-plain-http"]


def test_incompatible_oras_pushes_nothing(
    project_copy: Path, run_invoke: RunInvoke, oras: tuple[Path, Path, Path]
) -> None:
    result = run_invoke(project_copy, "release", **oras_env(oras, FAKE_ORAS_MODE="other-manifest"))
    assert result.returncode == 1
    assert "nothing was pushed (is this oras version byte-compatible with 1.3.3?)" in result.stdout
    assert not any(c["argv"][0] == "cp" for c in calls(oras[2].parent / "oras.log"))
    assert not (project_copy / "packs.lock.json").exists()


def test_oras_asked_for_but_missing(project_copy: Path, run_invoke: RunInvoke) -> None:
    result = run_invoke(
        project_copy, "release", OCI_REGISTRY=HOST, OCI_ORG="acme", PACK_VERSION="1.0.0", OCI_CLIENT="oras"
    )
    assert result.returncode == 2
    assert "error: OCI_CLIENT: 'oras' asked for, but no oras executable was found (set ORAS_BIN)" in result.stderr


def test_real_oras_against_real_registry(project_copy: Path, run_invoke: RunInvoke, registry: Registry) -> None:
    """Runs whenever a real oras is provided (ORAS_BIN); none can be installed on this project's machines."""
    real = os.environ.get("ORAS_BIN") or shutil.which("oras")
    if not real:
        pytest.skip("no real oras binary: set ORAS_BIN to run the oras transport against docker-registry")
    env = {
        "OCI_REGISTRY": registry.host,
        "OCI_ORG": "acme",
        "PACK_VERSION": "1.2.3",
        "ORAS_BIN": real,
        "OCI_CLIENT": "oras",
    }
    dry = run_invoke(project_copy, "release", "--dry-run", **env)
    predicted = json.loads((project_copy / "packs.lock.json").read_text())["packs"][0]["expected_digest"]
    assert dry.returncode == 0
    result = run_invoke(project_copy, "release", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert registry.raw_manifest(REPO, "1.2.3").headers["Docker-Content-Digest"] == predicted
    assert run_invoke(project_copy, "verify", **env).returncode == 0


def test_verify_through_oras_rejects_a_tampered_layer(
    project_copy: Path, run_invoke: RunInvoke, oras: tuple[Path, Path, Path]
) -> None:
    assert run_invoke(project_copy, "release", **oras_env(oras)).returncode == 0
    assert run_invoke(project_copy, "verify", **oras_env(oras)).returncode == 0
    layer = json.loads((project_copy / "packs.lock.json").read_text())["packs"][0]["gtpack_sha256"]
    (oras[2] / REPO / "blobs" / layer).write_bytes(b"not the pack that was published")
    result = run_invoke(project_copy, "verify", **oras_env(oras))
    assert result.returncode == 1
    assert f"MISMATCH {PACK}: {HOST}: blob {layer[:19]} arrived with other content" in result.stdout
