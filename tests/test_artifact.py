"""Manifest composition: byte-identical to ORAS 1.3.3 for the same inputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pack_publisher import artifact

VECTORS = Path(__file__).resolve().parent / "data" / "oras-1.3.3"


def vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def layer() -> tuple[str, int]:
    data = vector("layer.gtpack")
    return hashlib.sha256(data).hexdigest(), len(data)


def test_plain_vector() -> None:
    composed = artifact.compose(*layer(), "x.gtpack", {artifact.CREATED: "2025-01-01T00:00:00Z"})
    assert composed.manifest == vector("manifest-plain.json")
    assert composed.digest == "sha256:780666006e258426c8da11c33e8ddbda04d98285f2b6865b77eabcc19d3a195e"


def test_special_characters_vector() -> None:
    annotations = {
        "z.desc": 'a<b>&c "q" é ü €',
        artifact.VERSION: "1.2.3",
        artifact.CREATED: "2025-01-01T00:00:00Z",
        "a.first": "1",
    }
    composed = artifact.compose(*layer(), "x.gtpack", annotations)
    assert composed.manifest == vector("manifest-special.json")
    assert composed.digest == "sha256:183328af53c786f0594c673d5fe21b65b7cad168e39dae17c3111e631c128b1d"


def test_go_json_escapes() -> None:
    assert (
        artifact.go_json({"k": '<>&\u2028\u2029\n"é'}) == b'{"k":"\\u003c\\u003e\\u0026\\u2028\\u2029\\n\\"\xc3\xa9"}'
    )


def test_manifest_shape() -> None:
    composed = artifact.compose("ab" * 32, 10, "demo.gtpack", {})
    doc = json.loads(composed.manifest)
    assert doc["artifactType"] == doc["layers"][0]["mediaType"] == "application/vnd.greentic.gtpack.v1+zip"
    assert doc["config"]["digest"] == "sha256:" + hashlib.sha256(b"{}").hexdigest()
    assert "annotations" not in doc  # left out when empty, as Go's omitempty does
    assert composed.digest == "sha256:" + hashlib.sha256(composed.manifest).hexdigest()


def test_pack_annotations() -> None:
    got = artifact.pack_annotations(
        created="2026-01-02T03:04:05Z",
        version="1.0.0",
        revision="abc",
        source="https://github.com/a/b",
        title="Demo",
        description="x" * 600,
    )
    assert got[artifact.TITLE] == "Demo" and len(got[artifact.DESCRIPTION]) == 512
    plain = artifact.pack_annotations(
        created="c", version="v", revision="r", source=None, title=None, description="ignored"
    )
    assert set(plain) == {artifact.CREATED, artifact.VERSION, artifact.REVISION}
