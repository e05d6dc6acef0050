"""Referrers on the built-in client, by the distribution spec (v1.1): list them, attach one.

Listing asks the referrers API (`GET /v2/<name>/referrers/<digest>`); a registry without it answers
404 (distribution 2.8, GHCR), and then the tag-schema index (`<name>:sha256-<hex>`) is read.

Attaching uploads the blobs, then puts the manifest by its digest. A registry with the referrers API
answers that with an `OCI-Subject` header and indexes the referrer itself: nothing more to do.
Otherwise the tag-schema index is updated by read-modify-write (`index_cycle`). A pack's push on a
registry known to use the tag schema reads the index beside the manifests' `PUT`s and writes it
(`write_index`); the proof that follows lists the referrer, and one missing goes through the cycle.

The cycle, one algorithm for both transports (oras gives it its reads and writes): registries without
the referrers API (GHCR, distribution 2.8) list a subject's referrers in an image index tagged
`sha256-<hex>`. Adding one: read the index, add the referrer (keeping every entry others attached),
write it, then read it back. Registries such as distribution 2.8 have no conditional `PUT` (`If-Match`),
so a writer slipping in between the read and the write can drop the entry: the read after the write
finds that, and the cycle runs again, a bounded number of times. (A second read just before the write,
once done here, narrowed that window by nothing that matters, a round trip, and cost one request per
referrer.) Every other writer does the same for its own entry, so no referrer stays lost.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pack_publisher.oci.descriptor import Descriptor
from pack_publisher.oci.referrers import INDEX_MEDIA_TYPE, Referrer, lists, parse_index, referrers_tag, with_referrer
from pack_publisher.registry.retry import retrying
from pack_publisher.registry.transport import MAX_MANIFEST_BYTES, AttachRequest, NotFound
from pack_publisher.runtime.errors import PublisherError
from pack_publisher.runtime.parallel import together

if TYPE_CHECKING:
    from pack_publisher.registry.http import HttpTransport

INDEX_ATTEMPTS = 5  # read-modify-write cycles before giving up on an index other writers keep changing
NO_API = (404, 405)  # how registries without the referrers API answer its URL (distribution 2.8: 404)


def _scope(repository: str, action: str) -> str:
    return f"repository:{repository}:{'pull' if action == 'pull' else 'pull,push'}"


def _api_referrers(t: HttpTransport, repository: str, subject: str) -> list[dict[str, Any]] | None:
    """The referrers API's answer, or None when the registry has no such API.

    A registry with the API never answers its URL with 404 (distribution spec 1.1), so one such answer
    holds for the whole run: later listings go straight to the tag schema, a round trip fewer per pack.
    """
    if t.referrers_api is False:
        return None

    def attempt() -> list[dict[str, Any]] | None:
        url = t._url(repository, f"referrers/{subject}")
        response = t._send("GET", url, _scope(repository, "pull"), headers={"Accept": INDEX_MEDIA_TYPE})
        if response.status_code in NO_API:
            response.close()
            t.referrers_api = False
            return None
        if response.status_code != 200:
            raise t._fail(f"listing the referrers of {subject[:19]}", response)
        kind = response.headers.get("Content-Type", "").split(";")[0].strip()
        body = t._read(response, MAX_MANIFEST_BYTES, "the referrers list", t.policy.read_timeout)
        if kind != INDEX_MEDIA_TYPE:
            t.referrers_api = False
            return None  # not the API (a catch-all page): the tag schema decides
        listed = parse_index(body, f"{t.registry}/{repository}: the referrers of {subject[:19]}")
        t.referrers_api = True  # an index where the API answers: later listings need no tag-schema read beside
        return listed

    return t._retrying(f"listing the referrers of {repository}@{subject[:19]}", attempt)  # type: ignore[no-any-return]


def read_index(t: HttpTransport, repository: str, tag: str, *, once: bool = False) -> list[dict[str, Any]]:
    """The entries of the tag-schema index under `tag` (none when there is no index); `once`: one attempt."""

    def attempt() -> list[dict[str, Any]]:
        url = t._url(repository, f"manifests/{tag}")
        response = t._send("GET", url, _scope(repository, "pull"), headers={"Accept": INDEX_MEDIA_TYPE})
        if response.status_code == 404:
            response.close()
            raise NotFound(tag)
        if response.status_code != 200:
            raise t._fail(f"reading the referrers index {tag}", response)
        body = t._read(response, MAX_MANIFEST_BYTES, f"the referrers index {tag}", t.policy.read_timeout)
        return parse_index(body, f"{t.registry}/{repository}:{tag}")

    try:
        operation = f"reading {repository}:{tag}"
        if once:
            return retrying(t.policy, t.registry, operation, attempt, attempts=1)
        return t._retrying(operation, attempt)  # type: ignore[no-any-return]
    except NotFound:
        return []


def referrers(t: HttpTransport, repository: str, subject: str) -> list[dict[str, Any]]:
    """The referrers of `subject`: the API's list, else the tag-schema index's.

    While the run does not know whether the registry has the API (the first listing after an oras push,
    or of a pack published before), the index is read beside the API's answer instead of after it: a round
    trip fewer where there is no API, one unused read where there is. That read is one attempt, so the
    API's answer never waits for its retries; where it is needed and failed, it is read again, retried.
    """
    tag = referrers_tag(subject)
    if t.referrers_api is not None:
        found = _api_referrers(t, repository, subject)
        return found if found is not None else read_index(t, repository, tag)

    failed: list[PublisherError] = []

    def api() -> list[dict[str, Any]] | None:
        return _api_referrers(t, repository, subject)

    def index() -> list[dict[str, Any]] | None:
        try:
            return read_index(t, repository, tag, once=True)
        except PublisherError as exc:  # read again below, with retries, if the API's answer does not stand in
            failed.append(exc)
            return None

    found, indexed = together([api, index])
    if found is not None:
        return found
    return read_index(t, repository, tag) if failed else indexed or []


def attach(t: HttpTransport, request: AttachRequest) -> None:
    from pack_publisher.registry.http_push import upload_blob

    together([functools.partial(upload_blob, t, request.repository, *upload) for upload in uploads(request)])
    put_referrer(t, request)


def uploads(request: AttachRequest) -> list[tuple[Descriptor, Path | bytes]]:
    """The referrer's blobs and where their bytes are: its empty config and the document."""
    referrer = request.referrer
    sources: dict[str, Path | bytes] = {referrer.blobs[0].digest: b"{}", referrer.layer.digest: request.document}
    return [(blob, sources[blob.digest]) for blob in referrer.blobs]


