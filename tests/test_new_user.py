"""The rough edges a new user meets first: tab-completed names, misnamed files, no org, no git."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .conftest import PROJECT, RunInvoke, git
from .test_publish import PACK

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_a_tab_completed_pack_name_works(project_copy: Path, run_invoke: RunInvoke) -> None:
    for given in (f"{PACK}/", f"packs/{PACK}/"):
        result = run_invoke(project_copy, "build", "--pack", given, OCI_ORG="acme", PACK_VERSION="1.0.0")
        assert result.returncode == 0, result.stderr
        assert f"built {PACK}:" in result.stdout


def test_a_misnamed_pack_file_is_named(project_copy: Path, run_invoke: RunInvoke) -> None:
    folder = project_copy / "packs" / "second"
    shutil.copytree(project_copy / "packs" / PACK, folder)
    (folder / "pack.yaml").rename(folder / "pack.yml")
    full = run_invoke(project_copy, "build", OCI_ORG="acme", PACK_VERSION="1.0.0")
    assert full.returncode == 0, full.stderr
    assert "warning: packs/second/pack.yml: left out; rename it to pack.yaml to make second a pack" in full.stderr
    one = run_invoke(project_copy, "build", "--pack", "second", OCI_ORG="acme", PACK_VERSION="1.0.0")
    assert one.returncode == 2
    assert one.stderr.strip().endswith("has no pack.yaml: rename packs/second/pack.yml to pack.yaml")


def test_a_pack_given_as_a_path_or_in_capitals(project_copy: Path, run_invoke: RunInvoke, tmp_path: Path) -> None:
    (tmp_path / "zzz").mkdir()
    (tmp_path / "zzz" / "pack.yaml").write_text("pack_id: zzz\n")
    path = run_invoke(project_copy, "build", "--pack", str(tmp_path / "zzz"), OCI_ORG="acme", PACK_VERSION="1.0.0")
    assert path.returncode == 2 and f"error: --pack: '{tmp_path / 'zzz'}' is not a pack folder name" in path.stderr
    shouty = run_invoke(project_copy, "build", "--pack", PACK.upper(), OCI_ORG="acme", PACK_VERSION="1.0.0")
    assert shouty.returncode == 2 and f"did you mean '{PACK}'?" in shouty.stderr


def test_an_uppercase_folder_is_told_its_name(project_copy: Path, run_invoke: RunInvoke) -> None:
    shutil.copytree(project_copy / "packs" / PACK, project_copy / "packs" / "Shouty")
    result = run_invoke(project_copy, "build", "--pack", "Shouty", OCI_ORG="acme", PACK_VERSION="1.0.0")
    assert result.returncode == 2
    assert result.stderr.strip().endswith("rename it to 'shouty'")


def test_a_pack_id_other_than_its_folder_is_a_warning(project_copy: Path, run_invoke: RunInvoke) -> None:
    pack_yaml = project_copy / "packs" / PACK / "pack.yaml"
    pack_yaml.write_text(pack_yaml.read_text().replace(f"pack_id: {PACK}", "pack_id: something-else"))
    result = run_invoke(project_copy, "release", "--dry-run", OCI_ORG="acme", PACK_VERSION="1.0.0")
    assert result.returncode == 0, result.stderr
    assert f"warning: packs/{PACK}/pack.yaml: pack_id 'something-else' differs from the folder name" in result.stderr


def test_a_dry_run_without_an_org_uses_local(project_copy: Path, run_invoke: RunInvoke) -> None:
    result = run_invoke(project_copy, "release", "--dry-run", PACK_VERSION="1.0.0")
    assert result.returncode == 0, result.stderr
    assert "warning: no OCI_ORG, GITHUB_REPOSITORY_OWNER or origin remote: the dry run uses the org 'local'" in (
        result.stderr
    )
    assert json.loads((project_copy / "packs.lock.json").read_text())["org"] == "local"
    real = run_invoke(project_copy, "release", PACK_VERSION="1.0.0")
    assert real.returncode == 2 and "error: OCI_ORG: not set" in real.stderr


def test_any_git_host_gives_the_org_and_source(project_copy: Path, run_invoke: RunInvoke) -> None:
    git(project_copy, "remote", "add", "origin", "git@gitlab.example.com:Acme-Group/greentic-packs.git")
    result = run_invoke(project_copy, "release", "--dry-run", PACK_VERSION="1.0.0")
    assert result.returncode == 0, result.stderr
    lock = json.loads((project_copy / "packs.lock.json").read_text())
    assert lock["org"] == "acme-group"
    manifest = json.loads((project_copy / "dist" / "packs" / f"{PACK}.manifest.json").read_text())
    assert manifest["annotations"]["org.opencontainers.image.source"] == (
        "https://gitlab.example.com/Acme-Group/greentic-packs"
    )


def test_outside_git_a_given_commit_lets_a_dry_run_proceed(tmp_path: Path, run_invoke: RunInvoke) -> None:
    folder = tmp_path / "no-git"
    folder.mkdir()
    shutil.copy2(PROJECT / "tasks.py", folder / "tasks.py")
    shutil.copytree(PROJECT / "packs", folder / "packs")
    ceiling = {"GIT_CEILING_DIRECTORIES": str(tmp_path)}
    bare = run_invoke(folder, "release", "--dry-run", OCI_ORG="acme", PACK_VERSION="1.0.0", **ceiling)
    assert bare.returncode == 2
    assert "outside git, set GIT_SHA (or GITHUB_SHA) and SOURCE_DATE_EPOCH" in bare.stderr
    given = run_invoke(
        folder, "release", "--dry-run", OCI_ORG="acme", GIT_SHA=SHA, SOURCE_DATE_EPOCH="1700000000", **ceiling
    )
    assert given.returncode == 0, given.stderr
    assert "uncommitted changes cannot be detected" in given.stderr
    lock = json.loads((folder / "packs.lock.json").read_text())
    assert lock["git_sha"] == SHA and lock["version"] == "0.0.0-dev.0123456"


def test_lock_right_after_a_dry_run(project_copy: Path, run_invoke: RunInvoke) -> None:
    assert run_invoke(project_copy, "release", "--dry-run").returncode == 0
    (project_copy / "packs.lock.json").unlink()
    result = run_invoke(project_copy, "lock")
    assert result.returncode == 0, result.stderr
    assert json.loads((project_copy / "packs.lock.json").read_text())["dry_run"] is True


def test_help_shows_jobs_as_an_integer(project_copy: Path, run_invoke: RunInvoke) -> None:
    for task in ("push", "release"):
        result = run_invoke(project_copy, task, "--help")
        assert result.returncode == 0
        assert "--jobs=INT" in result.stdout and "--allow-dirty" in result.stdout and "--dry-run" in result.stdout
