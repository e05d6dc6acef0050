"""Archive validation: a good .gtpack, and one bad archive per Greentic reader rule."""

from __future__ import annotations

import hashlib
import warnings
import zipfile
from pathlib import Path

import cbor2
import pytest

from pack_publisher.runtime.errors import PublisherError
from pack_publisher.sources.archive import MAX_ENTRY_BYTES, inspect_gtpack

from .gtpacks import MANIFEST, good_files, sbom_for, write, write_raw


def rejected(path: Path) -> str:
    with pytest.raises(PublisherError) as info:
        inspect_gtpack(path)
    assert "\n" not in info.value.message
    return info.value.message


def test_good_archive(tmp_path: Path) -> None:
    path = write(tmp_path / "demo.gtpack", good_files())
    facts = inspect_gtpack(path)
    assert (facts.pack_id, facts.version, facts.kind, facts.entries) == ("demo.pack", "1.2.3", "provider", 3)
    assert facts.size == path.stat().st_size
    assert facts.layer.digest == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert facts.layer.size == path.stat().st_size


def test_plain_string_pack_id(tmp_path: Path) -> None:
    path = write(tmp_path / "old.gtpack", good_files({**MANIFEST, "pack_id": "legacy.pack"}))
    assert inspect_gtpack(path).pack_id == "legacy.pack"


def test_without_sbom(tmp_path: Path) -> None:
    path = write(tmp_path / "nosbom.gtpack", good_files()[:-1])
    assert inspect_gtpack(path).entries == 2


def test_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / "x.gtpack").write_bytes(b"definitely not a zip")
    assert rejected(tmp_path / "x.gtpack").startswith("invalid .gtpack x.gtpack: not a zip archive")


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/passwd", "assets/../../x", "a\\..\\b", "C:/x"])
def test_traversal(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / "x.gtpack", [*good_files(), (name, b"x")])
    assert "escapes the archive" in rejected(path)


def test_duplicate_entry(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate we write on purpose
        path = write(tmp_path / "x.gtpack", [*good_files(), ("assets/a.txt", b"again")])
    assert rejected(path) == "invalid .gtpack x.gtpack: duplicate entry 'assets/a.txt'"


def test_directory_entry(tmp_path: Path) -> None:
    entries = [(zipfile.ZipInfo(n), b) for n, b in good_files()] + [(zipfile.ZipInfo("assets/"), b"")]
    assert "entry 'assets/' is not a regular file" in rejected(write_raw(tmp_path / "x.gtpack", entries))


def test_symlink_entry(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("assets/link")
    link.create_system = 3
    link.external_attr = 0o120777 << 16
    entries = [(zipfile.ZipInfo(n), b) for n, b in good_files()] + [(link, b"/etc/passwd")]
    assert "entry 'assets/link' is not a regular file" in rejected(write_raw(tmp_path / "x.gtpack", entries))


def test_entry_over_16_mib(tmp_path: Path) -> None:
    path = write(tmp_path / "x.gtpack", [*good_files()[:-1], ("assets/big.bin", b"\0" * (MAX_ENTRY_BYTES + 1))])
    assert "entry 'assets/big.bin' is 16777217 bytes, over the 16 MiB limit" in rejected(path)


def test_total_over_64_mib(tmp_path: Path) -> None:
    chunk = b"\0" * (MAX_ENTRY_BYTES - 1)
    files = [*good_files()[:-1], *[(f"assets/{i}.bin", chunk) for i in range(5)]]
    assert "over the 64 MiB limit" in rejected(write(tmp_path / "x.gtpack", files))


def test_missing_manifest(tmp_path: Path) -> None:
    assert rejected(write(tmp_path / "x.gtpack", [("assets/a.txt", b"x")])).endswith("manifest.cbor is missing")


def test_undecodable_manifest(tmp_path: Path) -> None:
    path = write(tmp_path / "x.gtpack", [("manifest.cbor", b"\xff\xff not cbor")])
    assert "manifest.cbor cannot be read" in rejected(path)


def test_manifest_without_pack_id(tmp_path: Path) -> None:
    manifest = {k: v for k, v in MANIFEST.items() if k != "pack_id"}
    assert "pack_id is missing" in rejected(write(tmp_path / "x.gtpack", good_files(manifest)))


def test_sbom_hash_mismatch(tmp_path: Path) -> None:
    files = good_files()[:-1]
    tampered = [("manifest.cbor", files[0][1]), ("assets/a.txt", b"HELLO")]
    path = write(tmp_path / "x.gtpack", [*tampered, ("sbom.cbor", sbom_for(files))])
    assert rejected(path).endswith("sbom.cbor hash of 'assets/a.txt' does not match its content")


def test_sbom_lists_missing_file(tmp_path: Path) -> None:
    files = good_files()[:-1]
    path = write(tmp_path / "x.gtpack", [*files, ("sbom.cbor", sbom_for([*files, ("ghost", b"")]))])
    assert "lists 'ghost', which the archive does not hold" in rejected(path)


def test_unreadable_sbom(tmp_path: Path) -> None:
    path = write(tmp_path / "x.gtpack", [*good_files()[:-1], ("sbom.cbor", cbor2.dumps([1, 2]))])
    assert "sbom.cbor is not a readable SBOM" in rejected(path)


def test_crc_mismatch(tmp_path: Path) -> None:
    path = write(tmp_path / "x.gtpack", good_files()[:-1])
    data = path.read_bytes().replace(b"hello", b"jello")
    path.write_bytes(data)
    assert "corrupt" in rejected(path)
