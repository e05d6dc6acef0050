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

from pack_publisher.config.environment import options_of, read_environment
from testsupport.registries import Registry, free_port

from .conftest import PROJECT, RunInvoke

SIXTY_MB = 60 * 1024 * 1024


def test_large_pack_streams_with_flat_memory(registry: Registry, tmp_path: Path) -> None:
    """A 60 MB layer is pushed from a child process whose peak RSS grows far less than the file."""
    blob = tmp_path / "big.gtpack"
    with blob.open("wb") as fh:
        for i in range(60):
            fh.write(hashlib.sha256(str(i).encode()).digest() * (1024 * 1024 // 32))
    script = textwrap.dedent(
        f"""
        import json, resource
        from pathlib import Path
        from pack_publisher.oci.manifest import GTPACK_MEDIA_TYPE, compose
        from pack_publisher.registry.verified import VerifiedRegistry
        from pack_publisher.oci.descriptor import file_descriptor
        from pack_publisher.registry.transport import PushRequest
        from pack_publisher.registry.http import HttpTransport
        blob = Path({str(blob)!r})
        art = compose(file_descriptor(GTPACK_MEDIA_TYPE, blob), blob.name, {{}})
        registry = VerifiedRegistry(HttpTransport({registry.host!r}, None, True), {registry.host!r})
        registry.resolve("acme/big", "missing")  # warm up imports and the connection pool
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        request = PushRequest("acme/big", ["1.0.0"], blob, art)
        registry.write(request)
        registry.check_landed(request)  # read back and checked
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"before_kb": before, "after_kb": after, "layer": art.layer.digest}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=PROJECT)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    growth_mb = (report["after_kb"] - report["before_kb"]) / 1024
    print(f"peak RSS growth {growth_mb:.1f} MB")
    assert growth_mb < 20, f"peak RSS grew by {growth_mb:.0f} MB while pushing a 60 MB file"
    assert registry.raw_blob_sha256("acme/big", report["layer"]) == report["layer"]


@pytest.mark.slow
def test_unreachable_registry_fails_fast_and_clearly(project_copy: Path, run_invoke_process: RunInvoke) -> None:
    """The real bound, so a real child with the real retry waits."""
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = run_invoke_process(
        project_copy, "release", OCI_REGISTRY=host, OCI_ORG="acme", PACK_VERSION="1.0.0", OCI_CLIENT="python"
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1
    assert f"{host}: resolving acme/greentic-packs/messaging-provider-bundle:1.0.0 failed after" in failed[0]
    assert "connection failed" in failed[0]
    assert elapsed < 60
    assert not (project_copy / "packs.lock.json").exists()


def test_plain_http_only_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCI_PLAIN_HTTP", raising=False)
    options = options_of(read_environment())
    assert options.uses_plain_http("localhost:5000") and options.uses_plain_http("127.0.0.1:5000")
    assert not options.uses_plain_http("ghcr.io") and not options.uses_plain_http("registry.local:5000")
    monkeypatch.setenv("OCI_PLAIN_HTTP", "1")
    assert options_of(read_environment()).uses_plain_http("registry.local:5000")
