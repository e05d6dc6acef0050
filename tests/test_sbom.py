"""The CycloneDX SBOM made from a pack's sbom.cbor (pure: no registry), and the referrer manifests and
referrers index composed for it."""

from __future__ import annotations

import json
from pathlib import Path

import blake3
import pytest
from cyclonedx.model import HashAlgorithm
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from pack_publisher.oci import referrers
from pack_publisher.oci.descriptor import Descriptor, describe
from pack_publisher.runtime.errors import PublisherError
from pack_publisher.sources import sbom
from tests import gtpacks

PACK_DIGEST = "sha256:" + "a" * 64
IDENTITY = sbom.PackIdentity(
    pack_id="demo.pack",
    version="1.2.3",
    manifest_digest=PACK_DIGEST,
    gtpack_digest="sha256:" + "b" * 64,
    repository_url="127.0.0.1:5000/acme/greentic-packs/demo",
    created="2026-01-02T03:04:05Z",
)


def files_of(tmp_path: Path) -> list[sbom.SbomFile]:
    entries = [("manifest.cbor", b"m" * 7), ("assets/a.txt", b"hello"), ("components/x.wasm", b"\0asm")]
    archive = gtpacks.write(tmp_path / "demo.gtpack", [*entries, ("sbom.cbor", gtpacks.sbom_for(entries))])
    found = sbom.read_sbom(archive)
    assert found is not None
    return found


def test_the_library_spells_blake3_as_the_module_does() -> None:
    assert HashAlgorithm.BLAKE3.value == sbom.BLAKE3


def test_read_sbom_gives_every_entry_sorted_and_none_without_one(tmp_path: Path) -> None:
    files = files_of(tmp_path)
    assert [f.path for f in files] == ["assets/a.txt", "components/x.wasm", "manifest.cbor"]
    assert files[0] == sbom.SbomFile("assets/a.txt", 5, "application/octet-stream", blake3.blake3(b"hello").hexdigest())
    bare = gtpacks.write(tmp_path / "bare.gtpack", [("manifest.cbor", b"m")])
    assert sbom.read_sbom(bare) is None


def test_unreadable_sbom_cbor_is_one_clear_error(tmp_path: Path) -> None:
    bad = gtpacks.write(tmp_path / "bad.gtpack", [("manifest.cbor", b"m"), ("sbom.cbor", b"\xff not cbor")])
    with pytest.raises(PublisherError, match=r"bad.gtpack: sbom.cbor is not a readable SBOM"):
        sbom.read_sbom(bad)


def test_cyclonedx_document_is_valid_1_6_and_lists_every_file_with_blake3(tmp_path: Path) -> None:
    files = files_of(tmp_path)
    document = sbom.cyclonedx(files, IDENTITY)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(document.decode()) is None
    doc = json.loads(document)
    assert doc["bomFormat"] == "CycloneDX"
    assert doc["specVersion"] == "1.6"
    root = doc["metadata"]["component"]
    assert (root["type"], root["name"], root["version"]) == ("application", "demo.pack", "1.2.3")
    assert root["purl"].startswith("pkg:oci/demo@sha256:" + "a" * 64)
    assert doc["metadata"]["timestamp"] == "2026-01-02T03:04:05+00:00"
    components = {c["name"]: c for c in doc["components"]}
    assert set(components) == {f.path for f in files}
    for f in files:
        component = components[f.path]
        assert component["type"] == "file"
        assert component["hashes"] == [{"alg": "BLAKE3", "content": f.hash_blake3}]
        properties = {p["name"]: p["value"] for p in component["properties"]}
        assert properties == {sbom.SIZE_PROPERTY: str(f.size), sbom.MEDIA_TYPE_PROPERTY: f.media_type}
    # and reading it back gives the same entries `verify` compares with sbom.cbor
    assert sbom.files_of_cyclonedx(document, "test") == files


def test_same_inputs_same_bytes_and_the_serial_number_follows_the_pack_digest(tmp_path: Path) -> None:
    files = files_of(tmp_path)
    first = sbom.cyclonedx(files, IDENTITY)
    assert sbom.cyclonedx(list(reversed(files)), IDENTITY) == first
    other = sbom.cyclonedx(files, IDENTITY.__class__(**{**IDENTITY.__dict__, "manifest_digest": "sha256:" + "c" * 64}))
    serials = {json.loads(d)["serialNumber"] for d in (first, other)}
    assert len(serials) == 2
    assert json.loads(first)["serialNumber"] == f"urn:uuid:{sbom.serial_number(PACK_DIGEST)}"


