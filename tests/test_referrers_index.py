"""The built-in client's read-modify-write of the tag-schema referrers index, against a real docker-registry
(2.8: no referrers API, no conditional PUT), with another writer stepping in at the worst moment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from pack_publisher.oci.descriptor import describe, file_descriptor
from pack_publisher.oci.manifest import MANIFEST_MEDIA_TYPE, compose
from pack_publisher.oci.referrers import (
    CYCLONEDX_MEDIA_TYPE,
    INDEX_MEDIA_TYPE,
    Referrer,
    compose_index,
    compose_sbom_referrer,
    referrers_tag,
)
from pack_publisher.registry.http import HttpTransport
from pack_publisher.registry.http_referrers import INDEX_ATTEMPTS
from pack_publisher.registry.retry import RetryPolicy
from pack_publisher.registry.transport import AttachRequest, PushRequest
from pack_publisher.runtime.errors import PublisherError
from testsupport.registries import Registry

from .conftest import PROJECT

REPO = "acme/greentic-packs/race"
LAYER = PROJECT / "tests" / "data" / "oras-1.3.3" / "layer.gtpack"


class StaleWriter(HttpTransport):
    """The built-in client, with another writer putting its stale index right after each of ours (`times`)."""

    def __init__(self, registry: Registry, stale_index: bytes, times: int) -> None:
        super().__init__(registry.host, None, True, RetryPolicy(attempts=1))
        self.url = registry.url
        self.stale_index = stale_index
        self.times = times
        self.index_puts = 0

    def _put_manifest(
        self, repository: str, tag: str, manifest: bytes, media_type: str = MANIFEST_MEDIA_TYPE
    ) -> str | None:
        answer = super()._put_manifest(repository, tag, manifest, media_type)
        if media_type == INDEX_MEDIA_TYPE:
            self.index_puts += 1
            if self.times > 0:
                self.times -= 1
                put = requests.put(
                    f"{self.url}/v2/{repository}/manifests/{tag}",
                    data=self.stale_index,
                    headers={"Content-Type": INDEX_MEDIA_TYPE},
                    timeout=10,
                )
                assert put.status_code == 201, put.text
        return answer


def pushed_subject(registry: Registry, folder: Path) -> Any:
    layer = file_descriptor("application/vnd.greentic.gtpack.v1+zip", LAYER)
    artifact = compose(layer, "race.gtpack", {"org.opencontainers.image.created": "2026-01-02T03:04:05Z"})
    client = HttpTransport(registry.host, None, True)
    client.push(PushRequest(repository=REPO, tags=["1.0.0"], gtpack=LAYER, artifact=artifact))
    client.close()
    return artifact.descriptor


def sbom_referrer(folder: Path, subject: Any, text: str) -> tuple[Referrer, Path]:
    document = folder / f"{text}.cdx.json"
    document.write_text(json.dumps({"bomFormat": "CycloneDX", "note": text}))
    described = describe(CYCLONEDX_MEDIA_TYPE, document.read_bytes())
    return compose_sbom_referrer(described, document.name, subject, "2026-01-02T03:04:05Z"), document


def index_digests(registry: Registry, subject_digest: str) -> list[str]:
    answer = requests.get(
        f"{registry.url}/v2/{REPO}/manifests/{referrers_tag(subject_digest)}",
        headers={"Accept": INDEX_MEDIA_TYPE},
        timeout=10,
    )
    assert answer.status_code == 200
    return [m["digest"] for m in answer.json()["manifests"]]


def test_an_entry_dropped_by_a_stale_writer_is_put_back_and_others_are_kept(registry: Registry, tmp_path: Path) -> None:
    subject = pushed_subject(registry, tmp_path)
    other, other_doc = sbom_referrer(tmp_path, subject, "other")
    plain = HttpTransport(registry.host, None, True)
    plain.attach(AttachRequest(repository=REPO, referrer=other, document=other_doc))  # someone else's referrer
    assert index_digests(registry, subject.digest) == [other.descriptor.digest]

    ours, our_doc = sbom_referrer(tmp_path, subject, "ours")
    racing = StaleWriter(registry, compose_index([other.index_entry()]), times=1)
    racing.attach(AttachRequest(repository=REPO, referrer=ours, document=our_doc))
    assert racing.index_puts == 2  # the first write was lost to the stale writer, found, and written again
    assert index_digests(registry, subject.digest) == [other.descriptor.digest, ours.descriptor.digest]
    assert {r["digest"] for r in plain.referrers(REPO, subject.digest)} == {
        other.descriptor.digest,
        ours.descriptor.digest,
    }

    again = StaleWriter(registry, b"", times=0)
    again.attach(AttachRequest(repository=REPO, referrer=ours, document=our_doc))
    assert again.index_puts == 0  # listed already: nothing written


def test_an_index_that_keeps_changing_is_an_error_after_bounded_attempts(registry: Registry, tmp_path: Path) -> None:
    subject = pushed_subject(registry, tmp_path)
    other, other_doc = sbom_referrer(tmp_path, subject, "other")
    HttpTransport(registry.host, None, True).attach(AttachRequest(repository=REPO, referrer=other, document=other_doc))
    ours, our_doc = sbom_referrer(tmp_path, subject, "ours")
    racing = StaleWriter(registry, compose_index([other.index_entry()]), times=1000)
    with pytest.raises(PublisherError, match=r"the referrers index kept changing under other writers \(5 attempts\)"):
        racing.attach(AttachRequest(repository=REPO, referrer=ours, document=our_doc))
    assert racing.index_puts == INDEX_ATTEMPTS
    assert index_digests(registry, subject.digest) == [other.descriptor.digest]  # never left without the others'
