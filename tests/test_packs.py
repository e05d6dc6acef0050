"""Pack discovery, selection, pack.yaml parsing and the staged copy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from pack_publisher.runtime.errors import ConfigError, PublisherError
from pack_publisher.sources import packs

GOOD = "pack_id: demo\nversion: 0.1.0\nkind: provider\npublisher: Greentic\n"


def make_pack(root: Path, name: str, text: str = GOOD) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "pack.yaml").write_text(text)
    return folder


def select(root: Path, wanted: list[str] | None = None) -> list[packs.PackSource]:
    return packs.select(root, wanted, "acme/greentic-packs", root)


def error_of(root: Path, wanted: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        select(root, wanted)
    return info.value.message


def test_discovery_and_selection(tmp_path: Path) -> None:
    make_pack(tmp_path, "b-pack")
    make_pack(tmp_path, "a-pack")
    (tmp_path / "not-a-pack").mkdir()
    (tmp_path / "file.txt").write_text("x")
    assert packs.discover(tmp_path) == ["a-pack", "b-pack"]
    assert [p.name for p in select(tmp_path)] == ["a-pack", "b-pack"]
    assert [p.name for p in select(tmp_path, ["b-pack", "b-pack"])] == ["b-pack"]
    assert select(tmp_path, ["a-pack"])[0].meta.kind == "provider"


def test_unknown_pack_lists_known(tmp_path: Path) -> None:
    make_pack(tmp_path, "a-pack")
    assert error_of(tmp_path, ["nope"]) == "unknown pack 'nope'; known packs: a-pack"


def test_no_packs(tmp_path: Path) -> None:
    assert error_of(tmp_path).startswith(f"no packs found under {tmp_path}")


def test_missing_packs_dir(tmp_path: Path) -> None:
    assert error_of(tmp_path / "absent") == f"PACKS_DIR: {tmp_path / 'absent'} is not a directory"


@pytest.mark.parametrize("name", ["Upper", "with space", "-leading", "trailing-", "a..b", "ä"])
def test_invalid_folder_names(tmp_path: Path, name: str) -> None:
    make_pack(tmp_path, name)
    assert error_of(tmp_path).startswith(f"pack folder {name!r} is not a valid OCI repository name component")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "p/pack.yaml: is empty"),
        ("pack_id: [unclosed\n", "p/pack.yaml: invalid YAML at line 2"),
        ("- a\n- b\n", "p/pack.yaml: must be a YAML mapping of fields, not list"),
        ("version: 0.1.0\nkind: provider\npublisher: G\n", "p/pack.yaml: missing required field 'pack_id'"),
        ("pack_id: x\nversion: 0.1.0\npublisher: G\n", "p/pack.yaml: missing required field 'kind'"),
        ("pack_id: x\nversion: '1.0'\nkind: provider\npublisher: G\n", "p/pack.yaml: field 'version': '1.0' is not"),
        ("pack_id: x\nversion: 1.0.0\nkind: widget\npublisher: G\n", "p/pack.yaml: field 'kind': Input should be"),
    ],
)
def test_bad_pack_yaml(tmp_path: Path, text: str, expected: str) -> None:
    make_pack(tmp_path, "p", text)
    assert error_of(tmp_path).startswith(expected)


def test_pack_yaml_missing_in_selected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pack.yaml: missing$"):
        packs.load_meta(tmp_path / "pack.yaml", "pack.yaml")


def test_with_version_changes_only_the_value() -> None:
    text = "# header\npack_id: demo\nversion: 0.1.0   # placeholder\nkind: provider\nflows:\n  - version: 7\n"
    updated = packs.with_version(text, "1.2.3-rc.1")
    assert updated == text.replace("0.1.0", "1.2.3-rc.1")
    assert yaml.safe_load(updated)["version"] == "1.2.3-rc.1"


def test_with_version_quoted() -> None:
    assert packs.with_version('version: "0.1.0"\n', "2.0.0") == "version: 2.0.0\n"


def test_with_version_needs_one_top_level_line() -> None:
    with pytest.raises(PublisherError, match="exactly one top-level 'version:'"):
        packs.with_version("{pack_id: x, version: 1.0.0}\n", "2.0.0")


def test_stage_copies_and_leaves_source(tmp_path: Path) -> None:
    src = make_pack(tmp_path / "packs", "demo", "pack_id: demo\nversion: 0.1.0\nkind: provider\npublisher: G\n")
    (src / "flows").mkdir()
    (src / "flows" / "main.ygtc").write_text("id: main\n")
    (src / "assets").mkdir()
    (src / "assets" / "logo.txt").write_text("logo")
    os.symlink("assets/logo.txt", src / "alias.txt")  # a link inside the pack is copied as its target
    (src / "dist").mkdir()
    (src / "dist" / "old.gtpack").write_text("old")
    (src / ".hidden").mkdir()
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    pack = select(tmp_path / "packs")[0]
    staged = packs.stage(pack, tmp_path / "stage" / "demo", "3.1.4")
    assert yaml.safe_load((staged / "pack.yaml").read_text())["version"] == "3.1.4"
    assert (staged / "flows" / "main.ygtc").read_text() == "id: main\n"
    assert (staged / "alias.txt").read_text() == "logo" and not (staged / "alias.txt").is_symlink()
    assert not (staged / "dist").exists() and not (staged / ".hidden").exists()
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before


def test_stage_refuses_symlink_out_of_pack(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("do not pack")
    src = make_pack(tmp_path / "packs", "demo")
    os.symlink(tmp_path / "secret.txt", src / "leak.txt")
    pack = select(tmp_path / "packs")[0]
    with pytest.raises(ConfigError, match=r"symlink leak.txt points outside the pack"):
        packs.stage(pack, tmp_path / "stage" / "demo", "1.0.0")


def test_stage_refuses_symlink_loop(tmp_path: Path) -> None:
    src = make_pack(tmp_path / "packs", "demo")
    (src / "assets").mkdir()
    os.symlink("..", src / "assets" / "up")
    pack = select(tmp_path / "packs")[0]
    with pytest.raises(ConfigError, match=r"makes a loop"):
        packs.stage(pack, tmp_path / "stage" / "demo", "1.0.0")
