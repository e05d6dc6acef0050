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
from testsupport.registries import Registry

from .conftest import RunInvoke, oras_path, runner

PACK = "messaging-provider-bundle"
REPO = f"acme/greentic-packs/{PACK}"
ECHOED_COPY = " cp -r --from-oci-layout "


def env_for(registry: Registry, oras: str, **extra: str) -> dict[str, str]:
    return {"OCI_REGISTRY": registry.host, "OCI_ORG": "acme", "PACK_VERSION": "1.2.3", "OCI_CLIENT": "oras"} | {
        "ORAS_BIN": oras,
        **extra,
    }


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
    """oras at its gate has started (it holds the FIFO) and made no request; closing the transport ends it."""
    config = PrivateRegistryConfig(registry.host, None)
    reader = HttpTransport(registry.host, None, True)
    transport = OrasTransport(
        oras_path(), registry.host, config, None, True, runner(), dict(os.environ), Redactor([]), reader=reader
    )
    transport.prepare(LikelyPush(REPO, ["1.2.3"], tmp_path, with_referrer=True))
    (work,) = tmp_path.glob(f"{LAYOUT_PREFIX}*")
    writer = wait_for_reader(work / "layout" / layout.INDEX)  # kept open: oras waits for its index
    try:
        assert processes_naming(str(work)), "no oras held at the gate"
        assert catalog(registry) == []
        transport.close()
    finally:
        os.close(writer)
    assert not work.exists()
    assert not processes_naming(str(work))  # killed and reaped
    assert catalog(registry) == []


def logging_oras(folder: Path, *, fail_first_copy: bool = False) -> tuple[Path, Path]:
    """An oras that logs, for each `cp`, whether its layout's index was still a gate (a FIFO) when it started,
    then runs the real one; `fail_first_copy`: its first `cp` exits at once instead (before its gate)."""
    log, shim = folder / "oras.log", folder / "oras"
    fail = f"[ ! -e {folder}/once ] && touch {folder}/once && exit 3\n" if fail_first_copy else ""
    shim.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = cp ]; then\n'
        '  for a in "$@"; do case "$a" in */layout:*) index="${a%:*}/index.json";; esac; done\n'
        f'  if [ -p "$index" ]; then echo gate >> {log}; else echo file >> {log}; fi\n'
        f"  {fail}"
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
    """Started before the plan, stopped at its gate once the plan says there is nothing to copy: not echoed."""
    shim, log = logging_oras(tmp_path)
    env = env_for(registry, str(shim), CI="true")
    assert run_invoke(project_copy, "build", **env).returncode == 0
    assert run_invoke(project_copy, "push", **env).returncode == 0
    stored = registry.storage_files()
    again = run_invoke(project_copy, "push", **env)
    assert again.returncode == 0, again.stderr
    assert log.read_text().split() == ["gate", "gate"]  # the second started too
    assert f"already published {registry.host}/{REPO}:1.2.3" in again.stdout
    assert ECHOED_COPY not in again.stdout
    assert registry.storage_files() == stored
    assert not list((project_copy / "dist" / "packs").glob(f"{LAYOUT_PREFIX}*"))
    assert not processes_naming(str(project_copy / "dist" / "packs" / LAYOUT_PREFIX))


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


def test_the_gate_hands_over_the_index_whole(tmp_path: Path) -> None:
    layout.start_layout(tmp_path / "l", gated=True)
    index = b'{"schemaVersion": 2, "manifests": []}' * 3000  # more than a pipe holds at once
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append((tmp_path / "l" / layout.INDEX).read_bytes()))
    reader.start()
    assert layout.open_gate(tmp_path / "l", index, lambda: False, 10.0)
    reader.join()
    assert got == [index]
    layout.write_index(tmp_path / "l", index)
    assert (tmp_path / "l" / layout.INDEX).is_file()


@pytest.mark.parametrize("ended", [True, False], ids=["reader-ended", "reader-never-came"])
def test_the_gate_gives_up_without_its_reader(tmp_path: Path, ended: bool) -> None:
    layout.start_layout(tmp_path / "l", gated=True)
    assert not layout.open_gate(tmp_path / "l", b"{}", lambda: ended, 0.0)
