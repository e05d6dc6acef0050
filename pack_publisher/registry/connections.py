"""The connections the built-in client opens (on `http.client`): keep-alive connections pooled per host
and proxy, the status line and headers of every answer under a wall-clock deadline, archives counted
as they are sent, and answers read with a size cap and a wall-clock deadline.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import http.client
import io
import itertools
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from pack_publisher.registry.retry import Clock, Transient
from pack_publisher.runtime.errors import PublisherError

CHUNK = 1024 * 1024


def timeout_text(exc: BaseException) -> str:
    """`timed out`, saying which deadline passed when it was the headers deadline."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, HeadersTimedOut):
        cause = cause.__cause__ or cause.__context__
    return str(cause) if cause is not None else "timed out"


def root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return (str(exc) or type(exc).__name__)[:200]


# --- the headers deadline ---------------------------------------------------------------------------
# Hand-written because no HTTP client at hand has a whole-answer deadline: a read timeout is per socket
# read, so a registry sending its status line and headers one byte every half second holds a request as
# long as it likes. A watchdog shuts the socket down when the deadline passes, which ends the blocked
# read at once; `Pool.send` then discards the connection (nothing is left open), and the TimeoutError
# raised here reaches `_send` as a timeout like any other. Bodies have their own
# deadline in `HttpTransport._stream`.
#
# One watchdog thread serves every request of the process (a timer thread started and joined per
# request cost a thread start, a join and two context switches on every request's critical path, which
# under a loaded CPU was milliseconds). It lives while deadlines are pending, then a moment longer for
# the next request, then ends.


class HeadersTimedOut(TimeoutError):
    """The status line and headers did not all arrive within the deadline."""


class _Watchdog:
    """Shuts `sock` down unless stopped within `seconds` (see `_Deadlines`)."""

    def __init__(self, sock: Any, seconds: float) -> None:
        self.sock = sock
        self.deadline = time.monotonic() + seconds
        self.stopped = False
        self.fired = False
        _DEADLINES.watch(self)

    def fire(self) -> None:
        """Called by the watchdog thread, under the deadlines' lock, once the deadline has passed."""
        if self.stopped:
            return
        self.fired = True
        # the plain socket's shutdown, also under TLS (SSLSocket.shutdown would drop the TLS state the
        # reading thread is using)
        if isinstance(self.sock, socket.socket):
            with contextlib.suppress(OSError):  # already closed: nothing left to cut
                socket.socket.shutdown(self.sock, socket.SHUT_RDWR)

    def stop(self) -> bool:
        """Stop watching; True when the deadline had already passed (the socket is then shut)."""
        return _DEADLINES.stop(self)


class _Deadlines:
    """The pending watchdogs, earliest deadline first, and the one thread that fires them."""

    IDLE_SECONDS = 2.0  # how long the thread waits for a next request before it ends

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._pending: list[tuple[float, int, _Watchdog]] = []
        self._order = itertools.count()
        self._running = False

    def watch(self, watchdog: _Watchdog) -> None:
        with self._condition:
            heapq.heappush(self._pending, (watchdog.deadline, next(self._order), watchdog))
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="headers-deadline", daemon=True).start()
            self._condition.notify()

    def stop(self, watchdog: _Watchdog) -> bool:
        with self._condition:  # never at the same time as `fire`
            watchdog.stopped = True
            return watchdog.fired

    def _run(self) -> None:
        with self._condition:
            while True:
                while self._pending and self._pending[0][2].stopped:
                    heapq.heappop(self._pending)  # stopped in time: forgotten here, lazily
                if not self._pending:
                    if not self._condition.wait(self.IDLE_SECONDS) and not self._pending:
                        self._running = False
                        return
                    continue
                deadline, _, watchdog = self._pending[0]
                left = deadline - time.monotonic()
                if left > 0:
                    self._condition.wait(left)
                    continue
                heapq.heappop(self._pending)
                watchdog.fire()


_DEADLINES = _Deadlines()


