"""Referrers on the built-in client, by the distribution spec (v1.1): list them, attach one.

Listing asks the referrers API (`GET /v2/<name>/referrers/<digest>`); a registry without it answers
404 (distribution 2.8, GHCR), and then the tag-schema index (`<name>:sha256-<hex>`) is read.

Attaching uploads the blobs, then puts the manifest by its digest. A registry with the referrers API
answers that with an `OCI-Subject` header and indexes the referrer itself: nothing more to do.
Otherwise the tag-schema index is updated by read-modify-write: read it, add the referrer (keeping
every entry others attached), read it again and write only if nobody changed it meanwhile, then read
it back. Registries such as distribution 2.8 have no conditional `PUT` (`If-Match`), so a writer that
slips in between the second read and the write can still drop the entry: the read after the write
finds that, and the whole cycle runs again, a bounded number of times. Every other writer does the same
for its own entry, so no referrer is lost for good.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..descriptor import digest_of
from ..errors import PublisherError
from ..referrers import INDEX_MEDIA_TYPE, Referrer, lists, parse_index, referrers_tag, with_referrer
from .base import MAX_MANIFEST_BYTES, AttachRequest, NotFound, together

if TYPE_CHECKING:
    from .http import HttpTransport

INDEX_ATTEMPTS = 5  # read-modify-write cycles before giving up on an index other writers keep changing
NO_API = (404, 405)  # how registries without the referrers API answer its URL (distribution 2.8: 404)


@dataclass(frozen=True)
class IndexState:
    digest: str | None  # None: no index under the tag yet
    entries: list[dict[str, Any]]


def _scope(repository: str, action: str) -> str:
    return f"repository:{repository}:{'pull' if action == 'pull' else 'pull,push'}"


def _api_referrers(t: HttpTransport, repository: str, subject: str) -> list[dict[str, Any]] | None:
    """The referrers API's answer, or None when the registry has no such API."""

    def attempt() -> list[dict[str, Any]] | None:
        url = t._url(repository, f"referrers/{subject}")
        response = t._send("GET", url, _scope(repository, "pull"), headers={"Accept": INDEX_MEDIA_TYPE})
        if response.status_code in NO_API:
            response.close()
            return None
        if response.status_code != 200:
            raise t._fail(f"listing the referrers of {subject[:19]}", response)
        kind = response.headers.get("Content-Type", "").split(";")[0].strip()
        body = t._read(response, MAX_MANIFEST_BYTES, "the referrers list", t.policy.read_timeout)
        if kind != INDEX_MEDIA_TYPE:
            return None  # not the API (a catch-all page): the tag schema decides
        return parse_index(body, f"{t.registry}/{repository}: the referrers of {subject[:19]}")

    return t._retrying(f"listing the referrers of {repository}@{subject[:19]}", attempt)  # type: ignore[no-any-return]


def read_index(t: HttpTransport, repository: str, tag: str) -> IndexState:
    """The tag-schema index under `tag`, with the digest of the bytes read (None when there is none)."""

    def attempt() -> IndexState:
        url = t._url(repository, f"manifests/{tag}")
        response = t._send("GET", url, _scope(repository, "pull"), headers={"Accept": INDEX_MEDIA_TYPE})
        if response.status_code == 404:
            response.close()
            raise NotFound(tag)
        if response.status_code != 200:
            raise t._fail(f"reading the referrers index {tag}", response)
        body = t._read(response, MAX_MANIFEST_BYTES, f"the referrers index {tag}", t.policy.read_timeout)
        return IndexState(digest_of(body), parse_index(body, f"{t.registry}/{repository}:{tag}"))

    try:
        return t._retrying(f"reading {repository}:{tag}", attempt)  # type: ignore[no-any-return]
    except NotFound:
        return IndexState(None, [])


def referrers(t: HttpTransport, repository: str, subject: str) -> list[dict[str, Any]]:
    found = _api_referrers(t, repository, subject)
    if found is not None:
        return found
    return read_index(t, repository, referrers_tag(subject)).entries


def attach(t: HttpTransport, request: AttachRequest) -> None:
    referrer, repository = request.referrer, request.repository
    sources: dict[str, Path | bytes] = {referrer.blobs[0].digest: b"{}", referrer.layer.digest: request.document}
    together([functools.partial(t._upload_blob, repository, blob, sources[blob.digest]) for blob in referrer.blobs])
    subject_header = t._put_manifest(repository, referrer.descriptor.digest, referrer.manifest)
    if subject_header:  # the registry indexes referrers itself (the referrers API)
        return
    update_index(t, repository, referrer)


def update_index(t: HttpTransport, repository: str, referrer: Referrer) -> None:
    """Add `referrer` to its subject's tag-schema index by read-modify-write, retried while others write it."""
    tag = referrers_tag(referrer.subject.digest)
    for _ in range(INDEX_ATTEMPTS):
        before = read_index(t, repository, tag)
        updated = with_referrer(before.entries, referrer)
        if updated is None:
            return  # listed already (an earlier run, or this one's previous cycle)
        if read_index(t, repository, tag).digest != before.digest:
            continue  # another writer changed it since it was read: start over from what it holds now
        t._put_manifest(repository, tag, updated, INDEX_MEDIA_TYPE)
        if lists(read_index(t, repository, tag).entries, referrer.descriptor.digest):
            return
    raise PublisherError(
        f"{t.registry}/{repository}:{tag}: the referrers index kept changing under other writers "
        f"({INDEX_ATTEMPTS} attempts); run again to attach {referrer.descriptor.short}"
    )
