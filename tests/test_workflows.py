"""The GitHub workflows: both linters clean, and the release / pull-request contract checked (issue 11)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from pack_publisher.commands import tools
from pack_publisher.oci.names import semver_problem

from .conftest import PROJECT

WORKFLOWS = PROJECT / ".github" / "workflows"
PUBLISH = WORKFLOWS / "publish_packs.yml"
CI = WORKFLOWS / "ci.yml"
README = (PROJECT / "README.md").read_text()
PYPROJECT = tomllib.loads((PROJECT / "pyproject.toml").read_text())
PYTHON_VERSION = (PROJECT / ".python-version").read_text().strip()
LOCK = PROJECT / "requirements-release.txt"
DEV_INSTALL = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements-dev.txt"
    " && python -m compileall -q pack_publisher"
)
RELEASE_INSTALL = (
    "python3 -m venv .venv && . .venv/bin/activate"
    " && pip install --require-hashes --no-deps -r requirements-release.txt"
)
ORAS_ASSET = tools.ORAS.assets["linux_amd64"]
BINSTALL_ENV = {"BINSTALL_DISABLE_STRATEGIES": "quick-install,compile", "BINSTALL_DISABLE_TELEMETRY": "true"}
ATTEST_IF = "github.event.repository.visibility == 'public' || vars.ATTEST_PRIVATE_REPOSITORY == 'true'"
WORKFLOW_DOCS = (PROJECT / "docs" / "workflows.md").read_text()
BUILDER_PATH = "${{ runner.temp }}/${{ env.BUILDER_DIR }}/bin/greentic-pack"
BUILDER_COMPILES = ("cargo install", "cargo binstall", "cargo build", "rustup", "cargo-bins/cargo-binstall")


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


def step_using(doc: dict[Any, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in steps(doc) if step.get("uses", "").startswith(f"{action}@")]


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
            assert re.search(r"uses: [\w.-]+/[\w.-]+(/[\w.-]+)*@[0-9a-f]{40} # v?[\w.]+$", line), (
                f"not pinned by SHA: {line}"
            )
    for script in runs(doc):
        assert "${{" not in script, f"expression interpolated into a run script:\n{script}"
        assert script.startswith("set -euo pipefail\n"), f"run script without set -euo pipefail:\n{script}"
        assert not re.search(r"\b(printenv|env)\s*($|\|)|set -x", script), f"a step prints the environment:\n{script}"
    checkout = step_using(doc, "actions/checkout")[0]
    assert checkout["with"]["persist-credentials"] is False


# 1. oras 1.3.3, checksum-verified, in both workflows; CI's tests run the real one


@pytest.mark.parametrize("path", [PUBLISH, CI], ids=lambda p: p.name)
def test_oras_is_the_pinned_1_3_3_verified_by_checksum(path: Path) -> None:
    setups = step_using(load(path), "oras-project/setup-oras")
    assert setups
    for setup in setups:
        assert setup["with"] == {"url": ORAS_ASSET.url, "checksum": ORAS_ASSET.sha256}
    assert ORAS_ASSET.url == (
        "https://github.com/oras-project/oras/releases/download/v1.3.3/oras_1.3.3_linux_amd64.tar.gz"
    )
    assert ORAS_ASSET.sha256 == "9ce999f8d2de03fc03968b29d743077a58783e545e5eaa53917ca177352d0e59"
    assert "1.3.1" not in path.read_text()


def test_ci_runs_the_tests_with_the_real_oras() -> None:
    doc = load(CI)
    order = [s["name"] for s in doc["jobs"]["test"]["steps"]]
    test_step = step_running(doc, "invoke test")
    assert order.index(step_using(doc, "oras-project/setup-oras")[0]["name"]) < order.index(test_step["name"])
    script = test_step["run"]
    assert 'ORAS_BIN="$(command -v oras)"\nexport ORAS_BIN\n' in script
    assert script.index("export ORAS_BIN") < script.index("invoke test")


# 2. attestation: gated, one job and one call for every published digest (issue 24)


def test_attestation_is_one_job_for_every_digest() -> None:
    doc = load(PUBLISH)
    attest = doc["jobs"]["attest"]
    assert attest["if"] == ATTEST_IF
    assert attest["needs"] == "lock"  # after the merged lockfile was verified
    assert "strategy" not in attest, "no matrix over digests: one job attests them all"
    assert attest["permissions"] == {"actions": "read", "id-token": "write", "attestations": "write"}
    [attestation] = step_using(doc, "actions/attest-build-provenance")
    assert attestation["with"] == {"subject-checksums": "attestation-subjects.txt"}
    download = next(s for s in attest["steps"] if s.get("uses", "").startswith("actions/download-artifact@"))
    assert download["with"]["name"] == "attestation-subjects"
    upload = next(s for s in doc["jobs"]["lock"]["steps"] if s.get("with", {}).get("name") == "attestation-subjects")
    assert upload["with"]["path"] == "attestation-subjects.txt" and upload["with"]["if-no-files-found"] == "error"
    assert upload["with"]["overwrite"] is True  # a re-run of the lock job uploads it again
    assert not [s for s in steps(doc) if "oras login" in s.get("run", "")], "nothing is pushed beside the packs"
    assert "ATTEST_PRIVATE_REPOSITORY" in WORKFLOW_DOCS and "subject-checksums" in WORKFLOW_DOCS


def test_every_download_survives_re_run_failed_jobs() -> None:
    """A re-run attempt of one job must find what another job uploaded in an earlier attempt of the run.

    A download by name alone sees the current attempt's artifacts only (actions/download-artifact#486);
    by run id, through the API with the run's token and `actions: read`, it sees every attempt's.
    """
    doc = load(PUBLISH)
    downloads = 0
    for name, job in doc["jobs"].items():
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/download-artifact@"):
                downloads += 1
                assert step["with"]["github-token"] == "${{ github.token }}", (name, step["name"])
                assert step["with"]["run-id"] == "${{ github.run_id }}", (name, step["name"])
                assert job["permissions"]["actions"] == "read", name
    assert downloads == 3  # the builder (shards), the fragments (lock), the subjects (attest)


def subjects_script() -> str:
    script: str = step_running(load(PUBLISH), "attestation-subjects.txt <<'PY'")["run"]
    return script[script.index("<<'PY'\n") + 7 : script.index("\nPY\n")]


def run_subjects(tmp_path: Path, packs: list[dict[str, str]]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "packs.lock.json").write_text(json.dumps({"packs": packs}))
    return subprocess.run(
        [sys.executable, "-c", subjects_script()], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def pack_entry(name: str, digest: str) -> dict[str, str]:
    return {"name": name, "digest": digest, "pinned_ref": f"ghcr.io/acme/greentic-packs/{name}@{digest}"}


def test_one_attestation_subject_per_published_digest(tmp_path: Path) -> None:
    """Run the workflow's own listing on a lockfile: sha256sum lines, one per digest, named without the digest."""
    digest_a, digest_b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    out = run_subjects(
        tmp_path, [pack_entry("two", digest_b), pack_entry("one", digest_a), pack_entry("one", digest_a)]
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{'a' * 64}  ghcr.io/acme/greentic-packs/one\n{'b' * 64}  ghcr.io/acme/greentic-packs/two\n"


def test_attestation_subjects_scale_to_one_call_of_300_packs(tmp_path: Path) -> None:
    packs = [pack_entry(f"pack-{i:03}", f"sha256:{i:064x}") for i in range(300)]
    out = run_subjects(tmp_path, packs)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 300 and lines[7] == f"{7:064x}  ghcr.io/acme/greentic-packs/pack-007"
    assert len(out.stdout.encode()) < 512 * 1024  # the action's size limit for a checksums file


@pytest.mark.parametrize(
    ("packs", "error"),
    [
        ([pack_entry(f"p{i}", f"sha256:{i:064x}") for i in range(1025)], "error: 1025 published digests, more than"),
        ([pack_entry("odd", "sha512:" + "a" * 128)], "error: not a sha256 digest in packs.lock.json: sha512:"),
    ],
    ids=["over-1024", "not-sha256"],
)
def test_attestation_subjects_refuse_what_one_call_cannot_take(
    tmp_path: Path, packs: list[dict[str, str]], error: str
) -> None:
    out = run_subjects(tmp_path, packs)
    assert out.returncode != 0 and out.stderr.startswith(error), out.stderr


# 3. the release gate: an environment, and only release-shaped tags


def github_filter_matches(patterns: list[str], ref: str) -> bool:
    """GitHub's branch/tag filter: later patterns override earlier ones, `!` negates (filter cheat sheet)."""
    matched = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if re.fullmatch(filter_regex(pattern[1:] if negated else pattern), ref):
            matched = not negated
    return matched


def filter_regex(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out, i = out + re.escape(pattern[i + 1]), i + 2
            continue
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        if char == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
            continue
        out += {"*": "[^/]*", "+": "+", "?": "?"}.get(char, re.escape(char))
        i += 1
    return out


RELEASE_TAGS = ["v1.2.3", "v0.0.0", "v10.20.30", "v1.3.0-rc.1", "v1.2.3-alpha", "v1.2.3-0.3.7", "v1.0.0-x-y.z.1"]
OTHER_TAGS = ["v1.2", "v1", "1.2.3", "vfoo", "v1.2.3.4", "v1.2.3+build", "v1.2.3-rc.1+build.5", "release-1.2.3"]
GRAMMAR_ONLY = ["v01.2.3", "v1.2.3-", "v1.2.3-rc..1", "v1.2.3-01"]  # pass the coarse filter, not the first step


def test_release_is_gated_by_an_environment() -> None:
    doc = load(PUBLISH)
    assert doc["jobs"]["release"]["environment"] == "release"
    writers = [name for name, job in doc["jobs"].items() if job["permissions"].get("packages") == "write"]
    assert writers == ["release"]
    assert doc["jobs"]["lock"]["needs"] == ["plan", "release"] and doc["jobs"]["attest"]["needs"] == "lock"
    # attest runs only after every gated shard succeeded and the merged lockfile was verified
    assert "`release` environment" in README


def test_tag_filter_accepts_only_release_shaped_tags() -> None:
    patterns = load(PUBLISH)["on"]["push"]["tags"]
    assert set(load(PUBLISH)["on"]) == {"push"} and set(load(PUBLISH)["on"]["push"]) == {"tags"}
    for tag in RELEASE_TAGS:
        assert github_filter_matches(patterns, tag), tag
    for tag in OTHER_TAGS:
        assert not github_filter_matches(patterns, tag), tag


def test_first_step_checks_the_tag_as_pack_version_does() -> None:
    """The exact grammar: what the tag check lets through is what PACK_VERSION accepts, and nothing else."""
    plan = load(PUBLISH)["jobs"]["plan"]  # the first job: nothing runs before the tag is checked
    check = plan["steps"][0]["run"]
    assert '[[ ! "$GITHUB_REF_NAME" =~ $release_tag ]]' in check
    for tag in [*RELEASE_TAGS, *OTHER_TAGS, *GRAMMAR_ONLY]:
        result = subprocess.run(
            ["bash", "-c", check], env={"GITHUB_REF_NAME": tag}, capture_output=True, text=True, timeout=30
        )
        accepted = tag.startswith("v") and semver_problem(tag[1:]) is None
        assert (result.returncode == 0) is accepted, (tag, result.stderr)
        if not accepted:
            assert result.stderr.startswith(f"error: tag '{tag}' is not a release version"), result.stderr


# 4. one Python version, in .python-version


@pytest.mark.parametrize("path", [PUBLISH, CI], ids=lambda p: p.name)
def test_python_pinned_in_python_version(path: Path) -> None:
    setups = step_using(load(path), "actions/setup-python")
    assert setups and all(s["with"] == {"python-version-file": ".python-version"} for s in setups)


def test_python_version_is_within_requires_python() -> None:
    assert re.fullmatch(r"3\.\d+", PYTHON_VERSION), "a minor version: the runner's newest patch of it"
    assert Version(PYTHON_VERSION) in SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert PYPROJECT["tool"]["mypy"]["python_version"] == PYTHON_VERSION
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py" + PYTHON_VERSION.replace(".", "")


# 5. hash-locked release dependencies


def lock_pins() -> dict[str, str]:
    return {
        canonicalize_name(m.group(1)): m.group(2)
        for m in re.finditer(r"^([A-Za-z0-9._-]+)==(\S+) \\$", LOCK.read_text(), re.MULTILINE)
    }


def test_release_job_installs_only_hash_locked_dependencies() -> None:
    doc = load(PUBLISH)
    text = PUBLISH.read_text()
    assert RELEASE_INSTALL in step_running(doc, "requirements-release.txt")["run"]
    assert "requirements-dev.txt" not in text and "pip install -e" not in text
    assert RELEASE_INSTALL in README


def test_lock_pins_every_package_with_hashes() -> None:
    text = LOCK.read_text()
    entries = re.split(r"\n(?=[A-Za-z])", text[text.index("\n\n") + 2 :] if "\n\n" in text else text)
    requirements = [e for e in entries if re.match(r"[A-Za-z0-9]", e)]
    assert len(requirements) == len(lock_pins()) > 0
    for entry in requirements:
        assert re.search(r"==\S+ \\\n", entry), f"not pinned: {entry.splitlines()[0]}"
        assert "--hash=sha256:" in entry, f"no hash: {entry.splitlines()[0]}"
    assert "--index-url" not in text and "--find-links" not in text, "a machine-local index leaked into the lock"


def test_lock_top_level_pins_satisfy_pyproject() -> None:
    pins = lock_pins()
    for spec in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} from pyproject.toml is not in requirements-release.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements-release.txt pins {name}=={pins[name]}, outside pyproject.toml's {requirement.specifier}"
        )


