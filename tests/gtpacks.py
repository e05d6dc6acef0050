"""Helpers that write `.gtpack` archives for tests, good ones and ones breaking one reader rule each."""

from __future__ import annotations

import zipfile
from pathlib import Path

import blake3
import cbor2

from .standins.greentic_pack import write_zip

MANIFEST = {
    "schema_version": "pack-v1",
    "pack_id": 0,
    "version": "1.2.3",
    "kind": "provider",
    "publisher": "Greentic",
    "symbols": {"component_ids": [], "node_ids": [], "capability_names": [], "pack_ids": ["demo.pack"]},
    "components": [],
    "flows": [],
    "dependencies": [],
    "capabilities": [],
    "signatures": {"signatures": []},
}


def sbom_for(files: list[tuple[str, bytes]]) -> bytes:
    return cbor2.dumps(
        {
            "files": [
                {
                    "path": p,
                    "size": len(b),
                    "media_type": "application/octet-stream",
                    "hash_blake3": blake3.blake3(b).hexdigest(),
                }
                for p, b in sorted(files)
            ],
            "format": "greentic-sbom-v1",
        },
        canonical=True,
    )


def good_files(manifest: dict[str, object] | None = None) -> list[tuple[str, bytes]]:
    files = [("manifest.cbor", cbor2.dumps(manifest or MANIFEST, canonical=True)), ("assets/a.txt", b"hello")]
    return [*files, ("sbom.cbor", sbom_for(files))]


def write(path: Path, files: list[tuple[str, bytes]]) -> Path:
    write_zip(path, files)
    return path


def write_raw(path: Path, entries: list[tuple[zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return path
