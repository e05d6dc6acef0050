"""The builder wrapper, run against the stand-in that follows the real CLI contract."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pack_publisher.runtime.errors import ConfigError, PublisherError
from pack_publisher.sources import builder

from .conftest import STANDINS, make_executable, runner


@pytest.fixture
def staged(tmp_path: Path) -> Path:
    folder = tmp_path / "stage" / "demo"
    (folder / "flows").mkdir(parents=True)
    (folder / "pack.yaml").write_text("pack_id: demo\nversion: 1.0.0\nkind: provider\npublisher: G\n")
    (folder / "flows" / "main.ygtc").write_text("id: main\n")
    return folder


def test_find_builder_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(ConfigError, match=r"builder was not found .* `invoke tools --tool greentic-pack`"):
        builder.find_builder(None, os.environ["PATH"])
    packc = make_executable(bin_dir / "packc", STANDINS / "greentic_pack.py")
    assert builder.find_builder(None, os.environ["PATH"]) == str(packc)
    current = make_executable(bin_dir / "greentic-pack", STANDINS / "greentic_pack.py")
    assert builder.find_builder(None, os.environ["PATH"]) == str(current)
    assert builder.find_builder(str(packc), os.environ["PATH"]) == str(packc)
    with pytest.raises(ConfigError, match=r"PACKC / PACKC_BIN: '/nowhere/packc' is not an executable file"):
        builder.find_builder("/nowhere/packc", os.environ["PATH"])


def test_build_contract(builder_bin: Path, staged: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "argv.log"
    monkeypatch.setenv("FAKE_GREENTIC_PACK_LOG", str(log))
    out = tmp_path / "out" / "demo.gtpack"
    out.parent.mkdir()
    before = (staged / "pack.yaml").read_text()
    builder.build_gtpack(runner(), str(builder_bin / "greentic-pack"), "demo", staged, out)
    assert out.is_file()
    argv = json.loads(log.read_text())
    assert argv == ["build", "--in", str(staged.resolve()), "--gtpack-out", str(out.resolve()), "--no-update"]
    assert (staged / "pack.yaml").read_text() == before  # --no-update: the builder did not rewrite it


def test_build_failure_shows_stderr_tail(
    builder_bin: Path, staged: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_GREENTIC_PACK_MODE", "fail")
    with pytest.raises(PublisherError) as info:
        builder.build_gtpack(runner(), str(builder_bin / "greentic-pack"), "demo", staged, tmp_path / "demo.gtpack")
    first, *rest = info.value.message.splitlines()
    assert first == "pack 'demo': builder greentic-pack failed (exit 1):"
    assert rest[-1].strip() == "Error: component `missing` referenced by flow `main` was not found"


def test_build_without_output(builder_bin: Path, staged: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_GREENTIC_PACK_MODE", "no-output")
    stale = tmp_path / "demo.gtpack"
    stale.write_bytes(b"from an earlier build")
    with pytest.raises(PublisherError, match=r"the builder exited 0 but wrote no archive"):
        builder.build_gtpack(runner(), str(builder_bin / "greentic-pack"), "demo", staged, stale)
