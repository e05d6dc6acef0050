"""Compose the OCI manifest of a pack artifact: a pure function from archive facts to exact bytes.

The bytes match what ORAS 1.3.3 publishes for the same inputs (Go encoding/json rules), so the
manifest digest is known before anything is pushed, whichever transport pushes it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

GTPACK_MEDIA_TYPE = "application/vnd.greentic.gtpack.v1+zip"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
EMPTY_CONFIG_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG_BYTES = b"{}"
EMPTY_CONFIG_DIGEST = "sha256:" + hashlib.sha256(EMPTY_CONFIG_BYTES).hexdigest()
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


@dataclass(frozen=True)
class Artifact:
    """One pack's OCI artifact: the manifest bytes exactly as they are pushed, and their digest."""

    manifest: bytes
    digest: str
    layer_digest: str
    layer_size: int


def compose(layer_sha256: str, layer_size: int, layer_title: str, annotations: dict[str, str]) -> Artifact:
    """The manifest `oras push --artifact-type T <title>:T` would write, with these annotations."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": GTPACK_MEDIA_TYPE,
        "config": {
            "mediaType": EMPTY_CONFIG_MEDIA_TYPE,
            "digest": EMPTY_CONFIG_DIGEST,
            "size": len(EMPTY_CONFIG_BYTES),
            "data": "e30=",
        },
        "layers": [
            {
                "mediaType": GTPACK_MEDIA_TYPE,
                "digest": f"sha256:{layer_sha256}",
                "size": layer_size,
                "annotations": {TITLE: layer_title},
            }
        ],
    }
    if annotations:
        manifest["annotations"] = dict(sorted(annotations.items()))
    data = go_json(manifest)
    return Artifact(
        manifest=data,
        digest="sha256:" + hashlib.sha256(data).hexdigest(),
        layer_digest=f"sha256:{layer_sha256}",
        layer_size=layer_size,
    )


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
