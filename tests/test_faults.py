"""Registry faults injected by a proxy in front of a real registry: transient ones are survived,
persistent ones fail in bounded time with one clear line, and nothing false is ever recorded."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pack_publisher.oci.referrers import INDEX_MEDIA_TYPE, referrers_tag
from testsupport.fault_proxy import FaultProxy, Rule
from testsupport.registries import Registry, free_port

from .conftest import RunInvoke, clean_env, git
from .test_release_proofs import CANARY, files_holding

PACK = "messaging-provider-bundle"
REPO = f"acme/greentic-packs/{PACK}"


@pytest.fixture
def proxy(registry: Registry) -> Iterator[FaultProxy]:
    running = FaultProxy(registry.port)
    yield running
    running.close()


def env_for(proxy: FaultProxy, **extra: str) -> dict[str, str]:
    return {"OCI_REGISTRY": proxy.host, "OCI_ORG": "acme", "PACK_VERSION": "1.2.3", **extra}


def assert_registry_consistent(registry: Registry, project: Path) -> None:
    """Every tag serves a manifest whose blobs exist; a lockfile names only digests the registry serves."""
    catalog = registry.raw_get("/v2/_catalog").json()["repositories"] or []
    for repository in catalog:
        for tag in registry.raw_get(f"/v2/{repository}/tags/list").json().get("tags") or []:
            if tag.startswith("sha256-"):  # a referrers index (the SBOM's): every referrer it lists is whole
                index = registry.raw_manifest(repository, tag, INDEX_MEDIA_TYPE)
                assert index.status_code == 200
                referrers = [m["digest"] for m in index.json()["manifests"]]
            else:
                referrers = [tag]
            for reference in referrers:
                manifest = registry.raw_manifest(repository, reference)
                assert manifest.status_code == 200
                doc = manifest.json()
                for blob in [doc["config"], *doc["layers"]]:
                    assert registry.raw_head(f"/v2/{repository}/blobs/{blob['digest']}") == 200, (tag, blob)
    lock = project / "packs.lock.json"
    if lock.exists():
        for entry in json.loads(lock.read_text())["packs"]:
            repository, tag = entry["oci_ref"].split("/", 1)[1].rsplit(":", 1)
            assert registry.raw_manifest(repository, tag).headers["Docker-Content-Digest"] == entry["digest"]
            if entry.get("sbom_digest"):
                index = registry.raw_manifest(repository, referrers_tag(entry["digest"]), INDEX_MEDIA_TYPE)
                assert entry["sbom_digest"] in [m["digest"] for m in index.json()["manifests"]]


TRANSIENT = [
    Rule("POST", r"/blobs/uploads/(\?|$)", "status", times=2, status=502),
    Rule("PUT", r"/blobs/uploads/", "status", times=2, status=500),
    Rule("PUT", r"/blobs/uploads/", "reset", times=2),
    Rule("PUT", r"/manifests/1\.2\.3$", "status", times=2, status=503),
    Rule("GET", r"/manifests/", "status", times=2, status=504),
    Rule("HEAD", r"/blobs/", "status", times=2, status=429, retry_after="1"),
    Rule("GET", r"/manifests/", "cut", times=2),
    Rule("PUT", r"/manifests/1\.2\.3$", "bad-digest", times=2),
    Rule("PUT", r"/blobs/uploads/", "stall", times=1, stall_seconds=4),
    Rule("HEAD", r"/manifests/", "status", times=2, status=503),
    Rule("HEAD", r"/manifests/", "reset", times=2),
    Rule("HEAD", r"/blobs/", "reset", times=2),
    Rule("PUT", r"/manifests/1\.2\.3$", "status", times=2, status=429, retry_after="1"),
    Rule("HEAD", r"/manifests/", "stall", times=1, stall_seconds=4),
]


@pytest.mark.parametrize("rule", TRANSIENT, ids=lambda r: f"{r.method}-{r.path.split('/')[1]}-{r.action}-{r.status}")
def test_transient_fault_is_survived(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry, proxy: FaultProxy, rule: Rule
) -> None:
    dry = run_invoke(project_copy, "release", "--dry-run", **env_for(proxy, **client))
    predicted = json.loads((project_copy / "packs.lock.json").read_text())["packs"][0]["expected_digest"]
    assert dry.returncode == 0
    proxy.add(Rule(**{**rule.__dict__, "fired": 0}))
    result = run_invoke(project_copy, "release", **env_for(proxy, **client, OCI_TIMEOUT="2"))
    assert result.returncode == 0, result.stdout + result.stderr
    # oras-go refuses a PUT answer with a wrong Docker-Content-Digest (so it is retried); the built-in client
    # does not need to: it proves the push by reading the tag back, which the fault does not touch
    expected = 1 if rule.action == "bad-digest" and client["OCI_CLIENT"] == "python" else rule.times
    assert proxy.rules[0].fired == expected, "the fault did not fire as planned: the test proves nothing"
    digest = json.loads((project_copy / "packs.lock.json").read_text())["packs"][0]["digest"]
    assert digest == predicted
    assert registry.raw_manifest(REPO, "1.2.3").headers["Docker-Content-Digest"] == predicted
    assert_registry_consistent(registry, project_copy)


def test_a_large_blob_is_not_sent_again_to_a_registry_that_ignores_mount(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry, proxy: FaultProxy
) -> None:
    """ECR, unless blob mounting is on, opens an upload for a blob it holds: a large one is asked for
    before its bytes go (the small ones are sent again, cheaper than asking)."""
    assets = project_copy / "packs" / PACK / "assets"
    assets.mkdir(exist_ok=True)
    (assets / "large.bin").write_bytes(os.urandom(5 * 1024 * 1024))
    git(project_copy, "add", "-A")
    git(project_copy, "commit", "-qm", "a large asset")
    env = env_for(proxy, OCI_CLIENT="python")
    proxy.add(Rule("PUT", r"/manifests/", "status", times=None, status=503))
    first = run_invoke(project_copy, "release", **env)  # every blob goes up, no manifest does
    assert first.returncode == 1, first.stdout
    layer = json.loads((project_copy / "dist" / "packs" / f"{PACK}.manifest.json").read_text())["layers"][0]
    assert layer["size"] >= 4 * 1024 * 1024
    proxy.clear()
    proxy.add(Rule("POST", r"/blobs/uploads/\?mount=", "no-mount", times=None))
    proxy.seen.clear()
    again = run_invoke(project_copy, "release", **env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert [s for s in proxy.seen if s[2] == "no-mount"]  # the registry opened uploads instead of mounting
    sent = [s[1] for s in proxy.seen if s[0] == "PUT" and "/blobs/uploads/" in s[1]]
    assert sent and not [path for path in sent if layer["digest"].split(":")[1] in path]  # the small ones only
    assert [s for s in proxy.seen if s[0] == "DELETE" and "/blobs/uploads/" in s[1]]  # its session let go
    assert "(via built-in client, 1 blob(s) uploaded)" in again.stdout  # the empty config, sent again
    assert_registry_consistent(registry, project_copy)


@pytest.mark.slow  # oras-go backs off for real inside each oras command: about 30 s on oras
def test_persistent_error_fails_fast_with_one_line(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry, proxy: FaultProxy
) -> None:
    proxy.add(Rule("PUT", r"/manifests/", "status", times=None, status=503))
    started = time.monotonic()
    result = run_invoke(project_copy, "release", **env_for(proxy, **client))
    elapsed = time.monotonic() - started
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    if client["OCI_CLIENT"] == "python":
        assert line.startswith(
            f"FAILED {PACK}: {proxy.host}: uploading the manifest {REPO}:1.2.3 failed after 5 attempt(s)"
        )
        assert line.endswith("HTTP 503 (text/html body, not a registry error)")
    else:
        assert line.startswith(f"FAILED {PACK}: {proxy.host}: copying {REPO}:1.2.3 to the registry failed after")
        assert line.endswith("response status code 503: Service Unavailable")
    assert elapsed < 60
    assert not (project_copy / "packs.lock.json").exists()
    assert_registry_consistent(registry, project_copy)

    # the fault clears: a re-run sends no blob again (the first run's uploads went through, the SBOM's
    # document beside the pack's: the built-in client finds each by its mount, 201; oras by its HEAD),
    # then writes the manifests
    proxy.clear()
    proxy.seen.clear()
    again = run_invoke(project_copy, "release", **env_for(proxy, **client))
    assert again.returncode == 0, again.stdout + again.stderr
    entry = json.loads((project_copy / "packs.lock.json").read_text())["packs"][0]
    assert not [s for s in proxy.seen if s[0] == "PUT" and "/blobs/uploads/" in s[1]]
    started = [s[1] for s in proxy.seen if s[0] == "POST" and "/blobs/uploads/" in s[1]]
    assert all("?mount=sha256:" in path for path in started)  # none without a mount: nothing to upload
    assert not [s for s in proxy.seen if s[0] == "PATCH"]
    manifests = [s[1] for s in proxy.seen if s[0] == "PUT" and "/manifests/" in s[1]]
    pack, sbom, index = (
        f"/v2/{REPO}/manifests/{ref}" for ref in ("1.2.3", entry["sbom_digest"], referrers_tag(entry["digest"]))
    )
    if client["OCI_CLIENT"] == "python":
        assert "(via built-in client, 0 blob(s) uploaded)" in again.stdout
        assert started and len(manifests) == 3 and manifests[2] == index  # the tag and the referrer side by side
        assert sorted(manifests[:2]) == sorted([pack, sbom])  # (this registry keeps no referrers itself)
    else:  # one pack, no other waiting for its slot: `oras cp -r` puts the graph by digest, the tag last
        assert manifests == [f"/v2/{REPO}/manifests/{entry['digest']}", sbom, index, pack]
    assert_registry_consistent(registry, project_copy)


@pytest.mark.slow
def test_persistent_stall_fails_within_a_minute_with_defaults(
    client: dict[str, str], project_copy: Path, run_invoke_process: RunInvoke, registry: Registry, proxy: FaultProxy
) -> None:
    """The real bound, so a real child with the real retry waits: about 45 s."""
    proxy.add(Rule("GET", r"/manifests/1\.2\.3$", "stall", times=None, stall_seconds=40))
    started = time.monotonic()
    result = run_invoke_process(project_copy, "release", **env_for(proxy, **client))
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    # the read-back, on both transports (the oras transport reads through the built-in client)
    assert f"FAILED {PACK}: {proxy.host}: reading manifest {REPO}:1.2.3 failed after" in result.stdout
    assert "timed out" in result.stdout
    assert elapsed < 60, f"took {elapsed:.0f} s"
    assert not (project_copy / "packs.lock.json").exists()


def test_registry_answering_html(
    client: dict[str, str], project_copy: Path, run_invoke: RunInvoke, registry: Registry, proxy: FaultProxy
) -> None:
    proxy.add(Rule("HEAD", r"/manifests/", "html", times=None))
    proxy.add(Rule("GET", r"/manifests/", "html", times=None))
    result = run_invoke(project_copy, "release", **env_for(proxy, **client))
    assert result.returncode == 1
    assert (  # both transports read through the built-in client
        f"{proxy.host}: reading manifest {REPO}:1.2.3: the registry answered text/html that is not an OCI "
        "manifest (is this an OCI registry?)"
    ) in result.stdout
    assert registry.storage_files() == 0


def test_registry_answering_garbage(project_copy: Path, run_invoke: RunInvoke) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def answer() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.recv(65536)
            conn.sendall(b"\x00\x01 this is not HTTP at all \xff\r\n\r\n")
            conn.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    host = f"127.0.0.1:{server.getsockname()[1]}"
    try:
        result = run_invoke(
            project_copy, "release", OCI_REGISTRY=host, OCI_ORG="acme", PACK_VERSION="1.0.0", OCI_CLIENT="python"
        )
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    assert f"{host}: resolving" in line and "connection failed" in line


@pytest.mark.subprocess
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_during_a_push_records_nothing(
    stop: signal.Signals,
    client: dict[str, str],
    project_copy: Path,
    builder_bin: Path,
    registry: Registry,
    proxy: FaultProxy,
    tmp_path: Path,
) -> None:
    proxy.add(Rule("PUT", r"/blobs/uploads/", "stall", times=None, stall_seconds=60))
    home = tmp_path / "home"
    home.mkdir()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", "release"],
        cwd=project_copy,
        env=clean_env(
            builder_bin,
            home,
            TMPDIR=str(scratch),
            **env_for(proxy, **client, OCI_USERNAME="publisher", OCI_PASSWORD=CANARY),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not any(s[2] == "stall" for s in proxy.seen) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(s[2] == "stall" for s in proxy.seen), "the push never reached the stalled upload"
    interrupted = time.monotonic()
    process.send_signal(stop)
    stdout, stderr = process.communicate(timeout=20)
    assert time.monotonic() - interrupted < 5, "Ctrl-C did not stop the release promptly"
    assert process.returncode == (130 if stop == signal.SIGINT else 143)  # 128 + the signal, as shells report
    assert "error: interrupted; nothing more was recorded" in stderr
    assert "Traceback" not in stderr
    assert not (project_copy / "packs.lock.json").exists()
    assert not (project_copy / "dist" / "packs" / "records" / f"{PACK}.published.json").exists()
    assert registry.raw_manifest(REPO, "1.2.3").status_code == 404
    assert stdout.count("published") == 0
    # nothing outlives the run: no scratch folder (the oras registry config among them), no oras child
    assert list(scratch.iterdir()) == []
    assert files_holding(CANARY, home, project_copy / "dist", scratch) == []
    assert not list((project_copy / "dist" / "packs").glob(".oras-layout-*"))
    time.sleep(0.2)
    assert not children_running(f" {proxy.host}/"), "an oras process outlived Ctrl-C"  # its argv names the registry


def children_running(marker: str) -> list[str]:
    """Command lines of running processes that mention `marker` (e.g. the registry an oras command names)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if marker in text:
            found.append(text)
    return found


def test_free_port_is_closed() -> None:
    """The unreachable-registry tests rely on nothing listening on a fresh free port."""
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", free_port()), timeout=1):
        pass
