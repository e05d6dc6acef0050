"""A pack's push on the built-in client: its blobs, then its manifests and its SBOM referrer's.

The blobs go up side by side, each upload started as a mount of the blob from the pack's own
repository (distribution spec: `POST .../blobs/uploads/?mount=<digest>&from=<name>`): a registry
holding the blob answers 201 and nothing is sent, one that does not opens the upload (202), so the
existence check costs no round trip of its own. Then the manifest under each tag in order, beside the
referrer's manifest and, on a registry known to use the referrers tag schema, the read of its index;
then that index. Four round trips for a fresh pack with its SBOM (an upload's start, its bytes, the
manifests, the index) where one step after another took eight; the proof reads the index back
(`commands.push.prove_one` lists the referrer beside the pack's read-back).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urljoin

from pack_publisher.oci.descriptor import Descriptor
from pack_publisher.registry import http_referrers
from pack_publisher.registry.connections import CountedFile, finish
from pack_publisher.registry.retry import Transient
from pack_publisher.registry.transport import PushOutcome, PushRequest
from pack_publisher.runtime.errors import PublisherError
from pack_publisher.runtime.parallel import together

if TYPE_CHECKING:
    from pack_publisher.registry.http import HttpTransport

ASK_BEFORE_SENDING = 4 * 1024 * 1024  # a blob this large is asked for when its mount opened an upload


def push(t: HttpTransport, request: PushRequest) -> PushOutcome:
    """The blobs (each skipped when present), then the rest; a `staged` request leaves the rest to `commit`."""
    artifact, referrer = request.artifact, request.referrer
    uploads: list[Callable[[], Any]] = [
        functools.partial(
            upload_blob,
            t,
            request.repository,
            blob,
            request.gtpack if blob == artifact.layer else b"{}",
            request.on_sent,
        )
        for blob in artifact.blobs
    ]
    extra = [] if referrer is None else http_referrers.uploads(referrer)
    extra = [(blob, source) for blob, source in extra if blob not in artifact.blobs]  # the empty config is shared
    uploads += [functools.partial(upload_blob, t, request.repository, *upload) for upload in extra]
    done = together(uploads)  # every blob is in before any manifest names it
    sent = sum(done[: len(artifact.blobs)])

    def tags() -> None:
        for tag in request.tags:
            t._put_manifest(request.repository, tag, artifact.manifest)

    def commit() -> PushOutcome:
        if referrer is None:
            tags()
            return PushOutcome(uploaded_blobs=sent)
        if t.tag_schema:  # the manifests and the index's read side by side, then the index
            steps: list[Callable[[], Any]] = [
                tags,
                functools.partial(http_referrers.put_referrer_manifest, t, referrer),
                functools.partial(http_referrers.read_subject_index, t, referrer),
            ]
            _, indexed, index = together(steps)
            if not indexed:
                http_referrers.write_index(t, referrer, index)
        else:  # registries with the API must accept a referrer first (spec 1.1), yet some refuse one (GitLab's)
            tags()
            http_referrers.put_referrer(t, referrer)
        return PushOutcome(uploaded_blobs=sent, referrer_written=True)

    if request.staged:
        return PushOutcome(uploaded_blobs=sent, referrer_written=referrer is not None, commit=commit)
    return commit()


def upload_blob(
    t: HttpTransport,
    repository: str,
    blob: Descriptor,
    source: Path | bytes,
    on_sent: Callable[[int], None] | None = None,
) -> bool:
    """Upload unless present (True when bytes were sent); files stream from disk, never read whole.

    A registry that ignores `mount` (ECR, unless blob mounting is on) opens an upload for a blob it
    holds: one of `ASK_BEFORE_SENDING` or more is then asked for before its bytes go (a round trip is
    little beside sending them again); a smaller one is sent again, which is correct and costs less.
    """
    scope = f"repository:{repository}:pull,push"

    def body() -> bytes | IO[bytes]:
        if isinstance(source, bytes):
            return source
        return CountedFile(source, on_sent) if on_sent is not None else source.open("rb")

    def attempt() -> bool:
        start = t._send("POST", t._url(repository, f"blobs/uploads/?mount={blob.digest}&from={repository}"), scope)
        if start.status_code == 201:
            finish(start)
            return False
        if start.status_code != 202 or "Location" not in start.headers:
            raise t._fail("starting a blob upload", start)
        finish(start)
        location = urljoin(t._url(repository, "blobs/uploads/"), start.headers["Location"])
        if blob.size >= ASK_BEFORE_SENDING and t.blob_exists(repository, blob.digest):
            with contextlib.suppress(Transient, PublisherError):  # the session opened for nothing goes
                finish(t._send("DELETE", location, scope))
            return False
        separator = "&" if "?" in location else "?"
        done = t._send(
            "PUT",
            f"{location}{separator}digest={blob.digest}",
            scope,
            body=body,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)},
        )
        if done.status_code != 201:
            raise t._fail(f"uploading blob {blob.short}", done)
        finish(done)
        return True

    return bool(t._retrying(f"uploading blob {blob.short} to {repository}", attempt))
