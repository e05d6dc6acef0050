"""The pack's SBOM for the world outside the archive: its `sbom.cbor` as a CycloneDX 1.6 JSON document.

Every `.gtpack` holds `sbom.cbor` (each file with its size, media type and BLAKE3 hash), but only a
reader of the archive sees it. The CycloneDX document, made with `cyclonedx-python-lib`, says the
same thing in the format scanners read, and is attached to the pack's manifest as an OCI referrer
(`referrers`, `sbom_publish`). It is a pure function of the archive and the pack's identity: the
serial number is derived from the manifest digest and the timestamp is the `created` annotation, so
the same build gives the same bytes and the referrer's digest is known before anything is pushed.
"""

from __future__ import annotations

import json
import uuid
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import cbor2

from pack_publisher.runtime.errors import PublisherError
from pack_publisher.runtime.frozen import frozen

SBOM_ENTRY = "sbom.cbor"
SBOM_FORMAT = "greentic-sbom-v1"
SIZE_PROPERTY = "greentic:sbom:size"
MEDIA_TYPE_PROPERTY = "greentic:sbom:media_type"
BLAKE3 = "BLAKE3"  # as the CycloneDX schema spells it (HashAlgorithm.BLAKE3)
# The serial number is a UUID named by the manifest digest: the same pack always gets the same one.
SERIAL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://greentic.ai/pack-publisher/sbom")


@dataclass(frozen=True, order=True)  # not @frozen: sorted, and made by builds only (never on a push's path)
class SbomFile:
    """One entry of `sbom.cbor`: what the Greentic builder recorded for a file of the archive."""

    path: str
    size: int
    media_type: str
    hash_blake3: str  # lowercase hex


@frozen
class PackIdentity:
    """What the SBOM says about the pack as a whole."""

    pack_id: str
    version: str
    manifest_digest: str  # of the pack's OCI manifest: names the SBOM (serial number, purl)
    gtpack_digest: str  # sha256 of the archive
    repository_url: str  # <registry>/<repository>, for the purl
    created: str  # the `org.opencontainers.image.created` annotation, RFC 3339 UTC


def read_sbom(gtpack: Path) -> list[SbomFile] | None:
    """The entries of the archive's `sbom.cbor`, sorted by path; None when the archive holds none."""
    try:
        with zipfile.ZipFile(gtpack) as zf:
            if SBOM_ENTRY not in zf.namelist():
                return None
            data = zf.read(SBOM_ENTRY)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise PublisherError(f"{gtpack.name}: cannot read {SBOM_ENTRY} ({exc})") from None
    return parse_sbom_cbor(data, gtpack.name)


def parse_sbom_cbor(data: bytes, where: str) -> list[SbomFile]:
    """`sbom.cbor` bytes as entries; one clear error when it is not the builder's format."""
    try:
        doc = cbor2.loads(data)
        files = [
            SbomFile(
                path=_text(f["path"]),
                size=_count(f["size"]),
                media_type=_text(f["media_type"]),
                hash_blake3=_text(f["hash_blake3"]).lower(),
            )
            for f in doc["files"]
        ]
    except Exception as exc:  # any decoding or shape problem is the same verdict for the user
        raise PublisherError(f"{where}: {SBOM_ENTRY} is not a readable SBOM ({type(exc).__name__})") from None
    return sorted(files)


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("not a string")
    return value


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError("not a size")
    return value


def serial_number(manifest_digest: str) -> uuid.UUID:
    return uuid.uuid5(SERIAL_NAMESPACE, manifest_digest)


def cyclonedx(files: list[SbomFile], pack: PackIdentity) -> bytes:
    """The CycloneDX 1.6 JSON document: the pack as metadata.component, one `file` component per entry."""
    # imported here: the library takes ~75 ms to import, which only a build (and verify) needs
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    root = Component(
        type=ComponentType.APPLICATION,
        name=pack.pack_id,
        version=pack.version,
        bom_ref=f"pack:{pack.pack_id}@{pack.version}",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=pack.gtpack_digest.removeprefix("sha256:"))],
        purl=PackageURL(
            type="oci",
            name=pack.repository_url.rsplit("/", 1)[-1],
            version=pack.manifest_digest,
            qualifiers={"repository_url": pack.repository_url, "tag": pack.version},
        ),
    )
    components = [
        Component(
            type=ComponentType.FILE,
            name=f.path,
            bom_ref=f"file:{f.path}",  # never the library's random default: same inputs, same bytes
            hashes=[HashType(alg=HashAlgorithm.BLAKE3, content=f.hash_blake3)],
            properties=[
                Property(name=SIZE_PROPERTY, value=str(f.size)),
                Property(name=MEDIA_TYPE_PROPERTY, value=f.media_type),
            ],
        )
        for f in files
    ]
    bom = Bom(
        serial_number=serial_number(pack.manifest_digest),
        metadata=BomMetaData(component=root, timestamp=_timestamp(pack.created)),
        components=components,
    )
    bom.register_dependency(root, components)
    return (JsonV1Dot6(bom).output_as_string(indent=2) + "\n").encode("utf-8")


def _timestamp(created: str) -> datetime:
    try:
        return datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        raise PublisherError(f"the created time {created!r} is not an RFC 3339 time") from None


def files_of_cyclonedx(data: bytes, where: str) -> list[SbomFile]:
    """The file components of a CycloneDX document as SBOM entries (what `verify` compares to sbom.cbor)."""
    try:
        doc = json.loads(data)
        if doc.get("bomFormat") != "CycloneDX":
            raise ValueError("not a CycloneDX document")
        files = [_file_of(c) for c in doc.get("components", []) if c.get("type") == "file"]
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise PublisherError(f"{where}: not a CycloneDX SBOM of a pack ({exc})") from None
    return sorted(files)


def _file_of(component: dict[str, Any]) -> SbomFile:
    blake3 = [h["content"] for h in component.get("hashes", []) if h.get("alg") == BLAKE3]
    properties = {p["name"]: p.get("value") for p in component.get("properties", [])}
    if len(blake3) != 1:
        raise ValueError(f"component {component.get('name')!r} has no BLAKE3 hash")
    return SbomFile(
        path=_text(component["name"]),
        size=int(properties[SIZE_PROPERTY]),
        media_type=_text(properties[MEDIA_TYPE_PROPERTY]),
        hash_blake3=_text(blake3[0]).lower(),
    )