def _headers_within_deadline(
    connection: http.client.HTTPConnection, read_headers: Callable[[], http.client.HTTPResponse]
) -> http.client.HTTPResponse:
    """`read_headers()` (the status line and headers), ended once `connection.timeout` seconds have passed.

    `Pool.send` sets the connection's timeout to the read timeout (`RetryPolicy.read_timeout`) just before
    reading the answer, so the whole status line and headers must arrive within one read timeout of the
    request having been sent, however the bytes trickle.
    """
    seconds = connection.timeout
    if not isinstance(seconds, int | float) or connection.sock is None:
        return read_headers()
    watchdog = _Watchdog(connection.sock, seconds)
    late = f"timed out (no complete status line and headers within {seconds:g} s)"
    try:
        response = read_headers()
    except BaseException:
        if watchdog.stop():
            raise HeadersTimedOut(late) from None
        raise
    if watchdog.stop():  # the cut may end the headers early without an error: never use such an answer
        response.close()
        raise HeadersTimedOut(late)
    return response


def _create_connection(address: tuple[str, int], timeout: Any, source_address: Any) -> socket.socket:
    """`socket.create_connection` with an ASCII host name given as bytes: CPython's `getaddrinfo` encodes a
    str host with the IDNA codec, whose first use imports `encodings.idna`, `stringprep` and `unicodedata`
    (about 2 ms of a plain-HTTP push's first request); a registry's name is ASCII (`oci.names`)."""
    host, port = address
    name: Any = host.encode() if host.isascii() else host  # `getaddrinfo` takes bytes; typeshed says str only
    return socket.create_connection((name, port), timeout, source_address)


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _create_connection

    def getresponse(self) -> http.client.HTTPResponse:
        return _headers_within_deadline(self, super().getresponse)


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _create_connection  # TLS still encodes the name with IDNA (`ssl`)

    def getresponse(self) -> http.client.HTTPResponse:
        return _headers_within_deadline(self, super().getresponse)


# --- the connection pool --------------------------------------------------------------------------
# Hand-written on `http.client` for start-up (issue 24): after Invoke, `import requests` cost about
# 50 ms (urllib3 alone 25 ms) of a command taking about 0.3 s, while `http.client` costs 2 ms (Invoke
# already imports ssl and email). What the client needs of them is small: keep-alive connections
# pooled per host (and proxy), one request at a time on each, shared by every thread of a run.

Key = tuple[str, str, int, str]  # scheme, host, port, the proxy URL ("" when direct)
MAX_IDLE = 16  # idle connections kept per key; more are closed when handed back


class Response:
    """One answer, its body read as it arrives; its connection goes back to the pool once the body has
    been read to its end, and is closed when the answer is closed before that."""

    def __init__(self, raw: http.client.HTTPResponse, method: str, url: str, release: Callable[[bool], None]) -> None:
        self.raw = raw
        self.method = method
        self.url = url
        self.status_code = raw.status
        self.headers = raw.headers
        self._release: Callable[[bool], None] | None = release

    def read1(self, size: int = CHUNK) -> bytes:
        """What has arrived (at most `size` bytes), b"" at the end; a body cut short raises IncompleteRead."""
        if self._release is None:
            return b""
        chunk = self.raw.read1(size)
        if chunk:
            return chunk
        if self.raw.length:  # http.client ends a Content-Length body cut short without saying so
            self.close()
            raise http.client.IncompleteRead(b"", self.raw.length)
        self._done(reusable=True)
        return b""

    def read(self) -> bytes:
        return b"".join(iter(self.read1, b""))

    def _done(self, reusable: bool) -> None:
        release, self._release = self._release, None
        if release is not None:
            self.raw.close()
            release(reusable and not self.raw.will_close)

    def close(self) -> None:
        self._done(reusable=False)

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Pool:
    """Keep-alive connections per (scheme, host, port, proxy), handed to one request at a time."""

    def __init__(self, tls: Callable[[], ssl.SSLContext]) -> None:
        self._tls = tls  # the TLS context, made on first use (loading a CA bundle costs milliseconds)
        self._lock = threading.Lock()
        self._idle: dict[Key, list[http.client.HTTPConnection]] = {}
        self._closed = False

    def _take(self, key: Key) -> http.client.HTTPConnection | None:
        with self._lock:
            idle = self._idle.get(key, [])
            while idle:
                connection = idle.pop()
                if not _dropped(connection):
                    return connection
                connection.close()
        return None

    def _give_back(self, key: Key, connection: http.client.HTTPConnection, reusable: bool) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if reusable and connection.sock is not None and not self._closed and len(idle) < MAX_IDLE:
                idle.append(connection)
                return
        connection.close()

    def _open(self, key: Key, connect_timeout: float, tunnel_headers: Mapping[str, str]) -> http.client.HTTPConnection:
        scheme, host, port, proxy = key
        if not proxy:
            if scheme == "https":
                return _HTTPSConnection(host, port, timeout=connect_timeout, context=self._tls(), blocksize=CHUNK)
            return _HTTPConnection(host, port, timeout=connect_timeout, blocksize=CHUNK)
        parts = urlsplit(proxy)
        proxy_host, proxy_port = parts.hostname or "", parts.port or 80
        if scheme == "http":  # a plain request goes to the proxy whole (the absolute URL in the request line)
            return _HTTPConnection(proxy_host, proxy_port, timeout=connect_timeout, blocksize=CHUNK)
        connection = _HTTPSConnection(  # CONNECT through the proxy, then TLS with the registry itself
            proxy_host, proxy_port, timeout=connect_timeout, context=self._tls(), blocksize=CHUNK
        )
        connection.set_tunnel(host, port, headers=dict(tunnel_headers))
        return connection

    def send(
        self,
        key: Key,
        method: str,
        target: str,
        body: bytes | IO[bytes] | None,
        headers: Mapping[str, str],
        timeouts: tuple[float, float],
        tunnel_headers: Mapping[str, str],
    ) -> Response:
        """Send one request on a pooled (or new) connection and read the status line and headers."""
        connect_timeout, read_timeout = timeouts
        connection = self._take(key) or self._open(key, connect_timeout, tunnel_headers)
        connection.timeout = connect_timeout  # as urllib3: connecting and sending under the connect timeout
        if connection.sock is not None:
            connection.sock.settimeout(connect_timeout)
        try:
            # as urllib3: the registry may have answered (and hung up) before reading the whole body
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                connection.request(method, target, body=body, headers=dict(headers))
            connection.timeout = read_timeout
            if connection.sock is not None:
                connection.sock.settimeout(read_timeout)
            raw = connection.getresponse()
        except BaseException:
            connection.close()
            raise
        return Response(raw, method, target, functools.partial(self._give_back, key, connection))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """True when an idle connection was closed by the other side (readable while idle: EOF or garbage)."""
    sock = connection.sock
    if sock is None:
        return True
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