def test_lock_releases_what_the_tests_run() -> None:
    dev = {
        canonicalize_name(m.group(1)): m.group(2)
        for m in re.finditer(r"^([A-Za-z0-9._-]+)==(\S+)$", (PROJECT / "requirements-dev.txt").read_text(), re.M)
    }
    pins = lock_pins()
    for spec in PYPROJECT["project"]["dependencies"]:
        name = canonicalize_name(Requirement(spec).name)
        assert dev.get(name) == pins[name], f"{name}: requirements-dev.txt and requirements-release.txt differ"


def test_ci_checks_the_lock_is_current() -> None:
    header = re.search(r"pip-compile with Python (\S+)\n# by the following command:\n#\n#    (.+)\n", LOCK.read_text())
    assert header is not None
    assert header.group(1) == PYTHON_VERSION, "the lock was generated with another Python than .python-version"
    check = step_running(load(CI), "pip-compile")["run"]
    command = header.group(2).replace("pip-compile ", "pip-compile --quiet ", 1)  # the same, without the echo
    assert f"{command}\ngit diff --exit-code -- requirements-release.txt\n" in check
    assert "--generate-hashes" in header.group(2)
    assert re.search(r"^pip-tools==\S+$", (PROJECT / "requirements-dev.txt").read_text(), re.M)


