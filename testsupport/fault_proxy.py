"""A programmable HTTP proxy between the publisher and a real registry, for fault-injection tests.

Rules match a method and a path pattern and fire a given number of times (or forever):
`status` (answer 500/502/503/504 or 429 with Retry-After, without forwarding), `reset` (read half
of the request body, then reset the connection), `stall` (wait past the client's timeout, then
close), `cut` (forward, then send only half of the response body), `bad-digest` (forward, but
report a wrong Docker-Content-Digest), `html` (answer 200 with an HTML page), `delay` (wait
`stall_seconds`, then forward: a remote registry's latency, for benchmarks).
The Host header is passed through, so the registry's Location headers point back at the proxy.
"""

from __future__ import annotations

import http.client
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization"}


@dataclass
class Rule:
    method: str
    path: str  # a regular expression searched in the request path
    action: str
    times: int | None = 1  # None: forever
    status: int = 503
    retry_after: str | None = None
    stall_seconds: float = 30.0
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            (self.times is None or self.fired < self.times)
            and method == self.method
            and bool(re.search(self.path, path))
        )


@dataclass
class FaultProxy:
    upstream_port: int
    rules: list[Rule] = field(default_factory=list)
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, what happened)

    def __post_init__(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def do_GET(self) -> None:
                proxy.handle(self)

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.lock = threading.Lock()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def add(self, rule: Rule) -> Rule:
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _pick(self, method: str, path: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.fired += 1
                    return rule
        return None

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        method, path = req.command, req.path
        length = int(req.headers.get("Content-Length") or 0)
        rule = self._pick(method, path)
        action = rule.action if rule else "forward"
        self.seen.append((method, path, action))
        if rule and rule.action == "reset":
            req.rfile.read(length // 2)
            req.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            req.close_connection = True
            req.connection.close()
            return
        body = req.rfile.read(length) if length else b""
        if rule and rule.action == "stall":
            time.sleep(rule.stall_seconds)
            req.close_connection = True
            return
        if rule and rule.action == "delay":
            time.sleep(rule.stall_seconds)
        if rule and rule.action in ("status", "html"):
            code = 200 if rule.action == "html" else rule.status
            page = b"<html><body><h1>Bad gateway</h1></body></html>"
            req.send_response(code)
            req.send_header("Content-Type", "text/html")
            req.send_header("Content-Length", str(len(page)))
            if rule.retry_after is not None:
                req.send_header("Retry-After", rule.retry_after)
            req.end_headers()
            if method != "HEAD":
                req.wfile.write(page)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        upstream.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for key, value in req.headers.items():
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                upstream.putheader(key, value)
        upstream.putheader("Content-Length", str(len(body)))
        upstream.endheaders(body)
        response = upstream.getresponse()
        payload = response.read()
        req.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() in HOP_BY_HOP or key.lower() == "content-length":
                continue
            if rule and rule.action == "bad-digest" and key.lower() == "docker-content-digest":
                value = "sha256:" + "f" * 64
            req.send_header(key, value)
        req.send_header("Content-Length", str(len(payload)))
        req.end_headers()
        if method != "HEAD":
            if rule and rule.action == "cut":
                req.wfile.write(payload[: len(payload) // 2])
                req.wfile.flush()
                req.close_connection = True
                req.connection.shutdown(socket.SHUT_RDWR)
                return
            req.wfile.write(payload)
        upstream.close()