def test_a_document_that_is_not_a_pack_sbom_is_refused() -> None:
    with pytest.raises(PublisherError, match="not a CycloneDX SBOM"):
        sbom.files_of_cyclonedx(b'{"bomFormat": "SPDX"}', "x")
    no_hash = {"bomFormat": "CycloneDX", "components": [{"type": "file", "name": "a", "hashes": []}]}
    with pytest.raises(PublisherError, match="no BLAKE3 hash"):
        sbom.files_of_cyclonedx(json.dumps(no_hash).encode(), "x")


# --- referrers: the manifest attaching the SBOM and the tag-schema index ---------------------------

SUBJECT = Descriptor("application/vnd.oci.image.manifest.v1+json", PACK_DIGEST, 590)


def referrer(content: bytes = b"{}\n") -> referrers.Referrer:
    return referrers.compose_sbom_referrer(
        describe(referrers.CYCLONEDX_MEDIA_TYPE, content), "demo.cdx.json", SUBJECT, "2026-01-02T03:04:05Z"
    )


def test_referrer_manifest_has_oras_attach_shape() -> None:
    made = referrer()
    doc = json.loads(made.manifest)
    assert list(doc) == ["schemaVersion", "mediaType", "artifactType", "config", "layers", "subject", "annotations"]
    assert doc["artifactType"] == "application/vnd.cyclonedx+json"
    assert doc["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert doc["layers"][0]["annotations"] == {"org.opencontainers.image.title": "demo.cdx.json"}
    assert doc["subject"] == {"mediaType": SUBJECT.media_type, "digest": SUBJECT.digest, "size": 590}
    assert doc["annotations"] == {"org.opencontainers.image.created": "2026-01-02T03:04:05Z"}
    assert b" " not in made.manifest  # Go's compact encoding
    assert referrers.check_sbom_referrer(made.manifest, made.descriptor.digest, PACK_DIGEST) == made.layer


def test_a_referrer_of_another_subject_or_type_is_refused() -> None:
    made = referrer()
    with pytest.raises(PublisherError, match="refers to"):
        referrers.check_sbom_referrer(made.manifest, made.descriptor.digest, "sha256:" + "0" * 64)
    other = made.manifest.replace(b'"artifactType":"application/vnd.cyclonedx+json"', b'"artifactType":"x/y"')
    with pytest.raises(PublisherError, match="artifactType"):
        referrers.check_sbom_referrer(other, "sha256:x", PACK_DIGEST)


def test_referrers_tag_is_the_digest_with_a_dash() -> None:
    assert referrers.referrers_tag(PACK_DIGEST) == "sha256-" + "a" * 64


def test_index_update_keeps_others_appends_once_and_writes_go_order() -> None:
    ours = referrer()
    theirs = {"artifactType": "application/vnd.dev.cosign", "digest": "sha256:" + "1" * 64, "size": 9, "mediaType": "m"}
    index = referrers.with_referrer([theirs, dict(theirs)], ours)  # a duplicate entry is dropped
    assert index is not None
    entries = referrers.parse_index(index, "test")
    assert [e["digest"] for e in entries] == [theirs["digest"], ours.descriptor.digest]
    assert list(entries[0]) == ["mediaType", "digest", "size", "artifactType"]
    assert entries[1] == ours.index_entry()
    assert index.startswith(b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[')
    assert referrers.with_referrer(entries, ours) is None  # listed: nothing to write
    assert referrers.lists(entries, ours.descriptor.digest)


def test_first_index_matches_what_oras_go_writes() -> None:
    """The index oras 1.3.3 left under sha256-<hex> for one `oras attach` (bytes seen on distribution 2.8)."""
    ours = referrer()
    index = referrers.with_referrer([], ours)
    expected = (
        '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":'
        f'"application/vnd.oci.image.manifest.v1+json","digest":"{ours.descriptor.digest}","size":'
        f'{ours.descriptor.size},"annotations":{{"org.opencontainers.image.created":"2026-01-02T03:04:05Z"}},'
        '"artifactType":"application/vnd.cyclonedx+json"}]}'
    )
    assert index == expected.encode()


def test_an_index_that_is_not_one_is_refused() -> None:
    with pytest.raises(PublisherError, match="not an OCI image index"):
        referrers.parse_index(b'{"manifests": "no"}', "where")
