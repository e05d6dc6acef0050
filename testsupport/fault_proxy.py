"""A programmable HTTP proxy between the publisher and a real registry, for fault-injection tests.

Rules match a method and a path pattern and fire a given number of times (or forever):
`status` (answer 500/502/503/504 or 429 with Retry-After, without forwarding, with a gateway's HTML
page or the registry's JSON error body), `reset` (read half
of the request body, then reset the connection), `stall` (wait past the client's timeout, then
close), `cut` (forward, then send only half of the response body), `bad-digest` (forward, but
report a wrong Docker-Content-Digest), `html` (answer 200 with an HTML page), `delay` (wait
`stall_seconds`, then forward), `claim` (answer 200 with `Content-Length: 0`, as a registry that
threw a blob away but still says it holds it).
The Host header is passed through, so the registry's Location headers point back at the proxy.

`LatencyProxy` is the fixed-latency mode the benchmarks use: a registry across a network, 20 ms away.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from .serving import serve_every_method

# The registry's own error codes for a status (distribution's errcode), as its JSON error bodies carry them.
REGISTRY_ERROR_CODES = {401: "UNAUTHORIZED", 429: "TOOMANYREQUESTS", 500: "UNKNOWN", 503: "UNAVAILABLE"}
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
    body: str = "html"  # for `status`: "html" (a gateway's page) or "json" (the registry's own error answer)
    headers: dict[str, str] = field(default_factory=dict)  # extra headers of a `status` answer
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
        self.lock = threading.Lock()
        self.server = serve_every_method(self.handle)

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
        if rule and rule.action == "claim":  # "I hold it": 200, nothing behind it (a blob thrown away)
            req.send_response(200)
            req.send_header("Docker-Content-Digest", path.rsplit("/", 1)[-1].split("?")[0])
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        if rule and rule.action in ("status", "html"):
            code = 200 if rule.action == "html" else rule.status
            page = b"<html><body><h1>Bad gateway</h1></body></html>"
            kind = "text/html"
            if rule.action == "status" and rule.body == "json":
                error = REGISTRY_ERROR_CODES.get(code, "UNKNOWN")
                page = json.dumps({"errors": [{"code": error, "message": f"injected {code}"}]}).encode()
                kind = "application/json"
            req.send_response(code)
            req.send_header("Content-Type", kind)
            req.send_header("Content-Length", str(len(page)))
            for key, value in rule.headers.items():
                req.send_header(key, value)
            if rule.retry_after is not None:
                req.send_header("Retry-After", rule.retry_after)
            req.end_headers()
            if method != "HEAD":
                req.wfile.write(page)
            return
        if rule and rule.action == "no-mount":  # a registry that ignores `mount`: an upload starts either way
            path = path.split("?", 1)[0]
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
            # a HEAD answer keeps its Content-Length: the size of what a GET sends (oras resolves sizes so)
            if key.lower() in HOP_BY_HOP or (key.lower() == "content-length" and method != "HEAD"):
                continue
            if rule and rule.action == "bad-digest" and key.lower() == "docker-content-digest":
                value = "sha256:" + "f" * 64
            req.send_header(key, value)
        if method != "HEAD":
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


class LatencyProxy:
    """A TCP relay to a local registry that delivers everything the client sends `latency` seconds late.

    Each request then takes `latency` longer, as with a registry one network round trip away, and the
    relay costs next to no CPU: unlike `FaultProxy` (an HTTP proxy in Python, buffering each body and
    opening a new upstream connection per request) it parses nothing and keeps each client connection
    to its own upstream connection, so on a 2-core machine the measurement is not the proxy's. Bytes
    are delayed in order, chunk by chunk, so a body streams through with the same delay as its headers.
    """

    def __init__(self, upstream_port: int, latency: float) -> None:
        self.upstream_port = upstream_port
        self.latency = latency
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._server: asyncio.base_events.Server | None = None
        self._relays: set[asyncio.Task[None] | None] = set()
        self.port = 0
        self._thread = threading.Thread(target=self._serve_forever, daemon=True)
        self._thread.start()
        self._started.wait()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop serving and end every relayed connection; the relay's thread ends with its loop."""

        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def _serve_forever(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._relay, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()

    async def _relay(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        # asyncio holds tasks weakly: a relay waiting on its streams could be collected mid-way without this
        task = asyncio.current_task()
        self._relays.add(task)
        try:
            upstream_in, upstream_out = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_out.close()
            self._relays.discard(task)
            return
        try:
            await asyncio.gather(
                self._pump(client_in, upstream_out, self.latency),
                self._pump(upstream_in, client_out, 0.0),
                return_exceptions=True,
            )
        except asyncio.CancelledError:
            pass  # closing the relay: asyncio would log a cancelled connection handler as an error
        finally:
            for writer in (client_out, upstream_out):
                writer.close()
            self._relays.discard(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, delay: float) -> None:
        """Copy `source` to `sink`, each chunk `delay` seconds after it arrived; end it when `source` ends."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        broken = asyncio.Event()

        async def receive() -> None:
            with contextlib.suppress(OSError):
                while not broken.is_set() and (chunk := await source.read(256 * 1024)):
                    queue.put_nowait((loop.time() + delay, chunk))
            queue.put_nowait((loop.time() + delay, b""))

        async def deliver() -> None:
            try:
                while True:
                    due, chunk = await queue.get()
                    if due > loop.time():
                        await asyncio.sleep(due - loop.time())
                    if not chunk:
                        sink.write_eof()
                        return
                    sink.write(chunk)
                    await sink.drain()
            except OSError:
                broken.set()  # the other side is gone: stop reading for it

        await asyncio.gather(receive(), deliver())