# 6. the builder: one pinned version, upstream asset only, telemetry off, cached (issue 24)


def builder_steps(doc: dict[Any, Any]) -> list[dict[str, Any]]:
    """The steps from the cache key to the builder's check: the same in both workflows."""
    job = next(job for job in doc["jobs"].values() if any(s.get("id") == "key" for s in job["steps"]))
    ids = [s.get("id") for s in job["steps"]]
    return job["steps"][ids.index("key") : ids.index("check") + 1]  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", [PUBLISH, CI], ids=lambda p: p.name)
def test_builder_install_is_pinned_and_hardened(path: Path) -> None:
    doc = load(path)
    assert doc["env"]["GREENTIC_PACK_VERSION"] == tools.BUILDER.version
    assert path.read_text().count(tools.BUILDER.version) == 1, "the builder version lives in env only"
    builder = step_running(doc, "cargo binstall")
    assert builder["env"] == BINSTALL_ENV == tools.BINSTALL_ENV
    assert builder["run"].splitlines()[1:3] == [
        'cargo binstall --no-confirm --locked --root "$RUNNER_TEMP/$BUILDER_DIR"'
        ' "greentic-pack@${GREENTIC_PACK_VERSION}" \\',
        '  || cargo install --locked --root "$RUNNER_TEMP/$BUILDER_DIR" "greentic-pack@${GREENTIC_PACK_VERSION}"',
    ]
    assert [s["with"] for s in step_using(doc, "cargo-bins/cargo-binstall")] == [
        {"version": tools.CARGO_BINSTALL.version}
    ]


