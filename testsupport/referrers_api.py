"""A registry with the OCI 1.1 referrers API, for tests: a small proxy in front of docker-registry (2.8 has none).

It forwards every request to the real registry and adds what the distribution spec v1.1 asks of a
registry with the API: a manifest `PUT` whose manifest has a `subject` is answered with
`OCI-Subject: <subject digest>`, and `GET /v2/<name>/referrers/<digest>` answers an image index of the
manifests stored with that subject (their artifactType and annotations, filtered by `?artifactType=`),
or, for a repository the registry does not hold yet, 404 NAME_UNKNOWN, as Quay does.
The referrers it knows are those put through it, kept in memory: enough for one test's registry.
With `api=False` it passes every request through unchanged (a registry without the API, as docker-registry
2.8 is), for tests that only watch or hold requests by overriding `handle`.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .serving import serve_every_method

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization"}
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
_REFERRERS = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>sha256:[0-9a-f]{64})$")
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)$")


class ReferrersApiProxy:
    """docker-registry behind a proxy that implements the referrers API; `host` is what OCI_REGISTRY takes."""

    def __init__(self, upstream_port: int, *, api: bool = True) -> None:
        self.upstream_port = upstream_port
        self.api = api
        self.referrers: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (name, subject) -> descriptors
        self.seen: list[tuple[str, str]] = []  # (method, path) of every request
        self.lock = threading.Lock()
        self.server = serve_every_method(self.handle)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(req.path)
        with self.lock:
            self.seen.append((req.command, parts.path))
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        api = _REFERRERS.match(parts.path) if self.api else None
        if api and req.command == "GET":
            self._answer_referrers(req, api["name"], api["digest"], parse_qs(parts.query).get("artifactType"))
            return
        status, headers, payload = self._forward(req, body)
        manifest = _MANIFEST.match(parts.path) if self.api else None
        if manifest and req.command == "PUT" and status == 201:
            subject = self._record(manifest["name"], body, headers)
            if subject is not None:
                headers.append(("OCI-Subject", subject))
        req.send_response(status)
        for key, value in headers:
            req.send_header(key, value)
        if req.command != "HEAD":
            req.send_header("Content-Length", str(len(payload)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(payload)

    def _forward(self, req: BaseHTTPRequestHandler, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            upstream.putrequest(req.command, req.path, skip_host=True, skip_accept_encoding=True)
            for key, value in req.headers.items():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    upstream.putheader(key, value)
            upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body)
            response = upstream.getresponse()
            payload = response.read()
            # a HEAD answer keeps its Content-Length (the size of what a GET would send: a manifest's size)
            dropped = HOP_BY_HOP | ({"content-length"} if req.command != "HEAD" else set())
            headers = [(k, v) for k, v in response.getheaders() if k.lower() not in dropped]
            return response.status, headers, payload
        finally:
            upstream.close()

    def _repository_exists(self, name: str) -> bool:
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            upstream.request("GET", f"/v2/{name}/tags/list")
            response = upstream.getresponse()
            response.read()
            return response.status == 200
        finally:
            upstream.close()

    def _record(self, name: str, body: bytes, headers: list[tuple[str, str]]) -> str | None:
        """Remember a stored manifest that has a subject; the subject's digest, or None."""
        try:
            manifest = json.loads(body)
            subject = manifest["subject"]["digest"]
        except (ValueError, KeyError, TypeError):
            return None
        digest = dict((k.lower(), v) for k, v in headers).get("docker-content-digest", "")
        entry: dict[str, Any] = {"mediaType": manifest.get("mediaType"), "digest": digest, "size": len(body)}
        if manifest.get("annotations"):
            entry["annotations"] = manifest["annotations"]
        entry["artifactType"] = manifest.get("artifactType") or manifest.get("config", {}).get("mediaType")
        with self.lock:
            listed = self.referrers.setdefault((name, subject), [])
            if all(e["digest"] != digest for e in listed):
                listed.append(entry)
        return str(subject)

    def _answer_referrers(
        self, req: BaseHTTPRequestHandler, name: str, digest: str, artifact_types: list[str] | None
    ) -> None:
        if not self._repository_exists(name):  # as Quay and others: the spec's 200 assumes a repository found
            error = json.dumps({"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known"}]})
            req.send_response(404)
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(error)))
            req.end_headers()
            req.wfile.write(error.encode())
            return
        with self.lock:
            listed = list(self.referrers.get((name, digest), []))
        if artifact_types:
            listed = [e for e in listed if e.get("artifactType") in artifact_types]
        payload = json.dumps({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": listed}).encode()
        req.send_response(200)
        req.send_header("Content-Type", INDEX_MEDIA_TYPE)
        if artifact_types:
            req.send_header("OCI-Filters-Applied", "artifactType")
        req.send_header("Content-Length", str(len(payload)))
        req.end_headers()
        req.wfile.write(payload)
