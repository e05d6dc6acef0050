"""Hostile round three (issue #21): credentials never in clear text or on disk, archives judged by their
real bytes, lying registries caught, every input bounded. Publishing cases run on both transports (the
`client` fixture: the built-in client and the real oras CLI) against a real docker-registry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
import zlib
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from pack_publisher.registry.credentials import PrivateRegistryConfig
from pack_publisher.registry.http import HttpTransport
from pack_publisher.registry.oras import OrasTransport
from pack_publisher.registry.retry import RetryPolicy
from pack_publisher.runtime.errors import PublisherError
from pack_publisher.runtime.processes import Completed
from pack_publisher.runtime.redact import Redactor
from pack_publisher.sources import archive
from testsupport.fault_proxy import FaultProxy, Rule
from testsupport.hostile import HostileServer, reply
from testsupport.registries import PASSWORD, USER, Registry

from .conftest import RunInvoke, clean_env
from .gtpacks import good_files, write
from .test_faults import children_running
from .test_release_proofs import files_holding

PACK = "messaging-provider-bundle"
REPO = f"acme/greentic-packs/{PACK}"


def env_for(host: str, **extra: str) -> dict[str, str]:
    return {"OCI_REGISTRY": host, "OCI_ORG": "acme", "PACK_VERSION": "1.2.3", **extra}


def last_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


# --- 12: PACK_VERSION is taken as written -------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.2.3\n", "1.2.3 ", " 1.2.3", "1.2.3\t"])
def test_pack_version_with_white_space_is_refused(project_copy: Path, run_invoke: RunInvoke, version: str) -> None:
    result = run_invoke(project_copy, "release", "--dry-run", OCI_ORG="acme", PACK_VERSION=version)
    assert result.returncode == 2
    assert last_error(result).startswith(f"error: PACK_VERSION: {version!r} has white space around it")


# --- 8, 9: lockfiles are regular files, read capped, and LOCK_FILE does not follow links out ------------


def test_verify_refuses_what_is_not_a_regular_file(project_copy: Path, run_invoke: RunInvoke, tmp_path: Path) -> None:
    fifo = tmp_path / "lock.fifo"
    os.mkfifo(fifo)
    for target, kind in ((fifo, "a FIFO"), (Path("/dev/zero"), "a character device"), (tmp_path, "a directory")):
        started = time.monotonic()
        result = run_invoke(project_copy, "verify", "--lock", str(target), OCI_REGISTRY="127.0.0.1:1")
        assert time.monotonic() - started < 30
        assert result.returncode == 2
        assert kind in last_error(result), result.stderr


def test_verify_caps_what_it_reads(project_copy: Path, run_invoke: RunInvoke, tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with big.open("wb") as fh:
        fh.truncate(17 * 1024 * 1024)  # sparse: costs no disk, reads as 17 MiB of zeros
    result = run_invoke(project_copy, "verify", "--lock", str(big), OCI_REGISTRY="127.0.0.1:1")
    assert result.returncode == 2
    assert "over 16777216 bytes" in last_error(result)


def test_lock_file_naming_a_fifo_or_device_is_refused(project_copy: Path, run_invoke: RunInvoke) -> None:
    os.mkfifo(project_copy / "lock.fifo")
    for target in ("lock.fifo", "/dev/null"):
        result = run_invoke(
            project_copy, "release", "--dry-run", OCI_ORG="acme", PACK_VERSION="1.2.3", LOCK_FILE=target
        )
        assert result.returncode == 2, result.stderr
        assert "not a regular file" in last_error(result)


@pytest.mark.parametrize("how", ["file-link", "folder-link"])
def test_lock_file_link_out_of_the_repository_is_not_followed(
    project_copy: Path, run_invoke: RunInvoke, tmp_path: Path, how: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    if how == "file-link":
        (project_copy / "packs.lock.json").symlink_to(outside / "packs.lock.json")
        target = "packs.lock.json"
    else:
        (project_copy / "locks").symlink_to(outside)
        target = "locks/packs.lock.json"
    result = run_invoke(project_copy, "release", "--dry-run", OCI_ORG="acme", PACK_VERSION="1.2.3", LOCK_FILE=target)
    assert result.returncode == 2
    assert last_error(result).startswith("error: LOCK_FILE: ")
    assert list(outside.iterdir()) == []


# --- 3: archives judged by their real bytes -------------------------------------------------------------


def _patch_declared(path: Path, name: str, size: int, crc: int) -> None:
    """Rewrite the size and CRC an entry declares (local header and central directory), keeping its data."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        local, central = zf.getinfo(name).header_offset, zf.start_dir
    while (
        data[central + 46 : central + 46 + int.from_bytes(data[central + 28 : central + 30], "little")] != name.encode()
    ):
        central = data.index(b"PK\x01\x02", central + 4)
    for at in (local + 14, central + 16):  # CRC-32, compressed size, uncompressed size: only the last two move
        data[at : at + 4] = crc.to_bytes(4, "little")
        data[at + 8 : at + 12] = size.to_bytes(4, "little")
    path.write_bytes(bytes(data))


