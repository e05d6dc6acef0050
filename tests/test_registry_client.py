"""The built-in client: streaming memory, retry bounds, and failures that read as one clear line."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pack_publisher.errors import PublisherError
from pack_publisher.registry_client import RegistryClient, RetryPolicy, Transient, parse_challenge

from .conftest import PROJECT, RunInvoke
from .registries import Registry, free_port

SIXTY_MB = 60 * 1024 * 1024


def test_large_pack_streams_with_flat_memory(registry: Registry, tmp_path: Path) -> None:
    """A 60 MB layer is pushed from a child process whose peak RSS grows far less than the file."""
    blob = tmp_path / "big.gtpack"
    with blob.open("wb") as fh:
        for i in range(60):
            fh.write(hashlib.sha256(str(i).encode()).digest() * (1024 * 1024 // 32))
    script = textwrap.dedent(
        f"""
        import hashlib, json, resource
        from pathlib import Path
        from pack_publisher.artifact import compose
        from pack_publisher.transport import PushRequest, PythonTransport
        blob = Path({str(blob)!r})
        sha = hashlib.sha256()
        with blob.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                sha.update(chunk)
        art = compose(sha.hexdigest(), blob.stat().st_size, blob.name, {{}})
        transport = PythonTransport({registry.host!r}, None, True)
        transport.resolve("acme/big", "missing")  # warm up imports and the connection pool
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = transport.push(PushRequest("acme/big", ["1.0.0"], blob, art.layer_digest, art.layer_size,
                                         art.manifest, art.digest))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"before_kb": before, "after_kb": after, "digest": out.digest,
                          "expected": art.digest, "layer": art.layer_digest}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=PROJECT)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["digest"] == report["expected"]
    growth_mb = (report["after_kb"] - report["before_kb"]) / 1024
    print(f"peak RSS growth {growth_mb:.1f} MB")
    assert growth_mb < 20, f"peak RSS grew by {growth_mb:.0f} MB while pushing a 60 MB file"
    assert registry.raw_blob_sha256("acme/big", report["layer"]) == report["layer"]


def test_retry_honours_retry_after_and_succeeds() -> None:
    slept: list[float] = []
    client = RegistryClient("r.example", None, False, RetryPolicy(attempts=5), sleep=slept.append)
    calls = iter([Transient("503", retry_after=2.0), Transient("timed out"), "done"])

    def attempt() -> str:
        outcome = next(calls)
        if isinstance(outcome, Transient):
            raise outcome
        return outcome

    assert client._retrying("pushing", attempt) == "done"
    assert slept[0] == 2.0
    assert 0.25 <= slept[1] <= 1.0  # backoff with jitter: base 0.5 s doubled, times 0.5..1


def test_retry_gives_up_after_its_attempts() -> None:
    slept: list[float] = []
    client = RegistryClient("r.example", None, False, RetryPolicy(attempts=3), sleep=slept.append)

    def attempt() -> None:
        raise Transient("HTTP 503 (text/html body, not a registry error)")

    with pytest.raises(PublisherError) as info:
        client._retrying("uploading blob sha256:abc", attempt)
    assert len(slept) == 2
    assert info.value.message.startswith("r.example: uploading blob sha256:abc failed after 3 attempt(s)")
    assert info.value.message.endswith("HTTP 503 (text/html body, not a registry error)")


def test_retry_stops_at_its_time_budget() -> None:
    client = RegistryClient("r.example", None, False, RetryPolicy(attempts=50, total_seconds=5), sleep=lambda _: None)

    def attempt() -> None:
        raise Transient("429 TOOMANYREQUESTS", retry_after=60)

    with pytest.raises(PublisherError, match="failed after 1 attempt"):
        client._retrying("pushing", attempt)


def test_parse_challenge() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull"'
    )
    assert scheme == "bearer"
    assert params == {"realm": "https://ghcr.io/token", "service": "ghcr.io", "scope": "repository:a/b:pull"}


def test_unreachable_registry_fails_fast_and_clearly(project_copy: Path, run_invoke: RunInvoke) -> None:
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = run_invoke(
        project_copy, "release", OCI_REGISTRY=host, OCI_ORG="acme", PACK_VERSION="1.0.0", OCI_CLIENT="python"
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1
    assert f"{host}: reading manifest acme/greentic-packs/messaging-provider-bundle:1.0.0 failed after" in failed[0]
    assert "connection failed" in failed[0]
    assert elapsed < 60
    assert not (project_copy / "packs.lock.json").exists()


def test_plain_http_only_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    from pack_publisher.settings import publish_options

    monkeypatch.delenv("OCI_PLAIN_HTTP", raising=False)
    options = publish_options()
    assert options.uses_plain_http("localhost:5000") and options.uses_plain_http("127.0.0.1:5000")
    assert not options.uses_plain_http("ghcr.io") and not options.uses_plain_http("registry.local:5000")
    monkeypatch.setenv("OCI_PLAIN_HTTP", "1")
    assert publish_options().uses_plain_http("registry.local:5000")
