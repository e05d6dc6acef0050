"""Check a built `.gtpack` against the Greentic reader's rules and read its pack id and version."""

from __future__ import annotations

import stat
import struct
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import blake3
import cbor2

from pack_publisher.oci.descriptor import Descriptor, file_descriptor
from pack_publisher.oci.manifest import GTPACK_MEDIA_TYPE
from pack_publisher.runtime.errors import PublisherError
from pack_publisher.runtime.frozen import frozen

MAX_ENTRY_BYTES = 16 * 1024 * 1024
MAX_TOTAL_BYTES = 64 * 1024 * 1024
MAX_ENTRIES = 65_535  # what a zip holds without ZIP64 (the builder never needs it); each entry costs parsing
LOCAL_HEADER_MAGIC = b"PK\x03\x04"
LOCAL_HEADER_SIZE = 30
MANIFEST = "manifest.cbor"
SBOM = "sbom.cbor"
CHUNK = 1024 * 1024
ENCRYPTED_FLAG = 0x1  # general purpose bit 0: the entry needs a password
# What Greentic's reader and zipfile both read; the builder itself writes only stored entries.
READABLE_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
# Whatever zipfile or zlib raise on a malformed archive: one verdict for the user, never a traceback.
ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    ValueError,
    RuntimeError,
    NotImplementedError,
)


@frozen
class ArchiveFacts:
    pack_id: str
    version: str
    kind: str | None
    size: int
    layer: Descriptor  # the .gtpack file as the OCI layer: its digest is never the manifest digest
    entries: int


def _bad(path: Path, why: str) -> PublisherError:
    return PublisherError(f"invalid .gtpack {path.name}: {why}")


def _check_entry(path: Path, info: zipfile.ZipInfo) -> None:
    name = info.filename
    if not name:
        raise _bad(path, "an entry has an empty name")
    if info.flag_bits & ENCRYPTED_FLAG:
        raise _bad(path, f"entry {name!r} is encrypted")
    if info.compress_type not in READABLE_METHODS:
        raise _bad(path, f"entry {name!r} uses compression method {info.compress_type} (only stored or deflated)")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or "\\" in name or ".." in parts or (parts and ":" in parts[0]):
        raise _bad(path, f"entry {name!r} escapes the archive")
    file_type = stat.S_IFMT(info.external_attr >> 16)  # 0 when the writer recorded no unix type
    if info.is_dir() or (info.create_system == 3 and file_type and file_type != stat.S_IFREG):
        raise _bad(path, f"entry {name!r} is not a regular file")
    if info.file_size > MAX_ENTRY_BYTES:
        raise _bad(path, f"entry {name!r} is {info.file_size} bytes, over the 16 MiB limit")


def _real_size(path: Path, fh: BinaryIO, info: zipfile.ZipInfo, total: int) -> int:
    """Inflate one entry from its own bytes and return its real size, checking its CRC over them.

    Nothing the archive declares is trusted: the inflated bytes are counted against the per-entry and
    total caps as they come (`total`: the bytes of the entries before it), must end where the entry's
    compressed data ends, and must be as many as declared (zipfile itself stops at the declared size).
    """
    name = info.filename
    fh.seek(info.header_offset)
    header = fh.read(LOCAL_HEADER_SIZE)
    if len(header) != LOCAL_HEADER_SIZE or header[:4] != LOCAL_HEADER_MAGIC:
        raise _bad(path, f"entry {name!r} has no local header where the directory says")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    fh.seek(info.header_offset + LOCAL_HEADER_SIZE + name_length + extra_length)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS) if info.compress_type == zipfile.ZIP_DEFLATED else None
    left, size, crc = info.compress_size, 0, 0
    while left:
        data = fh.read(min(CHUNK, left))
        if not data:
            raise _bad(path, f"entry {name!r} is cut short")
        left -= len(data)
        while True:
            out = inflater.decompress(data, CHUNK) if inflater is not None else data
            data = inflater.unconsumed_tail if inflater is not None else b""
            size += len(out)
            if size > MAX_ENTRY_BYTES:
                raise _bad(path, f"entry {name!r} inflates to over 16 MiB (it declares {info.file_size} bytes)")
            if total + size > MAX_TOTAL_BYTES:
                raise _bad(path, "the entries inflate to over 64 MiB in total")
            crc = zlib.crc32(out, crc)
            if not data and len(out) < CHUNK:
                break
        if inflater is not None and inflater.eof and (left or inflater.unused_data):
            raise _bad(path, f"entry {name!r} has data after its end")
    if inflater is not None and not inflater.eof:
        raise _bad(path, f"entry {name!r} does not inflate to its end (corrupt data)")
    if size != info.file_size:
        raise _bad(path, f"entry {name!r} holds {size} bytes, but declares {info.file_size}")
    if crc != info.CRC:
        raise _bad(path, f"entry {name!r} is corrupt (CRC mismatch)")
    return size