@pytest.mark.parametrize("path", [PUBLISH, CI], ids=lambda p: p.name)
def test_builder_is_cached_by_version_runner_and_toolchain(path: Path) -> None:
    doc = load(path)
    found = builder_steps(doc)
    key_step, restore, save, check = found[0], found[1], found[-2], found[-1]
    assert (
        "greentic-pack-${GREENTIC_PACK_VERSION}-${ImageOS:-$RUNNER_OS}-${RUNNER_ARCH}-rust-${rust}" in key_step["run"]
    )
    assert restore["uses"].startswith("actions/cache/restore@") and restore["id"] == "cache"
    assert save["uses"].startswith("actions/cache/save@")
    assert restore["with"] == save["with"] == {"path": BUILDER_PATH, "key": "${{ steps.key.outputs.key }}"}
    for step in found[2:-1]:  # the toolchain, binstall, the install and the save: skipped on a hit
        assert step["if"] == "steps.cache.outputs.cache-hit != 'true'", step["name"]
    assert "if" not in check and check["id"] == "check"  # what the cache gave back is checked on a hit too
    toolchain = next(s for s in found if "rustup toolchain install" in s.get("run", ""))
    assert toolchain["env"] == {"RUST_TOOLCHAIN": "${{ steps.key.outputs.rust }}"}  # the version in the key
    job = next(j for j in doc["jobs"].values() if key_step in j["steps"])
    assert job["steps"].index(key_step) == 0
    assert job["steps"].index(save) < min(  # saved before any code of the repository is there to run
        (job["steps"].index(s) for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@")),
        default=len(job["steps"]),
    )
    assert doc["env"]["BUILDER_DIR"] == "greentic-builder"


def test_both_workflows_share_one_builder_cache() -> None:
    """CI saves what the release restores: identical steps, so identical keys, paths and checks.

    One difference: a builder GREENTIC_PACK_SHA256 does not accept fails the release's builder job (before
    the release is approved) and only warns on CI.
    """
    release, ci = builder_steps(load(PUBLISH)), builder_steps(load(CI))
    assert release[-1]["env"].pop("IF_NOT_PINNED") == "fail" and ci[-1]["env"].pop("IF_NOT_PINNED") == "warn"
    assert release == ci
    assert load(PUBLISH)["env"]["BUILDER_DIR"] == load(CI)["env"]["BUILDER_DIR"]


def test_builder_is_fetched_once_before_the_shards_never_inside_them() -> None:
    doc = load(PUBLISH)
    builder, release = doc["jobs"]["builder"], doc["jobs"]["release"]
    assert "strategy" not in builder and builder["needs"] == "plan"
    assert builder["if"] == release["if"]  # nothing to release: no builder either
    assert builder["permissions"] == {} and "environment" not in builder
    assert builder["outputs"] == {"sha256": "${{ steps.check.outputs.sha256 }}"}
    assert release["needs"] == ["plan", "builder"]
    for step in release["steps"]:
        text = json.dumps(step)
        assert not any(word in text for word in BUILDER_COMPILES), f"the shard matrix compiles: {step['name']}"
    upload = next(s for s in builder["steps"] if s.get("with", {}).get("name") == "greentic-builder")
    assert upload["with"]["path"] == BUILDER_PATH and upload["with"]["if-no-files-found"] == "error"
    assert upload["with"]["overwrite"] is True and upload["with"]["retention-days"] == 30
    assert [s.get("id") for s in builder["steps"]].index("check") < builder["steps"].index(upload)


def test_shards_restore_no_cache_and_run_only_the_checked_builder() -> None:
    """A cache entry is a tarball extracted over the runner: never in a job with packages: write."""
    doc = load(PUBLISH)
    release = doc["jobs"]["release"]
    assert not [s for s in release["steps"] if s.get("uses", "").startswith("actions/cache")]
    for name, job in doc["jobs"].items():  # only the builder job, which holds no permission, restores one
        assert ("actions/cache" in json.dumps(job)) == (name == "builder"), name
    download = next(s for s in release["steps"] if s.get("with", {}).get("name") == "greentic-builder")
    assert "if" not in download  # always from the builder job's artifact
    assert download["with"]["path"] == "${{ runner.temp }}/greentic-builder-download"  # a scratch folder
    assert download["with"]["run-id"] == "${{ github.run_id }}"  # a re-run attempt finds the first one's
    check = shard_builder_step()
    assert check["env"] == {
        "BUILDER_SHA256": "${{ needs.builder.outputs.sha256 }}",
        "PINNED_SHA256": "${{ vars.GREENTIC_PACK_SHA256 }}",
    }
    names = [s["name"] for s in release["steps"]]
    assert names.index(download["name"]) + 1 == names.index(check["name"])
    assert names.index(check["name"]) < names.index(step_running(doc, "invoke release")["name"])
    on_path = [line for s in release["steps"] for line in s.get("run", "").splitlines() if "GITHUB_PATH" in line]
    assert on_path == ['echo "$PWD/.venv/bin" >> "$GITHUB_PATH"'], "no folder of the builder's goes on PATH"


def test_ci_builds_no_builder_outside_its_cached_steps() -> None:
    doc = load(CI)
    cached = builder_steps(doc)
    for step in doc["jobs"]["test"]["steps"]:
        if step not in cached:
            assert not any(word in json.dumps(step) for word in BUILDER_COMPILES), step["name"]
    on_path = step_running(doc, 'echo "$RUNNER_TEMP/$BUILDER_DIR/bin" >> "$GITHUB_PATH"')
    names = [s["name"] for s in doc["jobs"]["test"]["steps"]]
    assert names.index(on_path["name"]) < names.index(step_running(doc, "invoke release --dry-run")["name"])


CHANNEL_TOML = """manifest-version = "2"
date = "2026-11-12"
[pkg.cargo]
version = "0.100.0 (0123abcde 2026-11-01)"
[pkg.rustc]
version = "1.100.0 (4567fedcb 2026-11-09)"
[pkg.rustc.target.x86_64-unknown-linux-gnu]
available = true
[pkg.rust-std]
version = "1.100.0 (4567fedcb 2026-11-09)"
"""


def step_shell(tmp_path: Path, stand_ins: dict[str, str]) -> dict[str, str]:
    """An environment whose PATH holds the stand-ins and only the plain tools a step needs (no real rustc)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("sed", "cut", "head", "sha256sum", "chmod", "cat", "touch", "dirname", "tr", "ls", "install", "yes"):
        real = shutil.which(name)
        assert real, name
        (bin_dir / name).symlink_to(real)
    for name, script in stand_ins.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n")
        (bin_dir / name).chmod(0o755)
    (tmp_path / "output").touch()
    (tmp_path / "summary").touch()
    return {
        "PATH": str(bin_dir),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
        "GREENTIC_PACK_VERSION": "1.1.3",
        "RUNNER_OS": "Linux",
        "RUNNER_ARCH": "X64",
        "RUNNER_TEMP": str(tmp_path),
        "BUILDER_DIR": "greentic-builder",
    }


def run_step(script: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash
    return subprocess.run([bash, "-c", script], env=env, cwd=cwd, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    ("rustc", "channel", "image", "key"),
    [
        # the runner image's rustc: no request at all (the curl stand-in would fail)
        (
            "echo 'rustc 1.99.2 (0123abcde 2026-10-01)'",
            None,
            "ubuntu24",
            "greentic-pack-1.1.3-ubuntu24-X64-rust-1.99.2",
        ),
        # no rustc: stable's version from the channel manifest; no ImageOS: the runner's OS family
        (None, CHANNEL_TOML, None, "greentic-pack-1.1.3-Linux-X64-rust-1.100.0"),
        # a rustc that is not a stable release does not name the key
        (
            "echo 'rustc 1.101.0-beta.3 (0123abcde 2026-11-20)'",
            CHANNEL_TOML,
            "ubuntu24",
            "greentic-pack-1.1.3-ubuntu24-X64-rust-1.100.0",
        ),
        (None, "<html>maintenance</html>", None, None),
        ("exit 1", None, None, None),
    ],
)
def test_cache_key_names_the_rust_that_builds_on_a_miss(
    tmp_path: Path, rustc: str | None, channel: str | None, image: str | None, key: str | None
) -> None:
    """Run the key step with a stand-in rustc and curl (the channel manifest, or a failed request)."""
    (tmp_path / "channel.toml").write_text(channel or "")
    stand_ins = {"curl": f"cat {tmp_path / 'channel.toml'}" if channel else "exit 22"}
    if rustc:
        stand_ins["rustc"] = rustc
    env = step_shell(tmp_path, stand_ins) | ({"ImageOS": image} if image else {})
    result = run_step(builder_steps(load(PUBLISH))[0]["run"], env)
    if key is None:
        assert result.returncode != 0 and result.stderr == "error: could not read Rust stable's version\n"
        assert (tmp_path / "output").read_text() == ""
        return
    assert result.returncode == 0, result.stderr
    rust = key.rsplit("-", 1)[1]
    assert (tmp_path / "output").read_text() == f"rust={rust}\nkey={key}\n"


BUILDER_STAND_IN = 'touch "$(dirname "$0")/ran"; echo "greentic-pack 1.1.3"'
KEY = "greentic-pack-1.1.3-ubuntu24-X64-rust-1.99.2"


def put_builder(
    folder: Path, script: str = BUILDER_STAND_IN, executable: bool = True, name: str = "greentic-pack"
) -> tuple[Path, str]:
    builder = folder / name
    builder.parent.mkdir(parents=True, exist_ok=True)
    builder.write_text(f"#!/bin/sh\n{script}\n")
    builder.chmod(0o755 if executable else 0o644)
    return builder, hashlib.sha256(builder.read_bytes()).hexdigest()


def run_check(tmp_path: Path, pinned: str, mode: str, cache_hit: str = "true") -> subprocess.CompletedProcess[str]:
    env = step_shell(tmp_path, {}) | {
        "KEY": KEY,
        "CACHE_HIT": cache_hit,
        "PINNED_SHA256": pinned,
        "IF_NOT_PINNED": mode,
    }
    return run_step(builder_steps(load(PUBLISH))[-1]["run"], env)


BUILDER_FOLDER = Path("greentic-builder", "bin")


def a_pin_list(sha256: str) -> str:
    """Several pins (one per key: a compile is not byte-for-byte reproducible) as people type them:
    commas, CRLF line breaks, tabs, upper case, `sha256:` prefixes; the match is not on the first line."""
    return f"{'a' * 64},\t{'b' * 64}\r\nsha256:{sha256.upper()}\r\n{'c' * 64}\n"


@pytest.mark.parametrize("mode", ["fail", "warn"])
def test_check_passes_a_pinned_builder_on(tmp_path: Path, mode: str) -> None:
    builder, sha256 = put_builder(tmp_path / BUILDER_FOLDER)
    result = run_check(tmp_path, a_pin_list(sha256), mode)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "output").read_text() == f"sha256={sha256}\n" and (builder.parent / "ran").exists()
    assert result.stdout == f"greentic-pack for {KEY}: sha256 {sha256}\n" and result.stderr == ""
    assert f"greentic-pack 1.1.3, sha256 {sha256} (cache key {KEY})" in (tmp_path / "summary").read_text()


def test_check_passes_any_builder_when_told_to(tmp_path: Path) -> None:
    _, sha256 = put_builder(tmp_path / BUILDER_FOLDER)
    result = run_check(tmp_path, " ANY\n", "fail")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "output").read_text() == f"sha256={sha256}\n"


WHY_UNSET = "the repository variable GREENTIC_PACK_SHA256 is not set (the builder for {key} has sha256 {sha256})"
WHY_UNLISTED = (
    "the builder for {key} has sha256 {sha256}, which the repository variable GREENTIC_PACK_SHA256 does not list"
)
FROM_CACHE = (
    "it came from the cache: add {sha256} only if this step printed it in the run that built that key "
    "(where the install step ran), else delete the cache entry {key} (docs/workflows.md)"
)
BUILT_HERE = "this job built it: add {sha256} if you trust this run (docs/workflows.md)"


@pytest.mark.parametrize(
    ("pinned", "cache_hit", "why", "advice"),
    [
        ("", "true", WHY_UNSET, FROM_CACHE),
        ("0" * 64, "true", WHY_UNLISTED, FROM_CACHE),
        ("", "", WHY_UNSET, BUILT_HERE),  # a miss: cache-hit is empty (or false)
        ("0" * 64, "false", WHY_UNLISTED, BUILT_HERE),
    ],
)
def test_release_refuses_an_unpinned_builder_without_running_it(
    tmp_path: Path, pinned: str, cache_hit: str, why: str, advice: str
) -> None:
    """A poisoned cache entry (another binary under the key) is refused before it runs."""
    builder, sha256 = put_builder(tmp_path / BUILDER_FOLDER)
    result = run_check(tmp_path, pinned, "fail", cache_hit)
    assert result.returncode == 1
    facts = {"key": KEY, "sha256": sha256}
    assert result.stderr == f"error: {why.format(**facts)}; {advice.format(**facts)}\n"
    assert "'any'" not in result.stderr  # the way out offered is never to give the pin up
    assert not (builder.parent / "ran").exists(), "the refused builder ran"
    assert (tmp_path / "output").read_text() == ""  # no sha256 for the shards: they do not start


def test_ci_warns_of_an_unpinned_builder(tmp_path: Path) -> None:
    builder, sha256 = put_builder(tmp_path / BUILDER_FOLDER, executable=True)
    result = run_check(tmp_path, "0" * 64, "warn")
    assert result.returncode == 0, result.stderr
    facts = {"key": KEY, "sha256": sha256}
    assert result.stdout.splitlines()[1] == (
        f"::warning::{WHY_UNLISTED.format(**facts)}, so a release will refuse it; {FROM_CACHE.format(**facts)}"
    )
    assert (tmp_path / "output").read_text() == f"sha256={sha256}\n" and (builder.parent / "ran").exists()


@pytest.mark.parametrize(
    ("pinned", "error"),
    [
        (f"{'a' * 64} *", "GREENTIC_PACK_SHA256: '*' is neither a sha256 (64 hex digits) nor 'any'"),  # no glob
        (f"{'a' * 64}0", f"GREENTIC_PACK_SHA256: '{'a' * 64}0' is neither a sha256 (64 hex digits) nor 'any'"),
        ("{sha256}\nany", "GREENTIC_PACK_SHA256: 'any' stands alone, not in a list of sha256s"),
    ],
)
def test_check_refuses_a_pin_list_it_cannot_read(tmp_path: Path, pinned: str, error: str) -> None:
    builder, sha256 = put_builder(tmp_path / BUILDER_FOLDER)
    result = run_check(tmp_path, pinned.format(sha256=sha256), "warn")
    assert result.returncode == 1
    assert result.stderr == f"error: {error}\n" and not (builder.parent / "ran").exists()


@pytest.mark.parametrize(
    ("script", "reported"),
    [
        ('echo "greentic-pack 1.1.2"', "1.1.2"),
        ("echo oops >&2; exit 3", ""),
        ('echo "greentic-pack 1.1.3" >&2', ""),  # --version on stderr is not a version
    ],
)
def test_check_refuses_a_builder_of_another_version(tmp_path: Path, script: str, reported: str) -> None:
    put_builder(tmp_path / BUILDER_FOLDER, script)
    result = run_check(tmp_path, "any", "fail")
    assert result.returncode == 1
    assert result.stderr == (
        f"error: the builder for {KEY} reports version '{reported}', not 1.1.3; delete that cache entry\n"
    )
    assert (tmp_path / "output").read_text() == ""


def test_check_reads_the_first_line_of_a_long_version_text(tmp_path: Path) -> None:
    """No early-closed pipe: a --version text beyond a pipe's buffer still passes on its first line."""
    put_builder(tmp_path / BUILDER_FOLDER, 'echo "greentic-pack 1.1.3 (abc123)"; yes x | head -c 200000')
    result = run_check(tmp_path, "any", "fail")
    assert result.returncode == 0, result.stderr


def shard_builder_step() -> dict[str, Any]:
    return step_running(load(PUBLISH), 'PACKC_BIN=${builder}" >> "$GITHUB_ENV"')


def run_shard_check(tmp_path: Path, pinned: str, builder_job_sha256: str) -> subprocess.CompletedProcess[str]:
    env = step_shell(tmp_path, {}) | {
        "BUILDER_SHA256": builder_job_sha256,
        "PINNED_SHA256": pinned,
        "GITHUB_ENV": str(tmp_path / "env"),
    }
    (tmp_path / "env").touch()
    return run_step(shard_builder_step()["run"], env)


DOWNLOAD = Path("greentic-builder-download")
CHECKED = Path("greentic-builder-checked", "greentic-pack")


@pytest.mark.parametrize("how", ["pinned", "any"])
def test_a_shard_runs_the_pinned_builder_as_packc_bin(tmp_path: Path, how: str) -> None:
    _, sha256 = put_builder(tmp_path / DOWNLOAD, executable=False)  # an artifact does not keep the mode
    result = run_shard_check(tmp_path, a_pin_list(sha256) if how == "pinned" else "Any\r\n", sha256)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "env").read_text() == f"PACKC_BIN={tmp_path / CHECKED}\n"
    assert (tmp_path / CHECKED).stat().st_mode & 0o777 == 0o755 and (tmp_path / CHECKED.parent / "ran").exists()
    assert result.stdout == "greentic-pack 1.1.3\n"


