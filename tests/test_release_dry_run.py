"""`invoke release --dry-run` end to end, through the invoke command line, in a copy of the repository."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pack_publisher.sources.archive import inspect_gtpack

from .conftest import RunInvoke, git

PACK = "messaging-provider-bundle"


def test_dry_run_release(project_copy: Path, run_invoke_process: RunInvoke) -> None:
    sources_before = {p: p.read_bytes() for p in (project_copy / "packs").rglob("*") if p.is_file()}
    result = run_invoke_process(project_copy, "release", "--dry-run", OCI_ORG="Acme", PACK_VERSION="1.2.3")
    assert result.returncode == 0, result.stderr
    lock = json.loads((project_copy / "packs.lock.json").read_text())
    assert list(lock) == [
        *("version", "generated_at", "git_sha", "registry", "org", "repo", "dry_run", "dirty", "packs"),
        *("schema_version", "components"),
    ]
    assert lock["schema_version"] == 1 and lock["components"] == []  # nothing published: nothing for greentic-dist
    assert lock["version"] == "1.2.3"
    assert lock["git_sha"] == git(project_copy, "rev-parse", "HEAD")
    assert (lock["registry"], lock["org"], lock["repo"]) == ("ghcr.io", "acme", "greentic-packs")
    [entry] = lock["packs"]
    assert entry["name"] == PACK
    assert entry["file"] == f"dist/packs/{PACK}.gtpack"
    assert entry["oci_ref"] == f"ghcr.io/acme/greentic-packs/{PACK}:1.2.3"
    assert entry["digest"] == "DRY_RUN"
    assert entry["expected_digest"].startswith("sha256:")
    assert entry["media_type"] == "application/vnd.greentic.gtpack.v1+zip"
    gtpack = project_copy / entry["file"]
    assert entry["gtpack_sha256"] == "sha256:" + hashlib.sha256(gtpack.read_bytes()).hexdigest()
    assert entry["size"] == gtpack.stat().st_size
    facts = inspect_gtpack(gtpack)
    assert (facts.pack_id, facts.version) == (PACK, "1.2.3")  # the release version, not pack.yaml's 0.1.0
    manifest = (project_copy / "dist" / "packs" / f"{PACK}.manifest.json").read_bytes()
    assert entry["expected_digest"] == "sha256:" + hashlib.sha256(manifest).hexdigest()
    doc = json.loads(manifest)
    assert doc["layers"][0]["annotations"]["org.opencontainers.image.title"] == f"{PACK}.gtpack"
    assert doc["annotations"]["org.opencontainers.image.created"] == "2026-01-02T03:04:05Z"
    assert doc["annotations"]["org.opencontainers.image.revision"] == lock["git_sha"]
    assert doc["annotations"]["org.opencontainers.image.version"] == "1.2.3"
    assert (
        f"would publish ghcr.io/acme/greentic-packs/{PACK}:1.2.3 (manifest digest {entry['expected_digest']})"
        in result.stdout
    )
    assert (
        f"built {PACK}: pack_id={PACK} version=1.2.3 size={entry['size']} {entry['gtpack_sha256']} -> " in result.stdout
    )
    assert {p: p.read_bytes() for p in (project_copy / "packs").rglob("*") if p.is_file()} == sources_before
    assert git(project_copy, "status", "--porcelain", "--", "packs") == ""


def test_dry_run_from_environment_and_dev_version(project_copy: Path, run_invoke: RunInvoke) -> None:
    result = run_invoke(project_copy, "release", OCI_ORG="acme", DRY_RUN="1", GITHUB_REPOSITORY="acme/greentic-packs")
    assert result.returncode == 0, result.stderr
    short = git(project_copy, "rev-parse", "--short=7", "HEAD")
    assert f"dry run uses 0.0.0-dev.{short}" in result.stderr
    lock = json.loads((project_copy / "packs.lock.json").read_text())
    assert lock["version"] == f"0.0.0-dev.{short}"
    manifest = json.loads((project_copy / "dist" / "packs" / f"{PACK}.manifest.json").read_bytes())
    assert manifest["annotations"]["org.opencontainers.image.source"] == "https://github.com/acme/greentic-packs"
    assert manifest["annotations"]["org.opencontainers.image.title"] == "Messaging provider bundle"


def test_build_is_deterministic(project_copy: Path, run_invoke: RunInvoke) -> None:
    env = {"OCI_ORG": "acme", "PACK_VERSION": "1.0.0"}
    outputs = []
    for _ in range(2):
        result = run_invoke(project_copy, "build", "--pack", PACK, **env)
        assert result.returncode == 0, result.stderr
        gtpack = (project_copy / "dist" / "packs" / f"{PACK}.gtpack").read_bytes()
        manifest = (project_copy / "dist" / "packs" / f"{PACK}.manifest.json").read_bytes()
        outputs.append((hashlib.sha256(gtpack).hexdigest(), hashlib.sha256(manifest).hexdigest()))
    assert outputs[0] == outputs[1]


def test_tag_sets_version(project_copy: Path, run_invoke: RunInvoke) -> None:
    git(project_copy, "tag", "v2.5.0")
    result = run_invoke(project_copy, "release", "--dry-run", OCI_ORG="acme")
    assert result.returncode == 0, result.stderr
    assert json.loads((project_copy / "packs.lock.json").read_text())["version"] == "2.5.0"


def assert_one_line_error(result: object, code: int, text: str) -> None:
    rc, stdout, stderr = result.returncode, result.stdout, result.stderr  # type: ignore[attr-defined]
    assert rc == code, (stdout, stderr)
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert lines == [f"error: {text}"] or (len(lines) == 1 and lines[0].startswith(f"error: {text}")), stderr


def test_unknown_pack(project_copy: Path, run_invoke: RunInvoke) -> None:
    result = run_invoke(project_copy, "release", "--dry-run", "--pack", "nope", OCI_ORG="acme")
    assert_one_line_error(result, 2, f"unknown pack 'nope'; known packs: {PACK}")
    assert not (project_copy / "packs.lock.json").exists()


def test_bad_setting(project_copy: Path, run_invoke: RunInvoke) -> None:
    result = run_invoke(project_copy, "release", "--dry-run", OCI_ORG="acme", PACK_VERSION="1.2.3+build.4")
    assert_one_line_error(result, 2, "PACK_VERSION: '1.2.3+build.4' carries build metadata")


def test_no_builder(project_copy: Path, run_invoke: RunInvoke) -> None:
    result = run_invoke(project_copy, "build", builder=False, OCI_ORG="acme", PACK_VERSION="1.0.0")
    assert_one_line_error(result, 2, "the Greentic builder was not found")
    assert "`cargo binstall --locked greentic-pack@1.1.3`" in result.stderr


def test_builder_failure(project_copy: Path, run_invoke: RunInvoke) -> None:
    result = run_invoke(project_copy, "release", "--dry-run", OCI_ORG="acme", FAKE_GREENTIC_PACK_MODE="fail")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: pack '{PACK}': builder greentic-pack failed (exit 1):" in result.stderr
    assert "referenced by flow `main` was not found" in result.stderr
    assert not (project_copy / "packs.lock.json").exists()


def test_builder_writes_wrong_version(project_copy: Path, run_invoke: RunInvoke) -> None:
    result = run_invoke(
        project_copy, "build", OCI_ORG="acme", PACK_VERSION="1.0.0", FAKE_GREENTIC_PACK_MODE="wrong-version"
    )
    assert_one_line_error(result, 1, f"pack '{PACK}': the archive says version '9.9.9', expected '1.0.0'")


def test_builder_writes_corrupt_archive(project_copy: Path, run_invoke: RunInvoke) -> None:
    result = run_invoke(project_copy, "build", OCI_ORG="acme", PACK_VERSION="1.0.0", FAKE_GREENTIC_PACK_MODE="corrupt")
    assert_one_line_error(result, 1, f"invalid .gtpack {PACK}.gtpack: not a zip archive")


def test_out_dir_not_writable(project_copy: Path, run_invoke: RunInvoke) -> None:
    blocker = project_copy / "blocked"
    blocker.write_text("a file where a folder should be")
    result = run_invoke(project_copy, "build", OCI_ORG="acme", PACK_VERSION="1.0.0", OUT_DIR="blocked/packs")
    assert_one_line_error(result, 2, f"OUT_DIR: {blocker.resolve()}/packs is not writable")


def test_lock_without_push(project_copy: Path, run_invoke: RunInvoke) -> None:
    result = run_invoke(project_copy, "lock", OCI_ORG="acme", PACK_VERSION="1.0.0")
    assert_one_line_error(result, 2, f"pack '{PACK}' has no push of version 1.0.0")


def test_list_and_help(project_copy: Path, run_invoke_process: RunInvoke) -> None:
    listing = run_invoke_process(project_copy, "--list")
    assert listing.returncode == 0
    for name in ("build", "lock", "release"):
        line = next(line for line in listing.stdout.splitlines() if line.strip().startswith(name + " "))
        assert len(line.split(None, 1)) == 2, f"task {name} has no description in --list"
        help_text = run_invoke_process(project_copy, name, "--help")
        assert help_text.returncode == 0 and "--pack" in help_text.stdout


def test_runs_from_a_subdirectory(project_copy: Path, run_invoke_process: RunInvoke) -> None:
    sub = project_copy / "packs"
    result = run_invoke_process(sub, "release", "--dry-run", OCI_ORG="acme", PACK_VERSION="1.0.0")
    assert result.returncode == 0, result.stderr
    assert (project_copy / "packs.lock.json").is_file() and os.listdir(project_copy / "dist" / "packs")


def test_lock_file_not_writable(project_copy: Path, run_invoke: RunInvoke) -> None:
    (project_copy / "blocked").write_text("a file where a folder should be")
    result = run_invoke(project_copy, "release", "--dry-run", OCI_ORG="acme", LOCK_FILE="blocked/packs.lock.json")
    assert_one_line_error(result, 2, f"LOCK_FILE: cannot write in {project_copy.resolve()}/blocked (File exists)")


def test_flags_of_a_later_task_in_the_same_invocation_apply(project_copy: Path, run_invoke: RunInvoke) -> None:
    result = run_invoke(project_copy, "build", "release", "--dry-run", OCI_ORG="acme", PACK_VERSION="1.0.0")
    assert result.returncode == 0, result.stderr
    lock = json.loads((project_copy / "packs.lock.json").read_text())
    assert lock["dry_run"] is True and lock["packs"][0]["digest"] == "DRY_RUN"
    assert result.stderr.count("warning: no GITHUB_REPOSITORY") == 1  # notices are not repeated