def _bomb(tmp_path: Path, entries: dict[str, int], declared: int = 1000) -> Path:
    """A valid pack plus deflated entries of zeros (name -> real size), each declaring `declared` bytes."""
    path = tmp_path / "bomb.gtpack"
    write(path, good_files())
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, size in entries.items():
            zf.writestr(name, b"\0" * size)
    for name in entries:
        _patch_declared(path, name, declared, zlib.crc32(b"\0" * declared))  # what zipfile would check
    return path


def test_an_entry_inflating_past_its_declared_size_is_refused(tmp_path: Path) -> None:
    path = _bomb(tmp_path, {"assets/bomb.bin": 17 * 1024 * 1024})
    with pytest.raises(PublisherError, match=r"entry 'assets/bomb.bin' inflates to over 16 MiB \(it declares 1000"):
        archive.inspect_gtpack(path)


def test_entries_under_the_entry_cap_declaring_less_are_refused_at_the_first(tmp_path: Path) -> None:
    path = _bomb(tmp_path, {f"assets/{i}.bin": 15 * 1024 * 1024 for i in range(5)})
    with pytest.raises(PublisherError, match=r"entry 'assets/0.bin' holds 15728640 bytes, but declares 1000$"):
        archive.inspect_gtpack(path)


def test_an_entry_holding_more_than_declared_is_refused_under_the_caps(tmp_path: Path) -> None:
    path = _bomb(tmp_path, {"assets/small.bin": 5000})
    with pytest.raises(PublisherError, match="holds 5000 bytes, but declares 1000"):
        archive.inspect_gtpack(path)


def test_too_many_entries_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "many.gtpack"
    write(path, good_files())
    with zipfile.ZipFile(path, "a") as zf:
        for i in range(archive.MAX_ENTRIES):
            zf.writestr(f"assets/{i}", b"")
    with pytest.raises(PublisherError, match="entries, over the 65535-entry limit"):
        archive.inspect_gtpack(path)


# --- 1, 5, 6: token realms, tokens, passwords ------------------------------------------------------------