@pytest.mark.parametrize(
    ("pinned", "builder_job_says"),
    [
        ("", "same"),  # nothing pinned
        ("f" * 64, "same"),  # another builder pinned
        ("any", "other"),  # 'any', but not the bytes the builder job checked
        ("any", ""),  # the builder job gave no sha256
        ("{sha256} any", "same"),  # 'any' in a list is no pin: the builder job refused it already
        ("{sha256}x", "same"),  # a pin that only starts with the sha256
    ],
)
def test_a_shard_refuses_a_builder_not_pinned(tmp_path: Path, pinned: str, builder_job_says: str) -> None:
    """The builder job restored a cache entry, so its word is not enough: the pin decides, here."""
    _, sha256 = put_builder(tmp_path / DOWNLOAD)
    claimed = {"same": sha256, "other": "e" * 64, "": ""}[builder_job_says]
    pinned = pinned.format(sha256=sha256)
    result = run_shard_check(tmp_path, pinned, claimed)
    if pinned == f"{sha256} any":  # the sha256 is listed: the stray word changes nothing here
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 1
    assert result.stderr == (
        f"error: the builder artifact has sha256 {sha256}, which GREENTIC_PACK_SHA256 ('{pinned}') does not accept "
        f"(the builder job reported '{claimed}'); nothing was built (docs/workflows.md)\n"
    )
    assert (tmp_path / "env").read_text() == "" and not (tmp_path / CHECKED).exists()
    assert not (tmp_path / DOWNLOAD / "ran").exists(), "the refused builder ran"


