"""A newcomer's first hour (issue 23): nothing surprising, nothing silent.

Forgotten flag values, plans that say what they will do, refusals that say why, long work that shows
it is alive, help that names the settings, the documented local round trip, and no litter.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import RunInvoke
from .test_publish import PACK

TARGET_SETTINGS = ("PACK_VERSION", "OCI_REGISTRY", "OCI_ORG", "OCI_REPO", "OCI_CLIENT")


@pytest.mark.parametrize(
    "args",
    [
        ("build", "--pack"),
        ("build", "--pack", ""),
        ("build", "--pack="),
        ("build", "-p", "--jobs", "2"),
        ("release", "--pack", "--dry-run"),
        ("release", "--dry-run", "--pack", PACK, "--pack"),
        ("push", "--pack", " "),
        ("lock", "--pack"),
        ("matrix", "--pack"),
        ("verify", "--pack"),
        ("build", "--pack", PACK, "release", "--pack"),
    ],
    ids=lambda args: " ".join(repr(a) if not a.strip() else a for a in args),
)
def test_an_empty_pack_is_refused_before_anything_runs(
    project_copy: Path, run_invoke: RunInvoke, args: tuple[str, ...]
) -> None:
    result = run_invoke(project_copy, *args, OCI_ORG="acme", PACK_VERSION="1.0.0")
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: --pack was given ") and "a pack folder name under PACKS_DIR" in line
    assert "Traceback" not in result.stderr and "built" not in result.stdout
    assert not (project_copy / "dist").exists() and not (project_copy / "packs.lock.json").exists()


def test_an_empty_tool_is_refused(project_copy: Path, run_invoke: RunInvoke) -> None:
    result = run_invoke(project_copy, "tools", "--tool")
    assert result.returncode == 2
    assert result.stderr.startswith("error: --tool was given without its value: it takes a pinned tool name")


@pytest.mark.parametrize("task", ["build", "push", "release", "verify"])
def test_help_names_the_pack_value_and_the_target_settings(
    project_copy: Path, run_invoke: RunInvoke, task: str
) -> None:
    result = run_invoke(project_copy, task, "--help")
    assert result.returncode == 0, result.stderr
    assert "-p NAME, --pack=NAME" in result.stdout and "--pack NAME" in result.stdout
    for name in TARGET_SETTINGS:
        assert name in result.stdout, name