def read_subject_index(t: HttpTransport, request: AttachRequest) -> list[dict[str, Any]]:
    """The entries of the tag-schema index of the referrer's subject (none when there is no index)."""
    return read_index(t, request.repository, referrers_tag(request.referrer.subject.digest))


def put_referrer_manifest(t: HttpTransport, request: AttachRequest) -> bool:
    """The referrer's manifest by its digest (its blobs are in); whether the registry indexed it itself."""
    subject_header = t._put_manifest(request.repository, request.referrer.descriptor.digest, request.referrer.manifest)
    t.referrers_api = bool(subject_header)  # a registry with the API must answer with OCI-Subject (spec 1.1)
    t.tag_schema = not subject_header  # only this answer tells: a listing's 404 may mean a repository not there yet
    return bool(subject_header)


def put_referrer(t: HttpTransport, request: AttachRequest) -> None:
    """The referrer's manifest, then, where the registry has no referrers API, the whole index cycle."""
    if not put_referrer_manifest(t, request):
        update_index(t, request.repository, request.referrer)


def write_index(t: HttpTransport, request: AttachRequest, index: list[dict[str, Any]]) -> None:
    """The subject's tag-schema index as read (`index`) with the referrer added, unless listed already.

    Not read back here: the caller lists the referrer afterwards, and one missing (another writer
    slipped in between the read and this write) is indexed again by the whole cycle (`update_index`).
    """
    updated = with_referrer(index, request.referrer)
    if updated is not None:
        tag = referrers_tag(request.referrer.subject.digest)
        t._put_manifest(request.repository, tag, updated, INDEX_MEDIA_TYPE)


def update_index(t: HttpTransport, repository: str, referrer: Referrer) -> None:
    """Add `referrer` to its subject's tag-schema index (`index_cycle`)."""

    def write(tag: str, index: bytes) -> None:
        t._put_manifest(repository, tag, index, INDEX_MEDIA_TYPE)

    index_cycle(functools.partial(read_index, t, repository), write, referrer, f"{t.registry}/{repository}")


def index_cycle(
    read: Callable[[str], list[dict[str, Any]]], write: Callable[[str, bytes], None], referrer: Referrer, where: str
) -> None:
    """Add `referrer` to its subject's tag-schema index, retried while other writers change it."""
    tag = referrers_tag(referrer.subject.digest)
    for _ in range(INDEX_ATTEMPTS):
        updated = with_referrer(read(tag), referrer)
        if updated is None:
            return  # listed already (an earlier run, another writer, or this one's previous cycle)
        write(tag, updated)
        if lists(read(tag), referrer.descriptor.digest):
            return
    raise PublisherError(
        f"{where}:{tag}: the referrers index kept changing under other writers "
        f"({INDEX_ATTEMPTS} attempts); run again to attach {referrer.descriptor.short}"
    )