@pytest.mark.parametrize("extra", ["invoke", ".invoke"])
def test_a_shard_refuses_an_artifact_holding_more_than_the_builder(tmp_path: Path, extra: str) -> None:
    """A genuine greentic-pack beside a fake `invoke` (hidden or not) would pass a check of the builder alone."""
    _, sha256 = put_builder(tmp_path / DOWNLOAD)
    put_builder(tmp_path / DOWNLOAD, "echo pwned", name=extra)
    result = run_shard_check(tmp_path, sha256, sha256)
    assert result.returncode == 1
    prefix = "error: the builder artifact must hold greentic-pack alone; it holds: "
    assert result.stderr.startswith(prefix) and result.stderr.endswith("\n")
    assert sorted(result.stderr[len(prefix) : -1].split(" ")) == sorted(["greentic-pack", extra])
    assert (tmp_path / "env").read_text() == ""


def planned_shards_script() -> str:
    script: str = step_running(load(PUBLISH), 'os.listdir("shards")')["run"]
    return script[script.index("<<'PY'\n") + 7 : script.index("\nPY\n")]


def test_the_lock_job_checks_the_shards_before_merging_them() -> None:
    doc = load(PUBLISH)
    lock = doc["jobs"]["lock"]
    check = step_running(doc, 'os.listdir("shards")')
    assert check in lock["steps"] and "if" not in check and "continue-on-error" not in check
    assert check["env"] == {"MATRIX": "${{ needs.plan.outputs.matrix }}"} and "plan" in lock["needs"]
    names = [s["name"] for s in lock["steps"]]
    download = next(s for s in lock["steps"] if s.get("with", {}).get("pattern") == "shard-*")
    merge = step_running(doc, "invoke lock --merge locks")
    assert names.index(download["name"]) + 1 == names.index(check["name"]) < names.index(merge["name"])
    assert "merge-multiple" not in download["with"]  # one folder per artifact: the names are seen


def attest_check_step() -> dict[str, Any]:
    return step_running(load(PUBLISH), "sha256sum --check --strict --quiet")


def test_attest_signs_only_the_list_the_lock_job_made() -> None:
    doc = load(PUBLISH)
    lock, attest = doc["jobs"]["lock"], doc["jobs"]["attest"]
    assert lock["outputs"] == {"subjects-sha256": "${{ steps.subjects.outputs.sha256 }}"}
    listing = next(s for s in lock["steps"] if s.get("id") == "subjects")
    assert listing["run"].endswith(
        'echo "sha256=$(sha256sum attestation-subjects.txt | cut -d \' \' -f 1)" >> "$GITHUB_OUTPUT"\n'
    )
    check = attest_check_step()
    assert check["env"] == {"SUBJECTS_SHA256": "${{ needs.lock.outputs.subjects-sha256 }}"}
    assert "if" not in check and "continue-on-error" not in check
    names = [s["name"] for s in attest["steps"]]
    [attestation] = step_using(doc, "actions/attest-build-provenance")
    assert names.index(check["name"]) + 1 == names.index(attestation["name"])


