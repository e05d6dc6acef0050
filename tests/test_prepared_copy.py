"""A one-pack oras push starts its `oras cp` before the plan, held at a gate (its layout's index is a FIFO):
what that copy may do before it is let through (nothing), and what becomes of it when it is not wanted or
ends early. The real oras and real registries; every other oras publishing test of a one-pack project goes
through the same gate."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from pack_publisher.oci import layout
from pack_publisher.registry.credentials import PrivateRegistryConfig
from pack_publisher.registry.http import HttpTransport
from pack_publisher.registry.oras import LAYOUT_PREFIX, OrasTransport
from pack_publisher.registry.transport import LikelyPush
from pack_publisher.runtime.redact import Redactor
from testsupport.fault_proxy import FaultProxy
from testsupport.registries import Registry

from .conftest import RunInvoke, oras_path, runner

PACK = "messaging-provider-bundle"
REPO = f"acme/greentic-packs/{PACK}"
ECHOED_COPY = " cp -r --from-oci-layout "


def env_for(registry: Registry, oras: str, **extra: str) -> dict[str, str]:
    target = {"OCI_REGISTRY": registry.host, "OCI_ORG": "acme", "PACK_VERSION": "1.2.3"}
    return {**target, "OCI_CLIENT": "oras", "ORAS_BIN": oras, **extra}


def catalog(registry: Registry) -> list[str]:
    return registry.raw_get("/v2/_catalog").json()["repositories"] or []


def processes_naming(text: str) -> list[int]:
    """The processes whose command line holds `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue  # gone meanwhile
    return found


def wait_for_reader(gate: Path, deadline: float = 10.0) -> int:
    """A write end of `gate` once a reader holds it (the held oras reached its gate); never written to here."""
    give_up = time.monotonic() + deadline
    while True:
        try:
            return os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > give_up:
                raise
        time.sleep(0.002)


def test_a_held_copy_sends_nothing_and_is_stopped_when_not_wanted(registry: Registry, tmp_path: Path) -> None:
    """oras at its gate has started (it holds the FIFO) and made no request at all; closing the transport ends it."""
    proxy = FaultProxy(registry.port)  # every request it is asked, whatever it is
    config = PrivateRegistryConfig(proxy.host, None)
    reader = HttpTransport(proxy.host, None, True)
    transport = OrasTransport(
        oras_path(), proxy.host, config, None, True, runner(), dict(os.environ), Redactor([]), reader=reader
    )
    try:
        transport.prepare(LikelyPush(REPO, ["1.2.3"], tmp_path, with_referrer=True))
        (work,) = tmp_path.glob(f"{LAYOUT_PREFIX}*")
        writer = wait_for_reader(work / "layout" / layout.INDEX)  # kept open: oras waits for its index
        try:
            assert processes_naming(str(work)), "no oras held at the gate"
            assert proxy.seen == []
            transport.close()
        finally:
            os.close(writer)
        assert not work.exists()
        assert not processes_naming(str(work))  # killed and reaped
        assert proxy.seen == []
    finally:
        proxy.close()


def logging_oras(folder: Path, *, fail_first_copy: bool = False, held_stays_away: bool = False) -> tuple[Path, Path]:
    """An oras that logs, for each `cp`, whether its layout's index was still a gate (a FIFO) when it started,
    then runs the real one; `fail_first_copy`: its first `cp` exits at once instead (before its gate);
    `held_stays_away`: a held one does not come to its gate until another `cp` has started (it then logs
    "late" and copies), and that other one gives it half a second to do so."""
    log, shim = folder / "oras.log", folder / "oras"
    fail = f"[ ! -e {folder}/once ] && touch {folder}/once && exit 3\n" if fail_first_copy else ""
    away = (
        f'if [ -p "$index" ]; then while [ ! -e {folder}/usual ]; do sleep 0.02; done; echo late >> {log}; '
        f"else touch {folder}/usual; sleep 0.5; fi\n"
    )
    away = away if held_stays_away else ""
    shim.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = cp ]; then\n'
        '  for a in "$@"; do case "$a" in */layout:*) index="${a%:*}/index.json";; esac; done\n'
        f'  if [ -p "$index" ]; then echo gate >> {log}; else echo file >> {log}; fi\n'
        f"  {fail}"
        f"  {away}"
        "fi\n"
        f'exec {oras_path()} "$@"\n'
    )
    shim.chmod(0o755)
    return shim, log


def test_a_one_pack_push_lets_its_held_copy_through(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry, tmp_path: Path
) -> None:
    """The copy started before the plan (at its gate) is the one that publishes, echoed once, when let through."""
    shim, log = logging_oras(tmp_path)
    env = env_for(registry, str(shim), CI="true")
    assert run_invoke(project_copy, "build", **env).returncode == 0
    pushed = run_invoke(project_copy, "push", **env)
    assert pushed.returncode == 0, pushed.stderr
    assert log.read_text().split() == ["gate"]
    lines = pushed.stdout.splitlines()
    copies = [i for i, line in enumerate(lines) if ECHOED_COPY in line]
    plan = next(i for i, line in enumerate(lines) if line.startswith(f"plan {registry.host}/{REPO}:1.2.3: publish"))
    assert len(copies) == 1 and copies[0] > plan, pushed.stdout
    served = registry.raw_manifest(REPO, "1.2.3").headers["Docker-Content-Digest"]
    assert f"digest={served}" in pushed.stdout
    assert sorted(registry.raw_get(f"/v2/{REPO}/tags/list").json()["tags"]) == ["1.2.3", served.replace(":", "-")]
    assert not list((project_copy / "dist" / "packs").glob(f"{LAYOUT_PREFIX}*"))


def test_a_held_copy_is_stopped_when_the_pack_is_already_published(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry, tmp_path: Path
) -> None:
    """Started before the plan, stopped at its gate once the plan says there is nothing to copy: not echoed,
    and nothing but reads reaches the registry."""
    shim, log = logging_oras(tmp_path)
    proxy = FaultProxy(registry.port)
    try:
        env = env_for(registry, str(shim), CI="true", OCI_REGISTRY=proxy.host)
        assert run_invoke(project_copy, "build", **env).returncode == 0
        assert run_invoke(project_copy, "push", **env).returncode == 0
        proxy.seen.clear()
        again = run_invoke(project_copy, "push", **env)
        assert again.returncode == 0, again.stderr
        assert log.read_text().split() == ["gate", "gate"]  # the second started too
        assert f"already published {proxy.host}/{REPO}:1.2.3" in again.stdout
        assert ECHOED_COPY not in again.stdout
        assert proxy.seen and {method for method, _, _ in proxy.seen} <= {"GET", "HEAD"}, proxy.seen
        assert not list((project_copy / "dist" / "packs").glob(f"{LAYOUT_PREFIX}*"))
        assert not processes_naming(str(project_copy / "dist" / "packs" / LAYOUT_PREFIX))
    finally:
        proxy.close()


def test_a_held_copy_that_ends_before_its_gate_is_run_again(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry, tmp_path: Path
) -> None:
    """An oras that exits before it reads its index costs the head start, not the push: a new `cp` runs."""
    shim, log = logging_oras(tmp_path, fail_first_copy=True)
    env = env_for(registry, str(shim))
    assert run_invoke(project_copy, "build", **env).returncode == 0
    pushed = run_invoke(project_copy, "push", **env)
    assert pushed.returncode == 0, pushed.stderr
    assert log.read_text().split() == ["gate", "file"]
    assert registry.raw_manifest(REPO, "1.2.3").status_code == 200


@pytest.mark.slow  # waits out a real 1 s timeout
def test_a_held_copy_late_to_its_gate_is_stopped_before_the_usual_copy(
    project_copy: Path, run_invoke: RunInvoke, registry: Registry, tmp_path: Path
) -> None:
    """One that has not reached its gate when the push gives up waiting (the request timeout, 1 s here) is
    killed then, so it cannot copy beside the `cp` that replaces it, unechoed and without a deadline."""
    shim, log = logging_oras(tmp_path, held_stays_away=True)
    env = env_for(registry, str(shim), OCI_TIMEOUT="1", CI="true")
    assert run_invoke(project_copy, "build", **env).returncode == 0
    pushed = run_invoke(project_copy, "push", **env)
    assert pushed.returncode == 0, pushed.stderr
    assert log.read_text().split() == ["gate", "file"]  # the held one never woke to log "late"
    assert sum(ECHOED_COPY in line for line in pushed.stdout.splitlines()) == 1
    assert registry.raw_manifest(REPO, "1.2.3").status_code == 200


class FakeReader:
    def __init__(self, ended: bool) -> None:
        self.is_ended = ended
        self.asked = 0
        self.announced = 0

    def ended(self) -> bool:
        self.asked += 1
        return self.is_ended

    def announce(self) -> None:
        self.announced += 1


def test_the_gate_hands_over_the_index_whole(tmp_path: Path) -> None:
    layout.start_layout(tmp_path / "l", gated=True)
    index = b'{"schemaVersion": 2, "manifests": []}' * 3000  # more than a pipe holds at once
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append((tmp_path / "l" / layout.INDEX).read_bytes()))
    reader.start()
    waiting = FakeReader(ended=False)
    assert layout.open_gate(tmp_path / "l", index, waiting, 10.0)
    reader.join()
    assert got == [index]
    assert waiting.announced == 1
    layout.write_index(tmp_path / "l", index)
    assert (tmp_path / "l" / layout.INDEX).is_file()


def test_the_gate_gives_up_when_its_reader_ended(tmp_path: Path) -> None:
    """Without waiting out its time (no bound here: only `ended` can end the wait), and without announcing it."""
    layout.start_layout(tmp_path / "l", gated=True)
    gone = FakeReader(ended=True)
    assert not layout.open_gate(tmp_path / "l", b"{}", gone, float("inf"))
    assert gone.asked == 1 and gone.announced == 0


def test_the_gate_gives_up_at_its_time(tmp_path: Path) -> None:
    layout.start_layout(tmp_path / "l", gated=True)
    late = FakeReader(ended=False)
    assert not layout.open_gate(tmp_path / "l", b"{}", late, 0.0)
    assert late.announced == 0
