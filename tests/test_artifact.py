"""Manifest composition: byte-identical to ORAS 1.3.3 for the same inputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pack_publisher.oci import manifest as artifact
from pack_publisher.oci.descriptor import Descriptor, describe
from pack_publisher.runtime.errors import PublisherError

from .conftest import oras_path

VECTORS = Path(__file__).resolve().parent / "data" / "oras-1.3.3"


def vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def layer() -> Descriptor:
    return describe(artifact.GTPACK_MEDIA_TYPE, vector("layer.gtpack"))


def test_plain_vector() -> None:
    composed = artifact.compose(layer(), "x.gtpack", {artifact.CREATED: "2025-01-01T00:00:00Z"})
    assert composed.manifest == vector("manifest-plain.json")
    assert composed.descriptor.digest == "sha256:780666006e258426c8da11c33e8ddbda04d98285f2b6865b77eabcc19d3a195e"


def test_special_characters_vector() -> None:
    annotations = {
        "z.desc": 'a<b>&c "q" é ü €',
        artifact.VERSION: "1.2.3",
        artifact.CREATED: "2025-01-01T00:00:00Z",
        "a.first": "1",
    }
    composed = artifact.compose(layer(), "x.gtpack", annotations)
    assert composed.manifest == vector("manifest-special.json")
    assert composed.descriptor.digest == "sha256:183328af53c786f0594c673d5fe21b65b7cad168e39dae17c3111e631c128b1d"


def test_go_json_escapes() -> None:
    assert (
        artifact.go_json({"k": '<>&\u2028\u2029\n"é'}) == b'{"k":"\\u003c\\u003e\\u0026\\u2028\\u2029\\n\\"\xc3\xa9"}'
    )


def test_manifest_shape() -> None:
    composed = artifact.compose(Descriptor(artifact.GTPACK_MEDIA_TYPE, "sha256:" + "ab" * 32, 10), "demo.gtpack", {})
    doc = json.loads(composed.manifest)
    assert doc["artifactType"] == doc["layers"][0]["mediaType"] == "application/vnd.greentic.gtpack.v1+zip"
    assert doc["config"]["digest"] == "sha256:" + hashlib.sha256(b"{}").hexdigest()
    assert "annotations" not in doc  # left out when empty, as Go's omitempty does
    assert composed.descriptor.digest == "sha256:" + hashlib.sha256(composed.manifest).hexdigest()


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


def test_real_oras_composes_the_same_bytes(tmp_path: Path) -> None:
    """The manifest the publisher writes is the one `oras push` itself would write for the same inputs."""
    import subprocess

    (tmp_path / "x.gtpack").write_bytes(vector("layer.gtpack"))
    annotations = {artifact.CREATED: "2025-01-01T00:00:00Z", artifact.VERSION: "1.2.3", "a.b": "<&>"}
    (tmp_path / "annotations.json").write_text(json.dumps({"$manifest": annotations}))
    subprocess.run(
        [
            oras_path(),
            "push",
            "--oci-layout",
            f"{tmp_path / 'layout'}:1.2.3",
            f"x.gtpack:{artifact.GTPACK_MEDIA_TYPE}",
            "--artifact-type",
            artifact.GTPACK_MEDIA_TYPE,
            "--annotation-file",
            "annotations.json",
            "--export-manifest",
            "manifest.json",
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert (tmp_path / "manifest.json").read_bytes() == artifact.compose(layer(), "x.gtpack", annotations).manifest


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"artifactType": "other/type"}, "has artifactType 'other/type'"),
        ({"layers": []}, "does not hold exactly one"),
        ({"layers": [{"mediaType": "text/plain", "digest": "sha256:" + "1" * 64, "size": 1}]}, "does not hold exactly"),
    ],
)
def test_check_pack_manifest_refuses_other_shapes(change: dict[str, object], message: str) -> None:
    composed = artifact.compose(layer(), "x.gtpack", {})
    doc = {**json.loads(composed.manifest), **change}
    with pytest.raises(PublisherError, match=message):
        artifact.check_pack_manifest(json.dumps(doc).encode(), "sha256:x", None, None)
    assert artifact.check_pack_manifest(composed.manifest, "sha256:x", layer().digest, layer().size) == layer()