@pytest.mark.parametrize("list_made", ["same", "other", "none"])
def test_attest_refuses_a_subjects_list_swapped_after_the_lock_job(tmp_path: Path, list_made: str) -> None:
    """An artifact of the run can be replaced by whoever holds a token of the run: the digest decides."""
    subjects = tmp_path / "attestation-subjects.txt"
    subjects.write_text(f"{'a' * 64}  ghcr.io/acme/greentic-packs/a\n")
    made = {"same": hashlib.sha256(subjects.read_bytes()).hexdigest(), "other": "d" * 64, "none": ""}[list_made]
    env = step_shell(tmp_path, {}) | {"SUBJECTS_SHA256": made}
    result = run_step(attest_check_step()["run"], env, cwd=tmp_path)
    if list_made == "same":
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 1
    assert result.stderr.endswith(
        "error: attestation-subjects.txt is not the list the lock job made; nothing attested\n"
        if list_made == "other"
        else "error: the lock job gave no sha256 of the subjects\n"
    )


@pytest.mark.parametrize("extra", [False, True])
def test_the_lock_job_takes_only_the_planned_shards(tmp_path: Path, extra: bool) -> None:
    """An artifact named like a shard, uploaded by an earlier job, is not merged: the lock job stops."""
    for name in ["shard-1", "shard-2"] + (["shard-zz"] if extra else []):
        (tmp_path / "shards" / name).mkdir(parents=True)
    matrix = json.dumps({"include": [{"name": "shard-1", "packs": ["a"]}, {"name": "shard-2", "packs": ["b"]}]})
    result = subprocess.run(
        [sys.executable, "-c", planned_shards_script()],
        cwd=tmp_path,
        env={"MATRIX": matrix},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if not extra:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 1
    assert (
        result.stderr == "error: the shard artifacts are shard-1, shard-2, shard-zz; the plan made shard-1, shard-2\n"
    )


def test_readme_installs_the_same_builder() -> None:
    versions = set(re.findall(r"greentic-pack@(\d+\.\d+\.\d+)", README))
    assert versions == {tools.BUILDER.version}
    assert "BINSTALL_DISABLE_STRATEGIES=quick-install,compile BINSTALL_DISABLE_TELEMETRY=true" in README
    assert "cargo binstall greentic-pack " not in README and "cargo binstall greentic-pack\n" not in README


# 7. CI cancels superseded pull-request runs only


def test_ci_cancels_superseded_pull_request_runs_only() -> None:
    concurrency = load(CI)["concurrency"]
    assert "${{ github.ref }}" in concurrency["group"]
    assert concurrency["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"


# 8. the README's first-release checklist


def test_readme_first_release_checklist() -> None:
    section = README[README.index("**First release to GHCR**") :]
    section = section[: section.index("\n## ")]
    for needed in [
        "installation not allowed to Create organization package",
        "permission_denied: write_package",
        "Manage Actions access",
        "public",
        "`release` environment",
        "ATTEST_PRIVATE_REPOSITORY",
        "GitHub Enterprise Cloud",
    ]:
        assert needed in section, needed
    assert section.count("\n- [ ] ") >= 5


# 9. the pinned tools: workflows and README agree with pack_publisher/commands/tools.py (see also test_tools.py)


def test_readme_names_the_tools_task_first() -> None:
    setup = README[README.index("## Set up and run") : README.index("## What this repository publishes")]
    assert f"{DEV_INSTALL}\ninvoke tools " in setup


# the release and pull-request contracts that predate issue 11


def test_release_workflow_contract() -> None:
    doc = load(PUBLISH)
    assert doc["permissions"] == {}
    assert "github.ref" in doc["concurrency"]["group"] and doc["concurrency"]["cancel-in-progress"] is False
    release = doc["jobs"]["release"]
    assert release["permissions"] == {"actions": "read", "contents": "read", "packages": "write"}
    assert doc["jobs"]["lock"]["permissions"] == {"actions": "read", "contents": "read", "packages": "read"}
    assert doc["env"]["OCI_REGISTRY"] == "ghcr.io" and doc["env"]["OCI_REPO"] == "greentic-packs"
    assert not [s for s in steps(doc) if "oras login" in s.get("run", "")]  # the publisher reads GITHUB_TOKEN

    release_step = step_running(doc, "invoke release")
    assert release_step["env"] == {
        "OCI_ORG": "${{ github.repository_owner }}",
        "GITHUB_TOKEN": "${{ github.token }}",
        "SHARD": "${{ matrix.name }}",
        "SHARD_PACKS": "${{ join(matrix.packs, ' ') }}",
        "PACK_SIGNING_KEY": "${{ secrets.PACK_SIGNING_KEY }}",
        "REQUIRE_PUBLIC": "${{ vars.REQUIRE_PUBLIC }}",
    }
    assert 'LOCK_FILE="locks/${SHARD}.json" invoke release "${args[@]}"' in release_step["run"]
    lock = doc["jobs"]["lock"]
    order = [s.get("name") for s in lock["steps"]]
    merge, verify = step_running(doc, "invoke lock --merge locks"), step_running(doc, "invoke verify")
    assert order.index(merge["name"]) < order.index(verify["name"])
    assert "invoke verify --lock packs.lock.json" in verify["run"]
    final = next(s for s in lock["steps"] if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert {"packs.lock.json", "dist/packs/*.gtpack"} <= set(final["with"]["path"].split())
    assert final["with"]["if-no-files-found"] == "error"


def test_release_fans_out_over_the_planned_shards() -> None:
    doc = load(PUBLISH)
    plan, release, lock = doc["jobs"]["plan"], doc["jobs"]["release"], doc["jobs"]["lock"]
    assert plan["outputs"]["matrix"] == "${{ steps.matrix.outputs.matrix }}"
    assert 'matrix="$(invoke matrix --max-jobs "$MAX_SHARDS")"' in step_running(doc, "invoke matrix")["run"]
    assert release["needs"] == ["plan", "builder"] and release["strategy"]["fail-fast"] is False
    assert release["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    uploads = [s for s in release["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert uploads[0]["with"]["name"].startswith("${{ matrix.name }}") and "locks/*.json" in uploads[0]["with"]["path"]
    download = next(s for s in lock["steps"] if s.get("uses", "").startswith("actions/download-artifact@"))
    assert download["with"] == {
        "pattern": "shard-*",
        "path": "shards",
        "github-token": "${{ github.token }}",  # by run id: a re-run attempt sees the first attempt's fragments
        "run-id": "${{ github.run_id }}",
    }
    assert lock["permissions"]["actions"] == "read"
    assert release["if"] == "fromJSON(needs.plan.outputs.matrix).include[0] != null"  # no empty matrix
    assert "Re-run failed jobs" in README and "MAX_SHARDS" in README


def test_a_shard_releases_exactly_its_packs(tmp_path: Path) -> None:
    """Run the shard's own script with a stand-in `invoke` that records its arguments and environment."""
    (tmp_path / "bin").mkdir()
    record = tmp_path / "record.txt"
    fake = tmp_path / "bin" / "invoke"
    fake.write_text(f'#!/bin/sh\necho "LOCK_FILE=$LOCK_FILE PACK_VERSION=$PACK_VERSION $*" > {record}\n')
    fake.chmod(0o755)
    script = step_running(load(PUBLISH), "invoke release")["run"]
    env = {
        "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin",
        "GITHUB_REF_NAME": "v1.2.3",
        "SHARD": "shard-2",
        "SHARD_PACKS": "alpha beta-pack",
    }
    subprocess.run(["bash", "-c", script], env=env, check=True, timeout=30)
    assert record.read_text().strip() == (
        "LOCK_FILE=locks/shard-2.json PACK_VERSION=1.2.3 release --pack alpha --pack beta-pack"
    )


def test_the_merge_step_gathers_every_shard(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "invoke"
    fake.write_text("#!/bin/sh\nls locks dist/packs > merged.txt\n")
    fake.chmod(0o755)
    for shard in ("shard-1", "shard-2"):
        (tmp_path / "shards" / shard / "locks").mkdir(parents=True)
        (tmp_path / "shards" / shard / "locks" / f"{shard}.json").write_text("{}")
        (tmp_path / "shards" / shard / "dist" / "packs").mkdir(parents=True)
        (tmp_path / "shards" / shard / "dist" / "packs" / f"{shard}-pack.gtpack").write_text("")
        (tmp_path / "shards" / shard / "dist" / "packs" / f"{shard}-pack.cdx.json").write_text("{}")
    script = step_running(load(PUBLISH), "invoke lock --merge locks")["run"]
    subprocess.run(["bash", "-c", script], cwd=tmp_path, env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}, check=True)
    assert (tmp_path / "merged.txt").read_text().split() == [
        "dist/packs:",
        "shard-1-pack.cdx.json",
        "shard-1-pack.gtpack",
        "shard-2-pack.cdx.json",
        "shard-2-pack.gtpack",
        "locks:",
        "shard-1.json",
        "shard-2.json",
    ]


def test_pull_requests_dry_run_the_changed_packs() -> None:
    doc = load(CI)
    checkout = step_using(doc, "actions/checkout")[0]
    assert checkout["with"]["fetch-depth"] == 2  # the merge commit and the base it was merged onto
    changed = step_running(doc, "--changed-since")
    assert changed["if"] == "github.event_name == 'pull_request'"
    assert "invoke release --dry-run --changed-since HEAD^1" in changed["run"]
    full = next(s for s in steps(doc) if s.get("run", "").rstrip().endswith("invoke release --dry-run"))
    assert full["if"] == "github.event_name != 'pull_request'"


def test_pull_request_workflow_contract() -> None:
    doc = load(CI)
    text = CI.read_text()
    assert set(doc["on"]) == {"pull_request", "push"} and doc["on"]["push"] == {"branches": ["main"]}
    assert "pull_request_target" not in text and "secrets." not in text and "github.token" not in text
    assert doc["permissions"] == {"contents": "read"}
    assert all("permissions" not in job for job in doc["jobs"].values())
    assert DEV_INSTALL in step_running(doc, "requirements-dev.txt")["run"] and DEV_INSTALL in README
    assert "invoke test" in step_running(doc, "invoke test")["run"]
    assert "```sh\ninvoke test\n```" in README
    assert "invoke release --dry-run" in step_running(doc, "invoke release --dry-run")["run"]
    upload = step_using(doc, "actions/upload-artifact")[0]
    assert upload["with"]["path"] == "packs.lock.json"


# what this wave's other issues need from the release workflow (issues 20 and 22)


def test_signing_key_comes_from_a_secret_only_where_packs_are_published() -> None:
    doc = load(PUBLISH)
    text = PUBLISH.read_text()
    assert text.count("secrets.") == 1, "the signing key is the only secret the workflow reads"
    release = doc["jobs"]["release"]
    assert release["environment"] == "release"  # environment secrets can hold the key as well
    signing = [s for s in steps(doc) if "PACK_SIGNING_KEY" in s.get("env", {})]
    assert signing == [step_running(doc, "invoke release")]
    assert signing[0]["env"]["PACK_SIGNING_KEY"] == "${{ secrets.PACK_SIGNING_KEY }}"  # empty: unsigned
    assert "PACK_SIGNING_KEY" not in step_running(doc, "invoke release")["run"]  # through env, never argv
    for needed in ("PACK_SIGNING_KEY", "REQUIRE_PUBLIC", "vars.REQUIRE_PUBLIC", "unsigned"):
        assert needed in WORKFLOW_DOCS, needed


def test_require_public_is_a_repository_variable_passed_through_env() -> None:
    doc = load(PUBLISH)
    assert step_running(doc, "invoke release")["env"]["REQUIRE_PUBLIC"] == "${{ vars.REQUIRE_PUBLIC }}"
    assert "REQUIRE_PUBLIC" not in "".join(runs(doc))


def test_sboms_travel_with_the_packs() -> None:
    doc = load(PUBLISH)
    shard_upload = next(
        s for s in doc["jobs"]["release"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")
    )
    final = next(
        s
        for s in doc["jobs"]["lock"]["steps"]
        if s.get("with", {}).get("name") == "greentic-packs-${{ github.ref_name }}"
    )
    for upload in (shard_upload, final):
        assert "dist/packs/*.cdx.json" in upload["with"]["path"].split()
    assert "cp shards/*/dist/packs/* dist/packs/" in step_running(doc, "invoke lock --merge locks")["run"]


def test_workflow_notes_give_first_and_later_release_times() -> None:
    """README gives the builder job's time for a first and a later release: the figures of the docs' table."""
    table = WORKFLOW_DOCS[WORKFLOW_DOCS.index("## Expected times") : WORKFLOW_DOCS.index("## Signing")]
    rows = [line.split("|") for line in table.splitlines() if line.startswith("| ")]
    row = {cells[1].strip(): cells[2].strip() for cells in rows}
    first = row["first release (no cache: no upstream asset, a locked `cargo install`)"]
    later = row["later release (cache hit: the same builder, Rust version and runner image)"]
    assert (first, later) == ("12-20 min, once", "20-40 s")
    notes = README[README.index("Expected times of a release") : README.index("**First release to GHCR**")]
    first_line = next(line for line in notes.split("- ") if line.startswith("**First release**"))
    later_line = next(line for line in notes.split("- ") if line.startswith("**Later release**"))
    assert "**12-20 min**" in first_line and "about 1 min" in first_line
    assert "**20-40 s**" in later_line
    assert "docs/workflows.md#expected-times" in notes
