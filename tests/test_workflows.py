"""The GitHub workflows: both linters clean, and the release / pull-request contract checked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import PROJECT

WORKFLOWS = PROJECT / ".github" / "workflows"
PUBLISH = WORKFLOWS / "publish_packs.yml"
CI = WORKFLOWS / "ci.yml"
README = (PROJECT / "README.md").read_text()
INSTALL = "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements-dev.txt"
SETUP_ORAS_KNOWN = {"1.0.0", "1.0.1", "1.1.0", "1.2.0", "1.2.1", "1.2.2", "1.2.3", "1.3.0", "1.3.1"}


def load(path: Path) -> dict[Any, Any]:
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc  # type: ignore[no-any-return]


def steps(doc: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in doc["jobs"].values() for step in job["steps"]]


def runs(doc: dict[Any, Any]) -> list[str]:
    return [step["run"] for step in steps(doc) if "run" in step]


def step_running(doc: dict[Any, Any], command: str) -> dict[str, Any]:
    return next(step for step in steps(doc) if command in step.get("run", ""))


def tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def test_zizmor_finds_nothing() -> None:
    result = subprocess.run(
        [tool("zizmor"), "--offline", "--persona=pedantic", "--no-progress", str(WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout + result.stderr


def test_workflow_schema() -> None:
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(PUBLISH), str(CI)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", [PUBLISH, CI], ids=lambda p: p.name)
def test_hygiene(path: Path) -> None:
    doc = load(path)
    text = path.read_text()
    for line in text.splitlines():
        if re.match(r"\s*(- )?uses:", line):
            assert re.search(r"uses: [\w.-]+/[\w.-]+@[0-9a-f]{40} # v?[\w.]+$", line), f"not pinned by SHA: {line}"
    for script in runs(doc):
        assert "${{" not in script, f"expression interpolated into a run script:\n{script}"
        assert script.startswith("set -euo pipefail\n"), f"run script without set -euo pipefail:\n{script}"
        assert not re.search(r"\b(printenv|env)\s*($|\|)|set -x", script), f"a step prints the environment:\n{script}"
    checkout = next(s for s in steps(doc) if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False
    assert next(s for s in steps(doc) if s.get("uses", "").startswith("actions/setup-python@"))["with"] == {
        "python-version-file": "pyproject.toml"
    }
    assert any(INSTALL in script for script in runs(doc)), "the README's install command is not run"
    assert INSTALL in README
    builder = step_running(doc, "cargo binstall")["run"]
    assert 'cargo binstall --no-confirm "greentic-pack@${GREENTIC_PACK_VERSION}"' in builder
    assert 'cargo install --locked "greentic-pack@${GREENTIC_PACK_VERSION}"' in builder
    assert re.fullmatch(r"\d+\.\d+\.\d+", doc["env"]["GREENTIC_PACK_VERSION"])
    assert text.count(doc["env"]["GREENTIC_PACK_VERSION"]) == 1, "the builder version lives in one place"


def test_release_workflow_contract() -> None:
    doc = load(PUBLISH)
    assert doc["on"] == {"push": {"tags": ["v*"]}}
    assert doc["permissions"] == {}
    assert "github.ref" in doc["concurrency"]["group"] and doc["concurrency"]["cancel-in-progress"] is False
    release, attest = doc["jobs"]["release"], doc["jobs"]["attest"]
    assert release["permissions"] == {"contents": "read", "packages": "write"}
    assert attest["permissions"] == {"packages": "write", "id-token": "write", "attestations": "write"}
    assert doc["env"]["OCI_REGISTRY"] == "ghcr.io" and doc["env"]["OCI_REPO"] == "greentic-packs"

    oras = [s for s in steps(doc) if s.get("uses", "").startswith("oras-project/setup-oras@")]
    assert oras and all(s["with"]["version"] in SETUP_ORAS_KNOWN for s in oras)
    logins = [s for s in steps(doc) if "oras login" in s.get("run", "")]
    assert len(logins) == 2
    for login in logins:
        assert '| oras login "$OCI_REGISTRY" -u "$GITHUB_ACTOR" --password-stdin' in login["run"]
        assert login["env"] == {"REGISTRY_TOKEN": "${{ github.token }}"}
        assert "-p " not in login["run"] and "--password " not in login["run"]

    release_step = step_running(doc, "invoke release")
    assert release_step["env"] == {"OCI_ORG": "${{ github.repository_owner }}"}
    assert 'export PACK_VERSION="${GITHUB_REF_NAME#v}"\ninvoke release\n' in release_step["run"]
    assert "invoke verify --lock packs.lock.json" in step_running(doc, "invoke verify")["run"]
    order = [s.get("name") for s in release["steps"]]
    assert order.index(release_step["name"]) < order.index(step_running(doc, "invoke verify")["name"])

    upload = next(s for s in release["steps"] if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert {"packs.lock.json", "dist/packs/*.gtpack"} <= set(upload["with"]["path"].split())
    assert upload["with"]["if-no-files-found"] == "error"

    assert attest["needs"] == "release"
    assert attest["strategy"]["matrix"]["include"] == "${{ fromJSON(needs.release.outputs.subjects) }}"
    attestation = next(s for s in attest["steps"] if s.get("uses", "").startswith("actions/attest-build-provenance@"))
    assert attestation["with"] == {
        "subject-name": "${{ matrix.name }}",
        "subject-digest": "${{ matrix.digest }}",
        "push-to-registry": True,
    }
    assert "pinned_ref" in step_running(doc, "GITHUB_OUTPUT")["run"]  # subject-name: the pinned ref without digest


def test_pull_request_workflow_contract() -> None:
    doc = load(CI)
    text = CI.read_text()
    assert set(doc["on"]) == {"pull_request", "push"} and doc["on"]["push"] == {"branches": ["main"]}
    assert "pull_request_target" not in text and "secrets." not in text and "github.token" not in text
    assert doc["permissions"] == {"contents": "read"}
    assert all("permissions" not in job for job in doc["jobs"].values())
    assert "invoke test" in step_running(doc, "invoke test")["run"]
    assert "```sh\ninvoke test\n```" in README
    assert "invoke release --dry-run" in step_running(doc, "invoke release --dry-run")["run"]
    upload = next(s for s in steps(doc) if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["with"]["path"] == "packs.lock.json"
