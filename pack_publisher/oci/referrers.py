"""OCI 1.1 referrers, composed as pure functions: the SBOM's referrer manifest and the referrers index.

The referrer manifest is what `oras attach --artifact-type application/vnd.cyclonedx+json
--annotation org.opencontainers.image.created=<created> <pack>@<digest> <pack>.cdx.json:<type>` writes
with ORAS 1.3.3 (checked against the real CLI in tests/test_sbom_publish.py), so its digest is known before
anything is pushed and is the same whichever transport pushes it.

Registries without the referrers API (GHCR, distribution 2.8) find referrers through the tag schema:
an image index tagged `sha256-<hex of the subject digest>` listing each referrer's descriptor with its
artifactType and annotations. The index here is composed as oras-go composes it (entries in the
order they were added, a new one appended, Go's JSON), so both transports leave the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

from pack_publisher.oci.descriptor import Descriptor, describe
from pack_publisher.oci.manifest import CREATED, EMPTY_CONFIG, MANIFEST_MEDIA_TYPE, TITLE, empty_config, go_json
from pack_publisher.runtime.errors import PublisherError
from pack_publisher.runtime.frozen import frozen

CYCLONEDX_MEDIA_TYPE = "application/vnd.cyclonedx+json"  # the SBOM document, its layer and the artifactType
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"


@frozen
class Referrer:
    """A referrer manifest ready to push: its exact bytes, their descriptor, and what they name."""

    manifest: bytes
    descriptor: Descriptor
    layer: Descriptor  # the SBOM document
    subject: Descriptor  # the pack's manifest
    artifact_type: str
    annotations: dict[str, str]

    @property
    def blobs(self) -> tuple[Descriptor, Descriptor]:
        """What the manifest references, config first: all of it must be in the registry before the manifest."""
        return (EMPTY_CONFIG, self.layer)

    def index_entry(self) -> dict[str, Any]:
        """Its descriptor in a referrers list: as the referrers API and oras-go's tag schema write it."""
        return {
            "mediaType": self.descriptor.media_type,
            "digest": self.descriptor.digest,
            "size": self.descriptor.size,
            "annotations": dict(self.annotations),
            "artifactType": self.artifact_type,
        }


def compose_sbom_referrer(sbom: Descriptor, title: str, subject: Descriptor, created: str) -> Referrer:
    """The manifest attaching the SBOM document `sbom` (file name `title`) to the pack manifest `subject`."""
    annotations = {CREATED: created}
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": CYCLONEDX_MEDIA_TYPE,
        "config": empty_config(),
        "layers": [
            {"mediaType": sbom.media_type, "digest": sbom.digest, "size": sbom.size, "annotations": {TITLE: title}}
        ],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size},
        "annotations": annotations,
    }
    data = go_json(manifest)
    return Referrer(
        manifest=data,
        descriptor=describe(MANIFEST_MEDIA_TYPE, data),
        layer=sbom,
        subject=subject,
        artifact_type=CYCLONEDX_MEDIA_TYPE,
        annotations=annotations,
    )


def referrers_tag(subject_digest: str) -> str:
    """The tag-schema tag of a subject's referrers index: `sha256-<hex>` (the digest's `:` as `-`)."""
    algorithm, _, hex_part = subject_digest.partition(":")
    return f"{algorithm}-{hex_part}"


def parse_index(data: bytes, where: str) -> list[dict[str, Any]]:
    """The descriptors an image index lists (a referrers answer or a tag-schema index)."""
    try:
        doc = json.loads(data)
        manifests = doc.get("manifests") or []
        if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
            raise ValueError("manifests is not a list of descriptors")
    except (ValueError, AttributeError, RecursionError) as exc:
        raise PublisherError(f"{where}: not an OCI image index ({exc})") from None
    return manifests


def compose_index(entries: list[dict[str, Any]]) -> bytes:
    """A referrers index listing `entries` in order, byte for byte as oras-go writes it."""
    return go_json({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [_go_order(e) for e in entries]})


# Go's ocispec.Descriptor field order: entries written by others are rewritten in it, as oras-go does.
_DESCRIPTOR_FIELDS = ("mediaType", "digest", "size", "urls", "annotations", "data", "platform", "artifactType")


def _go_order(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: entry[key] for key in _DESCRIPTOR_FIELDS if entry.get(key) not in (None, "", [], {})}


def with_referrer(existing: list[dict[str, Any]], referrer: Referrer) -> bytes | None:
    """The index after adding `referrer` to `existing`, keeping every other entry; None when it is listed."""
    if any(e.get("digest") == referrer.descriptor.digest for e in existing):
        return None
    seen: set[str] = set()
    kept = []
    for entry in existing:  # duplicates dropped, as oras-go does
        digest = str(entry.get("digest"))
        if digest not in seen:
            seen.add(digest)
            kept.append(entry)
    return compose_index([*kept, referrer.index_entry()])


def lists(entries: list[dict[str, Any]], digest: str) -> bool:
    return any(e.get("digest") == digest for e in entries)


def check_sbom_referrer(manifest: bytes, digest: str, subject: str) -> Descriptor:
    """The SBOM layer of a served referrer manifest, after checking it refers to `subject` and holds one."""
    try:
        doc = json.loads(manifest)
        layers = doc["layers"]
        named = doc["subject"]["digest"]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise PublisherError(f"referrer {digest} is not an OCI image manifest with a subject") from None
    if named != subject:
        raise PublisherError(f"referrer {digest} refers to {named}, not {subject}")
    if doc.get("artifactType") != CYCLONEDX_MEDIA_TYPE:
        raise PublisherError(
            f"referrer {digest} has artifactType {doc.get('artifactType')!r}, not {CYCLONEDX_MEDIA_TYPE}"
        )
    if not isinstance(layers, list) or len(layers) != 1 or not isinstance(layers[0], dict):
        raise PublisherError(f"referrer {digest} does not hold exactly one {CYCLONEDX_MEDIA_TYPE} layer")
    layer = layers[0]
    if layer.get("mediaType") != CYCLONEDX_MEDIA_TYPE or not isinstance(layer.get("digest"), str):
        raise PublisherError(f"referrer {digest} does not hold exactly one {CYCLONEDX_MEDIA_TYPE} layer")
    if not isinstance(layer.get("size"), int) or isinstance(layer.get("size"), bool):
        raise PublisherError(f"referrer {digest} describes its layer without a size")
    return Descriptor(CYCLONEDX_MEDIA_TYPE, layer["digest"], layer["size"])
