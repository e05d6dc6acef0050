"""Registries that answer in bad faith: huge bodies and trickling bytes are cut off with one clear line."""

from __future__ import annotations

import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

import pytest

from pack_publisher.errors import PublisherError
from pack_publisher.transports.http import HttpTransport
from pack_publisher.transports.retry import RetryPolicy

from .test_auth_challenges import Answer, server  # noqa: F401 - the fixture

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def transport(host: str) -> HttpTransport:
    return HttpTransport(host, None, True, RetryPolicy(attempts=1, read_timeout=1.0))


def test_a_huge_manifest_is_refused_unread(server: Callable[[Answer], str]) -> None:  # noqa: F811
    def answer(req: BaseHTTPRequestHandler) -> None:
        req.send_response(200)
        req.send_header("Content-Type", MANIFEST_TYPE)
        req.send_header("Content-Length", str(1536 * 1024 * 1024))  # 1.5 GiB announced, never sent
        req.end_headers()

    host = server(answer)
    with pytest.raises(PublisherError) as info:
        transport(host).fetch_manifest("acme/pack", "1.0.0")
    assert info.value.message == f"{host}: manifest 1.0.0 is 1610612736 bytes, over the 4194304-byte limit"


def test_a_trickling_answer_is_cut_off_at_its_deadline(server: Callable[[Answer], str]) -> None:  # noqa: F811
    def answer(req: BaseHTTPRequestHandler) -> None:
        body = b'{"schemaVersion": 2}' + b" " * 40
        req.send_response(200)
        req.send_header("Content-Type", MANIFEST_TYPE)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        for byte in body:  # each byte well within the read timeout, the whole far beyond it
            req.wfile.write(bytes([byte]))
            req.wfile.flush()
            time.sleep(0.1)

    host = server(answer)
    started = time.monotonic()
    with pytest.raises(PublisherError) as info:
        transport(host).fetch_manifest("acme/pack", "1.0.0")
    assert time.monotonic() - started < 3
    assert info.value.message.endswith("manifest 1.0.0 took over 1 s to arrive")