def _check_real_bytes(path: Path, zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> None:
    """Every entry inflated, capped and CRC-checked by what it really holds (see `_real_size`)."""
    total = 0
    with path.open("rb") as fh:
        for info in infos:
            try:
                total += _real_size(path, fh, info, total)
            except zlib.error as exc:
                raise _bad(path, f"entry {info.filename!r} is corrupt ({exc})") from None


def _pack_id(manifest: dict[Any, Any]) -> str:
    pack_id = manifest.get("pack_id")
    if isinstance(pack_id, int) and not isinstance(pack_id, bool):
        ids = (manifest.get("symbols") or {}).get("pack_ids") or []
        if 0 <= pack_id < len(ids) and isinstance(ids[pack_id], str):
            return str(ids[pack_id])
        raise ValueError(f"pack_id index {pack_id} is not in symbols.pack_ids")
    if isinstance(pack_id, str) and pack_id:
        return pack_id
    raise ValueError("pack_id is missing")


def _entry_blake3(zf: zipfile.ZipFile, name: str) -> str:
    hasher = blake3.blake3()
    with zf.open(name) as fh:
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)
    return str(hasher.hexdigest())


def _check_sbom(path: Path, zf: zipfile.ZipFile, names: set[str]) -> None:
    try:
        sbom = cbor2.loads(zf.read(SBOM))
        files = sbom["files"]
        listed = {f["path"]: f for f in files}
    except Exception as exc:  # any decoding or shape problem is the same verdict for the user
        raise _bad(path, f"{SBOM} is not a readable SBOM ({type(exc).__name__})") from None
    for entry_name, entry in listed.items():
        if entry_name not in names:
            raise _bad(path, f"{SBOM} lists {entry_name!r}, which the archive does not hold")
        if _entry_blake3(zf, entry_name) != str(entry.get("hash_blake3", "")).lower():
            raise _bad(path, f"{SBOM} hash of {entry_name!r} does not match its content")
        if entry.get("size") is not None and entry["size"] != zf.getinfo(entry_name).file_size:
            raise _bad(path, f"{SBOM} size of {entry_name!r} does not match its content")


def inspect_gtpack(path: Path) -> ArchiveFacts:
    """Validate `path` as the Greentic reader would, then return its identity and digests."""
    try:
        zf = zipfile.ZipFile(path)
    except ZIP_ERRORS as exc:
        raise _bad(path, f"not a zip archive ({exc})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ENTRIES:
            raise _bad(path, f"{len(infos)} entries, over the {MAX_ENTRIES}-entry limit")
        seen: set[str] = set()
        for info in infos:  # one pass, linear in the number of entries
            if info.filename in seen:
                raise _bad(path, f"duplicate entry {info.filename!r}")
            seen.add(info.filename)
            _check_entry(path, info)
        total = sum(i.file_size for i in infos)
        if total > MAX_TOTAL_BYTES:
            raise _bad(path, f"{total} bytes uncompressed, over the 64 MiB limit")
        if MANIFEST not in seen:
            raise _bad(path, f"{MANIFEST} is missing")
        try:
            _check_real_bytes(path, zf, infos)  # before anything is read through zipfile
        except ZIP_ERRORS as exc:
            raise _bad(path, f"corrupt entry data ({exc})") from None
        try:
            manifest = cbor2.loads(zf.read(MANIFEST))
            if not isinstance(manifest, dict):
                raise ValueError("not a CBOR map")
            pack_id = _pack_id(manifest)
            version = manifest["version"]
            if not isinstance(version, str):
                raise ValueError("version is not a string")
        except (*ZIP_ERRORS, KeyError, TypeError, AttributeError, RecursionError, cbor2.CBORDecodeError) as exc:
            raise _bad(path, f"{MANIFEST} cannot be read: {exc}") from None
        if SBOM in seen:
            _check_sbom(path, zf, seen)
        kind = manifest.get("kind")
    return ArchiveFacts(
        pack_id=pack_id,
        version=version,
        kind=kind if isinstance(kind, str) else None,
        size=path.stat().st_size,
        layer=file_descriptor(GTPACK_MEDIA_TYPE, path),
        entries=len(infos),
    )