class CountedFile(io.FileIO):
    """An archive opened for one upload attempt, telling how far it has been read (so, roughly, sent)."""

    def __init__(self, path: Path, on_sent: Callable[[int], None]) -> None:
        super().__init__(path, "rb")
        self._on_sent = on_sent
        on_sent(0)

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self._on_sent(self.tell())
        return chunk


def finish(response: Response) -> None:
    """Close an answer whose body is not wanted, keeping its connection for the next request.

    An answer without a body (to a HEAD, or with `Content-Length: 0`, as registries answer uploads and
    manifest PUTs) is read to its end first, which hands the connection back to the pool; closing it
    unread closes the connection, and each request would open a new one (a TCP and a TLS handshake on
    a real network). Any other body is not waited for: the connection is closed.
    """
    if response.method == "HEAD" or response.headers.get("Content-Length") == "0":
        with contextlib.suppress(http.client.HTTPException, OSError):
            response.read()
    response.close()


def read_body(registry: str, response: Response, cap: int, what: str, deadline_seconds: float, clock: Clock) -> bytes:
    """The whole body, refusing more than `cap` bytes or longer than `deadline_seconds` however it trickles."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > cap:
        response.close()
        raise PublisherError(f"{registry}: {what} is {int(declared)} bytes, over the {cap}-byte limit")
    chunks: list[bytes] = []
    total = 0
    with response:
        for chunk in stream_body(response, clock, what, deadline_seconds):
            total += len(chunk)
            if total > cap:
                raise PublisherError(f"{registry}: {what} is over the {cap}-byte limit")
            chunks.append(chunk)
    return b"".join(chunks)


def stream_body(response: Response, clock: Clock, what: str, deadline_seconds: float) -> Iterator[bytes]:
    """The body as it arrives, ended by a wall-clock deadline however slowly the bytes come.

    `read1` returns what has arrived instead of waiting for a full chunk, so the deadline is checked at
    least once per read timeout even when the registry sends a byte at a time.
    """
    started = clock.monotonic()
    try:
        while chunk := response.read1(CHUNK):
            if clock.monotonic() - started > deadline_seconds:
                raise Transient(f"{what} took over {deadline_seconds:.0f} s to arrive")
            yield chunk
    except TimeoutError:
        response.close()
        raise Transient(f"{what}: timed out") from None
    except (http.client.HTTPException, OSError) as exc:
        response.close()
        raise Transient(f"{what} was cut short ({root_cause(exc)})") from None
