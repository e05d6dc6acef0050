"""Where credentials come from, in order, and clear errors for broken Docker config files."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from pack_publisher.registry.credentials import resolve_credentials
from pack_publisher.runtime.errors import ConfigError
from pack_publisher.runtime.redact import SecretStr

from .conftest import publish_options, runner

HOST = "registry.example.test"


@pytest.fixture
def docker_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    return tmp_path


def resolve(**kw: object) -> object:
    return resolve_credentials(HOST, publish_options(**kw), runner())


def test_order(docker_dir: Path) -> None:
    auth = base64.b64encode(b"docker-user:docker-pw").decode()
    (docker_dir / "config.json").write_text(json.dumps({"auths": {HOST: {"auth": auth}}}))
    first = resolve(oci_username="u", oci_password=SecretStr("p"), github_actor="a", github_token=SecretStr("t"))
    assert first.origin == "OCI_USERNAME/OCI_PASSWORD"  # type: ignore[attr-defined]
    second = resolve(github_actor="a", github_token=SecretStr("t"))
    assert second.origin == "GITHUB_ACTOR/GITHUB_TOKEN"  # type: ignore[attr-defined]
    third = resolve()
    assert third.username == "docker-user"  # type: ignore[attr-defined]
    assert third.password.get_secret_value() == "docker-pw"  # type: ignore[attr-defined]


def test_https_key_and_plain_fields(docker_dir: Path) -> None:
    (docker_dir / "config.json").write_text(
        json.dumps({"auths": {f"https://{HOST}": {"username": "u", "password": "p"}}})
    )
    assert resolve().username == "u"  # type: ignore[attr-defined]


def test_none_when_nothing_is_configured(docker_dir: Path) -> None:
    assert resolve() is None
    (docker_dir / "config.json").write_text(json.dumps({"auths": {"other.host": {"auth": "eDp5"}}}))
    assert resolve() is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{broken", "not a readable Docker config file (JSONDecodeError)"),
        ("[1, 2]", "not a Docker config file (expected a JSON object)"),
        (json.dumps({"auths": []}), "'auths' is not an object"),
        (json.dumps({"auths": {HOST: {"auth": "%%% not base64"}}}), f"the 'auth' entry for {HOST} is not base64"),
        (json.dumps({"credsStore": "no-such-helper-xyz"}), "credential helper docker-credential-no-such-helper-xyz"),
    ],
)
def test_broken_config(docker_dir: Path, content: str, message: str) -> None:
    (docker_dir / "config.json").write_text(content)
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve()


def test_helper_answering_garbage(docker_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = tmp_path / "docker-credential-junk"
    helper.write_text("#!/bin/sh\necho not json\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    (docker_dir / "config.json").write_text(json.dumps({"credHelpers": {HOST: "junk"}}))
    with pytest.raises(ConfigError, match="answered something that is not credentials"):
        resolve()


def test_helper_without_an_entry_means_anonymous(
    docker_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper = tmp_path / "docker-credential-empty"
    helper.write_text("#!/bin/sh\necho 'credentials not found in native keychain' >&2\nexit 1\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    (docker_dir / "config.json").write_text(json.dumps({"credsStore": "empty"}))
    assert resolve() is None
