"""The oras transport: how oras' stderr is read, and what it relays. Publishing through the real oras is
tested with every other publishing test (the `client` fixture runs them on both transports)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pack_publisher.registry.credentials import Credentials, PrivateRegistryConfig
from pack_publisher.registry.http import HttpTransport
from pack_publisher.registry.oras import OrasTransport, Unauthorized
from pack_publisher.registry.retry import Transient
from pack_publisher.registry.transport import NotFound
from pack_publisher.runtime.errors import PublisherError
from pack_publisher.runtime.redact import Redactor, SecretStr
from testsupport.registries import Registry

from .conftest import STANDINS, RunInvoke, make_executable, runner

PACK = "messaging-provider-bundle"
REPO = f"acme/greentic-packs/{PACK}"
CANARY = "canary-token-7f3a9c"
HOST = "127.0.0.1:5000"


@pytest.fixture
def transport() -> OrasTransport:
    config = PrivateRegistryConfig(HOST, None)
    credentials = Credentials("bot", SecretStr(CANARY), "test")
    reader = HttpTransport(HOST, credentials, True)
    yield OrasTransport("oras", HOST, config, credentials, True, runner(), {}, Redactor([CANARY]), reader=reader)  # type: ignore[misc]
    config.remove()


# Lines the real oras 1.3.3 printed for each case, against docker-registry behind the fault proxy.
HEAD = f'HEAD "http://{HOST}/v2/a/b/manifests/1.0"'
NOT_FOUND = f"Error response from registry: failed to resolve digest: {HOST}/a/b:1.0: not found"
CASES = [
    (NOT_FOUND, NotFound),
    (f"Error response from registry: {HEAD}: response status code 503: Service Unavailable", Transient),
    (f"Error response from registry: {HEAD}: response status code 404: Not Found", PublisherError),
    (f"Error response from registry: {HEAD}: response status code 401: Unauthorized", Unauthorized),
    (f"Error: failed to resolve digest: {HEAD}: read tcp 127.0.0.1:1->{HOST}: connection reset by peer", Transient),
    (f"Error: failed to resolve digest: {HEAD}: dial tcp {HOST}: connect: connection refused", Transient),
    (f"Error: {HEAD}: invalid response; digest mismatch in Docker-Content-Digest", PublisherError),  # tampering
    (f'Error from destination registry for "{HOST}/a/b:1.0": unauthorized: authentication required', Unauthorized),
    ("Error: something oras has never said before", PublisherError),
]


@pytest.mark.parametrize(("line", "kind"), CASES)
def test_stderr_is_classified_strictly(transport: OrasTransport, line: str, kind: type[Exception]) -> None:
    """Only oras-go's exact "<ref>: not found" reads as absent; anything else is transient or an error."""
    got = transport._classify(f"{line}\nPlease check whether the registry credential stored ... is correct\n", 1, "op")
    assert type(got) is kind, got


def test_not_found_inside_another_error_is_not_absent(transport: OrasTransport) -> None:
    line = f'Error response from registry: GET "http://{HOST}/v2/x": response status code 500: name unknown: not found'
    assert isinstance(transport._classify(line, 1, "op"), Transient)


def test_private_registry_config_is_private_and_removed() -> None:
    """The fallback where no in-memory file can be made (not Linux): a 0600 file in a 0700 folder."""
    config = PrivateRegistryConfig(HOST, Credentials("bot", SecretStr(CANARY), "test"), in_memory=False)
    assert config.folder is not None
    assert config.folder.stat().st_mode & 0o777 == 0o700
    assert config.path.stat().st_mode & 0o777 == 0o600
    assert json.loads(config.path.read_text())["auths"][HOST]["auth"]
    config.remove()
    assert not config.folder.exists()


def test_what_oras_relays_is_redacted(
    project_copy: Path, run_invoke: RunInvoke, tmp_path: Path, registry: Registry
) -> None:
    """The stand-in oras fails the copy (reads are the built-in client's), echoing the credentials it was given."""
    exe = make_executable(tmp_path / "oras", STANDINS / "oras.py")
    env = {
        "OCI_REGISTRY": registry.host,
        "OCI_ORG": "acme",
        "PACK_VERSION": "1.2.3",
        "OCI_CLIENT": "oras",
        "ORAS_BIN": str(exe),
        "GITHUB_ACTOR": "bot",
        "GITHUB_TOKEN": CANARY,
        "FAKE_ORAS_LOG": str(tmp_path / "oras.log"),
    }
    result = run_invoke(project_copy, "release", **env)
    assert result.returncode == 1
    assert f"FAILED messaging-provider-bundle: {registry.host}: copying" in result.stdout
    assert "Error: credentials bot:*** (***) rejected" in result.stdout
    assert CANARY not in result.stdout + result.stderr
    assert CANARY not in (tmp_path / "oras.log").read_text()  # never on oras' command line


def test_oras_asked_for_but_missing(project_copy: Path, run_invoke: RunInvoke) -> None:
    result = run_invoke(
        project_copy, "release", OCI_REGISTRY=HOST, OCI_ORG="acme", PACK_VERSION="1.0.0", OCI_CLIENT="oras"
    )
    assert result.returncode == 2
    assert "error: OCI_CLIENT: 'oras' asked for, but no oras executable was found (set ORAS_BIN)" in result.stderr


def test_verify_rejects_a_tampered_layer(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    env = {"OCI_REGISTRY": registry.host, "OCI_ORG": "acme", "PACK_VERSION": "1.2.3", **client}
    assert run_invoke(project_copy, "release", **env).returncode == 0
    assert run_invoke(project_copy, "verify", **env).returncode == 0
    layer = json.loads((project_copy / "packs.lock.json").read_text())["packs"][0]["gtpack_sha256"]
    hexdigest = layer.split(":")[1]
    [data] = (registry.folder / "storage").rglob(f"blobs/sha256/{hexdigest[:2]}/{hexdigest}/data")
    data.write_bytes(b"X" * data.stat().st_size)  # same size, other bytes: only hashing can tell
    result = run_invoke(project_copy, "verify", **env)
    assert result.returncode == 1
    assert f"MISMATCH {PACK}: " in result.stdout
    assert "other content" in result.stdout or "digest" in result.stdout