def _bearer(realm: str) -> HostileServer:
    return HostileServer(reply(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="s"'}))


def test_a_plain_http_realm_on_another_host_gets_no_credentials(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke
) -> None:
    realm = "http://auth.remote.example/token"  # never resolved: refused before any request
    with _bearer(realm) as registry:
        result = run_invoke(
            project_copy, "release", **env_for(registry.host, **client, OCI_USERNAME="u", OCI_PASSWORD=PASSWORD)
        )
    assert result.returncode in (1, 2), result.stdout + result.stderr  # oras: at preflight; built-in: when planning
    output = result.stdout + result.stderr
    assert "token realm over plain HTTP on another host (http://auth.remote.example/token); refused" in output
    assert PASSWORD not in result.stdout + result.stderr
    assert not (project_copy / "packs.lock.json").exists()


@pytest.mark.parametrize("token", ["tok\nen-1234567890", "tok\r\nX-Injected: 1-abcdef", "tok\ten-abcdef1234"])
def test_a_token_with_control_characters_is_refused_and_never_shown(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, token: str
) -> None:
    def service(req: BaseHTTPRequestHandler) -> None:
        reply(200, {"Content-Type": "application/json"}, json.dumps({"token": token}).encode())(req)

    with HostileServer(service) as realm, _bearer(f"http://{realm.host}/token") as registry:
        result = run_invoke(
            project_copy, "release", **env_for(registry.host, **client, OCI_USERNAME="u", OCI_PASSWORD=PASSWORD)
        )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "token with control characters" in output
    for part in (token, *token.split()):
        assert part not in output or len(part) < 4
    assert not (project_copy / "packs.lock.json").exists()


def test_a_password_outside_latin_1_logs_in(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, token_registry: Registry
) -> None:
    password = "pässwörd-Ωμέγα-密码"
    assert token_registry.token_server is not None
    token_registry.token_server.users[USER] = password
    env = env_for(token_registry.host, **client, OCI_USERNAME=USER, OCI_PASSWORD=password)
    result = run_invoke(project_copy, "release", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    token_registry.token_server.users[USER] = PASSWORD  # the independent read below logs in as the fixture
    digest = json.loads((project_copy / "packs.lock.json").read_text())["packs"][0]["digest"]
    assert token_registry.raw_manifest(REPO, "1.2.3").headers["Docker-Content-Digest"] == digest


# --- 4: a registry claiming a blob it threw away ---------------------------------------------------------


def test_a_registry_claiming_a_thrown_away_layer_fails_the_pack(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    proxy = FaultProxy(registry.port)
    try:
        env = env_for(proxy.host, **client)
        assert run_invoke(project_copy, "release", **env).returncode == 0
        layer = json.loads((project_copy / "packs.lock.json").read_text())["packs"][0]["gtpack_sha256"]
        (project_copy / "packs.lock.json").unlink()
        proxy.add(Rule("HEAD", rf"/blobs/{layer}$", "claim", times=None))
        result = run_invoke(project_copy, "release", **env)
    finally:
        proxy.close()
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"FAILED {PACK}: after the push, {REPO} says it serves blob" in result.stdout
    assert "0 bytes" in result.stdout
    assert not (project_copy / "packs.lock.json").exists()


# --- 7: a full disk after the registry has the pack -------------------------------------------------------

FULL_DISK = """
import errno, os
_fsync = os.fsync
_full = os.environ.get("FULL_DISK_UNDER", "/records/")
def fsync(fd):
    if _full in os.readlink(f"/proc/self/fd/{fd}"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return _fsync(fd)
os.fsync = fsync
"""


def test_a_full_disk_while_recording_says_what_is_published(
    client: dict[str, str], project_copy: Path, run_invoke_process: RunInvoke, registry: Registry, tmp_path: Path
) -> None:
    env = env_for(registry.host, **client)
    assert run_invoke_process(project_copy, "build", **env).returncode == 0
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(FULL_DISK)  # every record write now ends in ENOSPC, as a full disk
    result = run_invoke_process(project_copy, "push", **env, PYTHONPATH=str(hooks))
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith(f"FAILED {PACK}"))
    assert f"cannot write {project_copy}/dist/packs/records/{PACK}.published.json (No space left on device)" in line
    assert f"{registry.host}/{REPO}@sha256:" in line and "is already published" in line and "re-run" in line
    assert registry.raw_manifest(REPO, "1.2.3").status_code == 200
    again = run_invoke_process(project_copy, "release", **env)  # the disk has room again: the re-run completes it
    assert again.returncode == 0 and "already published" in again.stdout


# --- 2: the oras child never holds a credential on disk, and dies with its parent --------------------------


def test_kill_9_during_an_oras_upload_leaves_no_credential_and_no_oras(
    project_copy: Path, builder_bin: Path, basic_registry: Registry, tmp_path: Path, oras_bin: str
) -> None:
    proxy = FaultProxy(basic_registry.port)
    proxy.add(Rule("PUT", r"/blobs/uploads/", "stall", times=None, stall_seconds=30))
    home, scratch = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    scratch.mkdir()
    env = env_for(proxy.host, OCI_CLIENT="oras", ORAS_BIN=oras_bin, OCI_USERNAME=USER, OCI_PASSWORD=PASSWORD)
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", "release"],
        cwd=project_copy,
        env=clean_env(builder_bin, home, TMPDIR=str(scratch), **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(s[2] == "stall" for s in proxy.seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(s[2] == "stall" for s in proxy.seen), "the push never reached the stalled upload"
        assert children_running(f" {proxy.host}/"), "no oras command was uploading"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        deadline = time.monotonic() + 5
        while children_running(f" {proxy.host}/") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not children_running(f" {proxy.host}/"), "an oras process outlived its parent"
        assert files_holding(PASSWORD, home, project_copy, scratch) == []
    finally:
        proxy.close()
        if process.poll() is None:
            process.kill()


@pytest.fixture
def oras_bin() -> str:
    from .conftest import oras_path

    return oras_path()


# --- 10, 11: oras tells tampering from outages, and survives what the built-in client survives ----------


def test_a_registry_serving_another_manifest_is_a_mismatch(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry
) -> None:
    env = env_for(registry.host, **client)
    assert run_invoke(project_copy, "release", **env).returncode == 0
    digest = json.loads((project_copy / "packs.lock.json").read_text())["packs"][0]["digest"]
    hexdigest = digest.split(":")[1]
    [data] = (registry.folder / "storage").rglob(f"blobs/sha256/{hexdigest[:2]}/{hexdigest}/data")
    manifest = json.loads(data.read_bytes())
    manifest["annotations"]["org.opencontainers.image.version"] = "6.6.6"  # another manifest, same place
    data.write_bytes(json.dumps(manifest).encode())
    result = run_invoke(project_copy, "verify", **env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"MISMATCH {PACK}: " in result.stdout
    assert "failed after" not in result.stdout + result.stderr  # not retried as an outage


KINDS = [  # each kind of request of a push, failing once in turn
    Rule("HEAD", r"/blobs/sha256:", "status", status=503),
    Rule("POST", r"/blobs/uploads/(\?|$)", "status", status=429),
    Rule("PUT", r"/blobs/uploads/.", "status", status=500),
    Rule("HEAD", r"/manifests/", "status", status=503),
    Rule("PUT", r"/manifests/", "status", status=502),
]


@pytest.mark.parametrize("body", ["json", "html"], ids=["registry-json", "gateway-html"])
def test_each_kind_of_request_failing_once_is_survived(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry, body: str
) -> None:
    proxy = FaultProxy(registry.port)
    rules = [proxy.add(Rule(r.method, r.path, r.action, status=r.status, body=body)) for r in KINDS]
    try:
        result = run_invoke(project_copy, "release", **env_for(proxy.host, **client))
    finally:
        proxy.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert [rule.fired for rule in rules] == [1] * len(rules), "a fault did not fire: the test proves nothing"
    digest = json.loads((project_copy / "packs.lock.json").read_text())["packs"][0]["digest"]
    assert registry.raw_manifest(REPO, "1.2.3").headers["Docker-Content-Digest"] == digest


def test_a_token_expiring_during_the_upload_is_renewed(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, token_registry: Registry
) -> None:
    assert token_registry.token_server is not None
    proxy = FaultProxy(token_registry.port)
    challenge = (
        f'Bearer realm="{token_registry.token_server.url}",service="test-registry",'
        f'scope="repository:{REPO}:pull,push",error="invalid_token"'
    )
    expired = proxy.add(
        Rule("PUT", r"/blobs/uploads/.", "status", status=401, body="json", headers={"WWW-Authenticate": challenge})
    )
    try:
        env = env_for(proxy.host, **client, OCI_USERNAME=USER, OCI_PASSWORD=PASSWORD)
        result = run_invoke(project_copy, "release", **env)
    finally:
        proxy.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert expired.fired == 1
    digest = json.loads((project_copy / "packs.lock.json").read_text())["packs"][0]["digest"]
    assert token_registry.raw_manifest(REPO, "1.2.3").headers["Docker-Content-Digest"] == digest


class ScriptedCommands:
    """Stands in for the command runner only: each oras command ends as the next scripted stderr says
    (lines the real oras 1.3.3 printed behind the fault proxy); the clock is driven, nothing sleeps."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        self.started = 0

    def run(self, argv: list[str], **_: object) -> Completed:
        self.started += 1
        error = self.errors.pop(0) if self.errors else ""
        return Completed(1 if error else 0, b"", error, False)


HOST = "127.0.0.1:5000"
ONE_FAULT_EACH = [
    f'Error response from registry: HEAD "http://{HOST}/v2/a/b/blobs/sha256:ab": response status code 503: '
    "Service Unavailable",
    "Error response from registry: toomanyrequests: injected 429",
    f'Error from destination registry for "{HOST}/a/b:1.0": unknown: injected 500',
    f'Error response from registry: HEAD "http://{HOST}/v2/a/b/manifests/sha256:cd": response status code 502: '
    "Bad Gateway",
    "Error response from registry: unavailable: injected 503",
]


def test_one_fault_on_each_request_kind_does_not_exhaust_an_oras_command() -> None:
    from .test_retry import FakeClock

    clock = FakeClock()
    commands = ScriptedCommands(list(ONE_FAULT_EACH))
    config = PrivateRegistryConfig(HOST, None)
    try:
        reader = HttpTransport(HOST, None, True)
        policy = RetryPolicy(clock=clock)
        oras = OrasTransport("oras", HOST, config, None, True, commands, {}, Redactor(), policy, reader=reader)  # type: ignore[arg-type]
        oras._run(["cp", "layout:1.0", f"{HOST}/a/b:1.0"], "copying", timeout=16.0)
    finally:
        config.remove()
    assert commands.started == len(ONE_FAULT_EACH) + 1
    assert clock.now < RetryPolicy().total_seconds  # within the time budget that bounds it


def test_a_docker_config_that_is_a_fifo_or_device_is_refused(tmp_path: Path) -> None:
    from pack_publisher.registry.credentials import _from_docker_config
    from pack_publisher.runtime.errors import ConfigError

    from .conftest import runner

    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "a FIFO"), (Path("/dev/zero"), "a character device")):
        with pytest.raises(ConfigError, match=f"DOCKER_CONFIG: {path} is {kind}, not a regular file"):
            _from_docker_config(runner(), path, "127.0.0.1:5000")


def test_the_oras_config_lives_in_memory_on_linux(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pack_publisher.registry.credentials import Credentials
    from pack_publisher.runtime.redact import SecretStr

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    config = PrivateRegistryConfig(HOST, Credentials("bot", SecretStr(PASSWORD), "test"))
    try:
        assert config.folder is None and str(config.path).startswith("/dev/fd/")
        assert json.loads(config.path.read_text())["auths"][HOST]["auth"]  # what oras reads through the path
        assert config.pass_fds and not os.get_inheritable(config.pass_fds[0])  # handed to oras commands alone
        assert list(tmp_path.iterdir()) == []  # nothing on a disk
    finally:
        config.remove()
    assert config.pass_fds == ()


def test_the_fallback_folder_of_a_killed_run_is_swept_by_the_next(tmp_path: Path) -> None:
    from pack_publisher.registry.credentials import CONFIG_PREFIX
    from pack_publisher.runtime.cleanup import sweep_stale

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"{CONFIG_PREFIX}{dead.pid}-abc"
    live = tmp_path / f"{CONFIG_PREFIX}{os.getpid()}-def"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "config.json").write_text('{"auths": {}}')
    sweep_stale(tmp_path, CONFIG_PREFIX)
    assert not stale.exists()
    assert live.exists()


def test_a_full_disk_while_writing_the_lockfile_says_what_is_published(
    client: dict[str, str], project_copy: Path, run_invoke_process: RunInvoke, registry: Registry, tmp_path: Path
) -> None:
    env = env_for(registry.host, **client)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(FULL_DISK)
    result = run_invoke_process(
        project_copy, "release", **env, PYTHONPATH=str(hooks), FULL_DISK_UNDER="/.packs.lock.json."
    )
    assert result.returncode == 2
    error = last_error(result)
    assert error.startswith(f"error: LOCK_FILE: cannot write {project_copy}/packs.lock.json (No space left on device)")
    assert f"already published: {registry.host}/{REPO}@sha256:" in error and "re-run `invoke lock`" in error
    assert not (project_copy / "packs.lock.json").exists()
    again = run_invoke_process(project_copy, "lock", **env)
    assert again.returncode == 0, again.stdout + again.stderr
    digest = json.loads((project_copy / "packs.lock.json").read_text())["packs"][0]["digest"]
    assert registry.raw_manifest(REPO, "1.2.3").headers["Docker-Content-Digest"] == digest


def test_a_full_disk_while_writing_a_manifest_at_build(
    project_copy: Path, run_invoke_process: RunInvoke, registry: Registry, tmp_path: Path
) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(FULL_DISK)
    env = env_for(registry.host, PYTHONPATH=str(hooks), FULL_DISK_UNDER=f"/.{PACK}.manifest.json.")
    result = run_invoke_process(project_copy, "release", **env)
    assert result.returncode == 1
    assert last_error(result) == (
        f"error: cannot write {project_copy}/dist/packs/{PACK}.manifest.json (No space left on device); "
        "nothing was published: free space and re-run"
    )
    assert registry.storage_files() == 0


@pytest.mark.parametrize("opt_in", [False, True], ids=["refused", "opted-in"])
def test_the_plain_http_credentials_opt_in_covers_a_realm_elsewhere(opt_in: bool) -> None:
    """The control: with OCI_PLAIN_HTTP_CREDENTIALS=1 the same realm is asked, with UTF-8 credentials."""
    import base64

    from pack_publisher.registry.auth import Authenticator
    from pack_publisher.registry.credentials import Credentials
    from pack_publisher.runtime.errors import ConfigError
    from pack_publisher.runtime.redact import SecretStr

    asked: list[dict[str, object]] = []

    def get(url: str, **kwargs: object) -> object:
        asked.append({"url": url, **kwargs})
        raise ConnectionRefusedError("not really sent")

    creds = Credentials("üser", SecretStr("pässwörd"), "test")
    auth = Authenticator("127.0.0.1:5000", creds, False, get, plain_http_credentials=opt_in)
    challenge = 'Bearer realm="http://auth.remote.example/token",service="s"'
    if not opt_in:
        with pytest.raises(ConfigError, match="token realm over plain HTTP on another host"):
            auth.answer(challenge, "repository:a:pull")
        assert asked == []
        return
    with pytest.raises(Exception, match="token service unreachable"):
        auth.answer(challenge, "repository:a:pull")
    [request] = asked
    expected = "Basic " + base64.b64encode("üser:pässwörd".encode()).decode()
    assert request["headers"] == {"Authorization": expected}
