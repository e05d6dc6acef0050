"""The tag-schema referrers index, updated by read-modify-write: one algorithm for both transports.

Registries without the referrers API (GHCR, distribution 2.8) list a subject's referrers in an image
index tagged `sha256-<hex>`. Adding one: read the index, add the referrer (keeping every entry others
attached), write it, then read it back. Registries such as distribution 2.8 have no conditional `PUT`
(`If-Match`), so a writer slipping in between the read and the write can drop the entry: the read
after the write finds that, and the cycle runs again, a bounded number of times. (A second read just
before the write, once done here, narrowed that window by nothing that matters, a round trip, and cost
one request per referrer.) Every other writer does the same for its own entry, so no referrer stays
lost. The transports give the reads and writes (HTTP requests, oras commands).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pack_publisher.oci.referrers import Referrer, lists, referrers_tag, with_referrer
from pack_publisher.runtime.errors import PublisherError

INDEX_ATTEMPTS = 5  # read-modify-write cycles before giving up on an index other writers keep changing


def update_index(
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
