"""Helpers that write `.gtpack` archives for tests, good ones and ones breaking one reader rule each."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import blake3
import cbor2

from testsupport.standins.greentic_pack import write_zip

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


def patch_entry(
    path: Path, name: str, *, flags: int | None = None, method: int | None = None, unname: bool = False
) -> Path:
    """Rewrite one entry's headers in place (local and central): its flag bits, its compression method,
    or its name made empty (the name's bytes become extra-field bytes, so no offset moves).

    For archives zipfile cannot write: encrypted entries, unknown methods, empty names.
    """
    data = bytearray(path.read_bytes())
    encoded = name.encode()
    # (signature, offset of flags, offset of method, offset of name length, offset of extra length, header size)
    layouts = [(b"PK\x03\x04", 6, 8, 26, 28, 30), (b"PK\x01\x02", 8, 10, 28, 30, 46)]
    for signature, at_flags, at_method, at_name_len, at_extra_len, size in layouts:
        start = data.find(signature)
        while start != -1:
            name_len = struct.unpack_from("<H", data, start + at_name_len)[0]
            if data[start + size : start + size + name_len] == encoded:
                if flags is not None:
                    struct.pack_into("<H", data, start + at_flags, flags)
                if method is not None:
                    struct.pack_into("<H", data, start + at_method, method)
                if unname:
                    extra_len = struct.unpack_from("<H", data, start + at_extra_len)[0]
                    struct.pack_into("<HH", data, start + at_name_len, 0, extra_len + name_len)
            start = data.find(signature, start + 4)
    path.write_bytes(bytes(data))
    return path
