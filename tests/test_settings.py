"""Settings: defaults, environment, git tags, flags, and one clear line per invalid value."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pack_publisher.config.settings import resolve_settings
from pack_publisher.runtime.errors import EXIT_USAGE, ConfigError

from .conftest import COMMIT_EPOCH, git, init_repo

ENV_VARS = [
    *("OCI_REGISTRY", "OCI_ORG", "OCI_REPO", "PACK_VERSION", "PACKS_DIR", "OUT_DIR", "LOCK_FILE", "DRY_RUN"),
    *("ORAS_EXPERIMENTAL", "PACKC", "PACKC_BIN", "SOURCE_DATE_EPOCH", "GITHUB_REPOSITORY"),
    *("GITHUB_REPOSITORY_OWNER", "GITHUB_SERVER_URL", "OCI_USERNAME", "OCI_PASSWORD", "GITHUB_ACTOR", "GITHUB_TOKEN"),
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "README").write_text("x\n")
    init_repo(tmp_path)
    return tmp_path


def fails(repo: Path, overrides: dict[str, object] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        resolve_settings(repo, overrides)
    assert info.value.exit_code == EXIT_USAGE
    assert "\n" not in info.value.message
    return info.value.message


def test_defaults(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCI_ORG", "acme")
    monkeypatch.setenv("PACK_VERSION", "1.2.3")
    s = resolve_settings(repo)
    assert (s.registry, s.org, s.repo, s.version) == ("ghcr.io", "acme", "greentic-packs", "1.2.3")
    assert s.packs_dir == repo.resolve() / "packs"
    assert s.out_dir == repo.resolve() / "dist" / "packs"
    assert s.lock_file == repo.resolve() / "packs.lock.json"
    assert s.dry_run is False
    assert s.git_sha == git(repo, "rev-parse", "HEAD")
    assert s.created == "2026-01-02T03:04:05Z"  # the HEAD commit time, UTC
    assert s.reference("p") == "ghcr.io/acme/greentic-packs/p:1.2.3"


def test_environment_values(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "OCI_REGISTRY": "Registry.Example.com:5000",
        "OCI_ORG": "Acme-Corp",
        "OCI_REPO": "team/packs",
        "PACK_VERSION": "2.0.0-rc.1",
        "PACKS_DIR": "src/packs",
        "OUT_DIR": "/tmp/out",
        "DRY_RUN": "true",
        "ORAS_EXPERIMENTAL": "1",
        "PACKC_BIN": "/opt/packc",
        "SOURCE_DATE_EPOCH": "0",
        "GITHUB_REPOSITORY": "Acme-Corp/packs",
    }.items():
        monkeypatch.setenv(key, value)
    s = resolve_settings(repo)
    assert s.registry == "registry.example.com:5000"
    assert s.org == "acme-corp"
    assert s.repo == "team/packs"
    assert s.version == "2.0.0-rc.1"
    assert s.packs_dir == repo.resolve() / "src" / "packs"
    assert s.out_dir == Path("/tmp/out")
    assert s.dry_run and s.publish.oras_experimental
    assert s.builder_override == "/opt/packc"
    assert s.created == "1970-01-01T00:00:00Z"
    assert s.source_url == "https://github.com/Acme-Corp/packs"


def test_flags_override_environment(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCI_ORG", "acme")
    monkeypatch.setenv("DRY_RUN", "0")
    monkeypatch.setenv("PACK_VERSION", "1.0.0")
    assert resolve_settings(repo, {"dry_run": True, "pack_version": None}).dry_run is True


def test_org_from_github_owner_lowercased(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_REPOSITORY_OWNER", "GreenticAI")
    monkeypatch.setenv("PACK_VERSION", "1.0.0")
    assert resolve_settings(repo).org == "greenticai"


def test_org_and_source_from_origin_without_credentials(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    git(repo, "remote", "add", "origin", "https://x-access-token:ghs_secret@github.com/GreenticAI/Packs.git")
    monkeypatch.setenv("PACK_VERSION", "1.0.0")
    s = resolve_settings(repo)
    assert s.org == "greenticai"
    assert s.source_url == "https://github.com/GreenticAI/Packs"


def test_ssh_origin(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    git(repo, "remote", "add", "origin", "git@github.com:acme/packs.git")
    monkeypatch.setenv("PACK_VERSION", "1.0.0")
    assert resolve_settings(repo).source_url == "https://github.com/acme/packs"


def test_version_from_tag(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCI_ORG", "acme")
    git(repo, "tag", "v1.4.2")
    git(repo, "tag", "not-a-release")
    s = resolve_settings(repo)
    assert (s.version, s.version_source) == ("1.4.2", "git tag v1.4.2")


def test_annotated_tag(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCI_ORG", "acme")
    git(repo, "tag", "-a", "v3.0.0-beta.2", "-m", "release")
    assert resolve_settings(repo).version == "3.0.0-beta.2"


def test_pack_version_wins_over_tag(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCI_ORG", "acme")
    monkeypatch.setenv("PACK_VERSION", "9.9.9")
    git(repo, "tag", "v1.0.0")
    assert resolve_settings(repo).version == "9.9.9"


def test_dry_run_fallback_version(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCI_ORG", "acme")
    monkeypatch.setenv("DRY_RUN", "1")
    s = resolve_settings(repo)
    assert s.version == f"0.0.0-dev.{git(repo, 'rev-parse', 'HEAD')[:7]}"
    assert any("dry run uses" in n for n in s.notices)


def test_source_date_epoch(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCI_ORG", "acme")
    monkeypatch.setenv("PACK_VERSION", "1.0.0")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(COMMIT_EPOCH + 3600))
    assert resolve_settings(repo).created == "2026-01-02T04:04:05Z"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OCI_REGISTRY": "https://ghcr.io"}, "OCI_REGISTRY: 'https://ghcr.io' must be a host[:port] without a scheme"),
        ({"OCI_REGISTRY": "ghcr io"}, "OCI_REGISTRY: 'ghcr io' is not a registry host[:port]"),
        ({"OCI_ORG": "bad org"}, "OCI_ORG: 'bad org' is not a valid OCI repository path component"),
        ({"OCI_ORG": "-acme"}, "OCI_ORG: '-acme' is not a valid OCI repository path component"),
        ({"OCI_ORG": ".."}, "OCI_ORG: '..' is not a valid OCI repository path component"),
        ({"OCI_REPO": "Greentic-Packs"}, "OCI_REPO: 'Greentic-Packs' is not a valid OCI repository path (it must"),
        ({"OCI_REPO": "packs/../x"}, "OCI_REPO: 'packs/../x' is not a valid OCI repository path"),
        ({"OCI_REPO": "my packs"}, "OCI_REPO: 'my packs' is not a valid OCI repository path"),
        ({"PACK_VERSION": "1.2"}, "PACK_VERSION: '1.2' is not a semantic version"),
        ({"PACK_VERSION": "v1.2.3"}, "PACK_VERSION: 'v1.2.3' is not a semantic version (X.Y.Z[-pre-release]); drop"),
        ({"PACK_VERSION": "1.2.3+build.7"}, "PACK_VERSION: '1.2.3+build.7' carries build metadata ('+build.7')"),
        ({"DRY_RUN": "maybe"}, "DRY_RUN: 'maybe': input should be a valid boolean"),
        ({"SOURCE_DATE_EPOCH": "yesterday"}, "SOURCE_DATE_EPOCH: 'yesterday': input should be a valid integer"),
        ({"SOURCE_DATE_EPOCH": "-5"}, "SOURCE_DATE_EPOCH: '-5': input should be greater than or equal to 0"),
    ],
)
def test_invalid_values(repo: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str) -> None:
    monkeypatch.setenv("OCI_ORG", "acme")
    monkeypatch.setenv("PACK_VERSION", "1.0.0")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert fails(repo).startswith(expected)


def test_build_metadata_suggests_prerelease(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCI_ORG", "acme")
    monkeypatch.setenv("PACK_VERSION", "1.2.3+build.7")
    assert "use a pre-release instead, e.g. '1.2.3-build.7'" in fails(repo)


def test_no_org(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACK_VERSION", "1.0.0")
    assert fails(repo).startswith("OCI_ORG: not set")


def test_no_version_outside_dry_run(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCI_ORG", "acme")
    assert fails(repo).startswith("PACK_VERSION is not set and HEAD has no vX.Y.Z tag")


def test_v_tag_not_semver(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCI_ORG", "acme")
    git(repo, "tag", "v1.2")
    assert fails(repo).startswith("git tag 'v1.2' on HEAD is not a release tag vX.Y.Z")


def test_two_release_tags(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCI_ORG", "acme")
    git(repo, "tag", "v1.0.0")
    git(repo, "tag", "v1.0.1")
    assert fails(repo) == "HEAD carries several release tags (v1.0.0, v1.0.1); set PACK_VERSION"


def test_not_a_git_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCI_ORG", "acme")
    monkeypatch.setenv("PACK_VERSION", "1.0.0")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert fails(tmp_path) == (
        "not a git checkout with a commit: the release annotations need the commit; outside git, "
        "set GIT_SHA (or GITHUB_SHA) and SOURCE_DATE_EPOCH"
    )


def test_secrets_are_not_in_repr(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCI_ORG", "acme")
    monkeypatch.setenv("PACK_VERSION", "1.0.0")
    monkeypatch.setenv("OCI_PASSWORD", "canary-password-123")
    s = resolve_settings(repo)
    assert "canary-password-123" not in repr(s) and "canary-password-123" not in str(dataclasses.asdict(s))
    assert s.secrets == ["canary-password-123"]
