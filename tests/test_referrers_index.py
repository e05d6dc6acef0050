"""The built-in client's read-modify-write of the tag-schema referrers index, against a real docker-registry
(2.8: no referrers API, no conditional PUT), with another writer stepping in at the worst moment."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
from testsupport.referrers_api import ReferrersApiProxy
from testsupport.registries import Registry

from .conftest import PROJECT
from .test_retry import FakeClock

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


# the first listing of a run: the API's answer and the tag-schema index read side by side

HOLD_SECONDS = 10  # how long the first API answer waits for the index read; only a client asking in turn waits


class FirstAnswerHeld(ReferrersApiProxy):
    """docker-registry behind a proxy that holds its first referrers-API answer until the tag-schema index of
    the same subject is asked for: only a client that reads the index beside the API is answered at once.
    `has_api`: the proxy answers the API (ReferrersApiProxy), else passes it to docker-registry 2.8 (404)."""

    def __init__(self, upstream_port: int, *, has_api: bool) -> None:
        self.index_asked = threading.Event()
        self.held: list[bool] = []  # for the first API request: whether the index read came while it waited
        super().__init__(upstream_port, api=has_api)

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        path = urlsplit(req.path).path
        if req.command == "GET" and "/manifests/sha256-" in path:
            self.index_asked.set()
        if "/referrers/" in path:
            with self.lock:
                first = not self.held
                self.held.append(False)
            if first:
                self.held[0] = self.index_asked.wait(HOLD_SECONDS)
        super().handle(req)


def asked(proxy: ReferrersApiProxy, part: str) -> int:
    """How many GETs the proxy passed whose path holds `part`."""
    with proxy.lock:
        return sum(1 for method, path in proxy.seen if method == "GET" and part in path)


def pushed_through_api(proxy: ReferrersApiProxy, folder: Path) -> tuple[Any, Referrer]:
    """A pack pushed through a registry with the referrers API, and its SBOM referrer, which the API indexes."""
    writer = HttpTransport(proxy.host, None, True)
    layer = file_descriptor("application/vnd.greentic.gtpack.v1+zip", LAYER)
    artifact = compose(layer, "race.gtpack", {"org.opencontainers.image.created": "2026-01-02T03:04:05Z"})
    writer.push(PushRequest(repository=REPO, tags=["1.0.0"], gtpack=LAYER, artifact=artifact))
    ours, document = sbom_referrer(folder, artifact.descriptor, "ours")
    writer.attach(AttachRequest(repository=REPO, referrer=ours, document=document))
    return artifact.descriptor, ours


def test_without_the_api_the_first_listing_reads_the_index_beside_it_and_later_ones_the_index_alone(
    registry: Registry, tmp_path: Path
) -> None:
    subject = pushed_subject(registry, tmp_path)
    ours, document = sbom_referrer(tmp_path, subject, "ours")
    HttpTransport(registry.host, None, True).attach(AttachRequest(repository=REPO, referrer=ours, document=document))
    proxy = FirstAnswerHeld(registry.port, has_api=False)
    try:
        reader = HttpTransport(proxy.host, None, True)
        assert reader.referrers_api is None  # a run that pushed nothing through this client does not know yet
        assert [r["digest"] for r in reader.referrers(REPO, subject.digest)] == [ours.descriptor.digest]
        assert proxy.held == [True], "the index was read only after the API's answer"
        assert reader.referrers_api is False
        assert [r["digest"] for r in reader.referrers(REPO, subject.digest)] == [ours.descriptor.digest]
        assert asked(proxy, "/referrers/") == 1 and asked(proxy, "/manifests/sha256-") == 2  # the API not asked again
    finally:
        proxy.close()


def test_with_the_api_its_answer_stands_and_later_listings_ask_it_alone(registry: Registry, tmp_path: Path) -> None:
    proxy = FirstAnswerHeld(registry.port, has_api=True)
    try:
        subject, ours = pushed_through_api(proxy, tmp_path)
        stale, stale_document = sbom_referrer(tmp_path, subject, "stale")
        behind = HttpTransport(registry.host, None, True)  # an older tool, past the proxy: a tag-schema index
        behind.attach(AttachRequest(repository=REPO, referrer=stale, document=stale_document))
        assert index_digests(registry, subject.digest) == [stale.descriptor.digest]

        reader = HttpTransport(proxy.host, None, True)
        assert [r["digest"] for r in reader.referrers(REPO, subject.digest)] == [ours.descriptor.digest]
        assert proxy.held == [True] and reader.referrers_api is True
        index_reads = asked(proxy, "/manifests/sha256-")
        assert [r["digest"] for r in reader.referrers(REPO, subject.digest)] == [ours.descriptor.digest]
        assert asked(proxy, "/manifests/sha256-") == index_reads  # known to have the API: the index is not read
    finally:
        proxy.close()


class IndexUnavailable(ReferrersApiProxy):
    """A registry whose tag-schema index reads answer 503 (`failures` times), the API as `api` says."""

    def __init__(self, upstream_port: int, *, api: bool, failures: int) -> None:
        self.failures = failures
        super().__init__(upstream_port, api=api)

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        path = urlsplit(req.path).path
        if req.command == "GET" and "/manifests/sha256-" in path:
            with self.lock:
                failing = self.failures > 0
                self.failures -= 1
                if failing:  # answered here: the pass-through below records the others
                    self.seen.append((req.command, path))
            if failing:
                req.send_response(503)
                req.send_header("Retry-After", "1")
                req.send_header("Content-Length", "0")
                req.end_headers()
                return
        super().handle(req)


def test_the_index_read_beside_the_api_is_one_attempt(registry: Registry, tmp_path: Path) -> None:
    """An index that answers 503 never holds up the API's answer with its retries (nor their waits)."""
    proxy = IndexUnavailable(registry.port, api=True, failures=1000)
    try:
        subject, ours = pushed_through_api(proxy, tmp_path)
        clock = FakeClock()
        reader = HttpTransport(proxy.host, None, True, RetryPolicy(attempts=5, clock=clock))
        assert [r["digest"] for r in reader.referrers(REPO, subject.digest)] == [ours.descriptor.digest]
        assert asked(proxy, "/manifests/sha256-") == 1 and clock.slept == []
    finally:
        proxy.close()


def test_without_the_api_a_failed_index_read_beside_it_is_retried(registry: Registry, tmp_path: Path) -> None:
    subject = pushed_subject(registry, tmp_path)
    ours, document = sbom_referrer(tmp_path, subject, "ours")
    HttpTransport(registry.host, None, True).attach(AttachRequest(repository=REPO, referrer=ours, document=document))
    proxy = IndexUnavailable(registry.port, api=False, failures=2)
    try:
        clock = FakeClock()
        reader = HttpTransport(proxy.host, None, True, RetryPolicy(attempts=5, clock=clock))
        assert [r["digest"] for r in reader.referrers(REPO, subject.digest)] == [ours.descriptor.digest]
        # the read beside the API, then the retried one: a 503, then the index
        assert asked(proxy, "/manifests/sha256-") == 3
        assert clock.slept == [1.0]  # the 503's Retry-After, once
    finally:
        proxy.close()
