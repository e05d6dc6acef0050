"""Compose the OCI manifest of a pack artifact: a pure function from archive facts to exact bytes.

The bytes match what ORAS 1.3.3 publishes for the same inputs (Go encoding/json rules), so the
manifest digest is known before anything is pushed, whichever transport pushes it.
"""

from __future__ import annotations

import json
from typing import Any

from pack_publisher.oci.descriptor import Descriptor, describe
from pack_publisher.runtime.errors import PublisherError
from pack_publisher.runtime.frozen import frozen

GTPACK_MEDIA_TYPE = "application/vnd.greentic.gtpack.v1+zip"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
EMPTY_CONFIG_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG_BYTES = b"{}"
EMPTY_CONFIG = describe(EMPTY_CONFIG_MEDIA_TYPE, EMPTY_CONFIG_BYTES)
TITLE = "org.opencontainers.image.title"
CREATED = "org.opencontainers.image.created"
SOURCE = "org.opencontainers.image.source"
REVISION = "org.opencontainers.image.revision"
VERSION = "org.opencontainers.image.version"
DESCRIPTION = "org.opencontainers.image.description"
MAX_DESCRIPTION = 512  # GHCR shows at most this many characters

# Go's encoding/json escapes these even inside strings; Python's json does not.
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_json(value: Any) -> bytes:
    """Serialise like Go's encoding/json.Marshal: compact, raw UTF-8, HTML characters escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in _GO_ESCAPES.items():
        text = text.replace(char, escaped)  # safe globally: these never occur outside strings
    return text.encode("utf-8")


@frozen
class Artifact:
    """One pack's OCI artifact: the manifest bytes exactly as they are pushed, and what they describe."""

    manifest: bytes
    descriptor: Descriptor  # of the manifest: its digest is what consumers pin
    layer: Descriptor  # the .gtpack

    @property
    def blobs(self) -> tuple[Descriptor, Descriptor]:
        """What the manifest references, config first: all of it must be in the registry before the manifest."""
        return (EMPTY_CONFIG, self.layer)


def empty_config() -> dict[str, object]:
    """The empty config descriptor as oras writes it, its 2 bytes `{}` inline (`data`), for any artifact."""
    return {
        "mediaType": EMPTY_CONFIG.media_type,
        "digest": EMPTY_CONFIG.digest,
        "size": EMPTY_CONFIG.size,
        "data": "e30=",
    }


def compose(layer: Descriptor, layer_title: str, annotations: dict[str, str]) -> Artifact:
    """The manifest `oras push --artifact-type T <title>:T` would write, with these annotations."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": GTPACK_MEDIA_TYPE,
        "config": empty_config(),
        "layers": [
            {
                "mediaType": layer.media_type,
                "digest": layer.digest,
                "size": layer.size,
                "annotations": {TITLE: layer_title},
            }
        ],
    }
    if annotations:
        manifest["annotations"] = dict(sorted(annotations.items()))
    data = go_json(manifest)
    return Artifact(manifest=data, descriptor=describe(MANIFEST_MEDIA_TYPE, data), layer=layer)


def check_pack_manifest(manifest: bytes, digest: str, layer_digest: str | None, layer_size: int | None) -> Descriptor:
    """The layer of a served manifest, after checking it is a pack artifact of this shape.

    Its bytes were already matched to `digest` by the verifying layer; this checks what they say.
    """
    try:
        doc = json.loads(manifest)
        layers = doc["layers"]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise PublisherError(f"manifest {digest} is not an OCI image manifest") from None
    if doc.get("artifactType") != GTPACK_MEDIA_TYPE:
        raise PublisherError(f"manifest {digest} has artifactType {doc.get('artifactType')!r}, not {GTPACK_MEDIA_TYPE}")
    if not isinstance(layers, list) or len(layers) != 1 or not isinstance(layers[0], dict):
        raise PublisherError(f"manifest {digest} does not hold exactly one {GTPACK_MEDIA_TYPE} layer")
    layer = layers[0]
    if layer.get("mediaType") != GTPACK_MEDIA_TYPE:
        raise PublisherError(f"manifest {digest} does not hold exactly one {GTPACK_MEDIA_TYPE} layer")
    if layer_digest is not None and layer.get("digest") != layer_digest:
        raise PublisherError(f"manifest {digest} points at layer {layer.get('digest')}, expected {layer_digest}")
    if layer_size is not None and layer.get("size") != layer_size:
        raise PublisherError(f"manifest {digest} says the layer is {layer.get('size')} bytes, expected {layer_size}")
    if not isinstance(layer.get("digest"), str) or not isinstance(layer.get("size"), int):
        raise PublisherError(f"manifest {digest} describes its layer without a digest and size")
    return Descriptor(GTPACK_MEDIA_TYPE, layer["digest"], layer["size"])


def pack_annotations(
    *, created: str, version: str, revision: str, source: str | None, title: str | None, description: str | None
) -> dict[str, str]:
    """The manifest annotations of a pack release, all pinned so the digest is reproducible."""
    annotations = {CREATED: created, VERSION: version, REVISION: revision}
    if source:
        annotations[SOURCE] = source
    if title:
        annotations[TITLE] = title
        annotations[DESCRIPTION] = (description or title)[:MAX_DESCRIPTION]
    return annotations
