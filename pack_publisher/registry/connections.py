"""The connections the built-in client opens: every hop through the proxy a snapshot of the proxy
variables names (`runtime.proxies`), the status line and headers of every answer under a wall-clock
deadline, sessions pooled per thread, archives counted as they are sent, and answers read with a size
cap and a wall-clock deadline.
"""

from __future__ import annotations

import contextlib
import heapq
import io
import itertools
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import requests
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.response

from pack_publisher.registry.retry import Clock, Transient
from pack_publisher.runtime.errors import PublisherError
from pack_publisher.runtime.proxies import proxies_for

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
    text = str(exc) or type(exc).__name__
    return re.sub(r"<urllib3[^>]*>: ", "", text)[:200]


# --- the headers deadline ---------------------------------------------------------------------------
# Hand-written because neither requests nor urllib3 has a whole-answer deadline: their read timeout is
# per socket read, so a registry sending its status line and headers one byte every half second holds a
# request as long as it likes. A watchdog shuts the socket down when the deadline passes, which ends the
# blocked read at once; urllib3 then discards the connection (nothing is left open), and the
# TimeoutError raised here reaches `_send` as a requests Timeout like any other. Bodies have their own
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
        # reading thread is using); a TLS-in-TLS proxy tunnel keeps its socket in `.socket`
        raw = self.sock if isinstance(self.sock, socket.socket) else getattr(self.sock, "socket", None)
        if isinstance(raw, socket.socket):
            with contextlib.suppress(OSError):  # already closed: nothing left to cut
                socket.socket.shutdown(raw, socket.SHUT_RDWR)

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
    connection: urllib3.connection.HTTPConnection, read_headers: Callable[[], urllib3.response.HTTPResponse]
) -> urllib3.response.HTTPResponse:
    """`read_headers()` (the status line and headers), ended once `connection.timeout` seconds have passed.

    urllib3 sets the connection's timeout to the read timeout (`RetryPolicy.read_timeout`) just before
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


class _HTTPConnection(urllib3.connection.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("blocksize", CHUNK)  # a streamed blob goes out in 1 MiB writes, not 16 KiB ones
        super().__init__(*args, **kwargs)

    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]  # as urllib3's own
        return _headers_within_deadline(self, super().getresponse)


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("blocksize", CHUNK)
        super().__init__(*args, **kwargs)

    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]  # as urllib3's own
        return _headers_within_deadline(self, super().getresponse)


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS: dict[str, type[urllib3.HTTPConnectionPool]] = {"http": _HTTPPool, "https": _HTTPSPool}


class Adapter(requests.adapters.HTTPAdapter):
    """requests' adapter, the only way out: each request, and each hop of a redirect, gets its proxy from
    the snapshot `proxy_env`, and every connection (direct or through an HTTP(S) proxy; SOCKS proxies are
    not supported) waits for the status line and headers under the deadline above."""

    def __init__(self, proxy_env: Mapping[str, str]) -> None:
        self.proxy_env = dict(proxy_env)
        super().__init__()

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["proxies"] = proxies_for(request.url or "", self.proxy_env)
        return super().send(request, *args, **kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if isinstance(manager, urllib3.ProxyManager):
            manager.pool_classes_by_scheme = _POOLS
        return manager


class SessionPool:
    """requests sessions for many threads: one per thread at a time, kept warm for the next operation.

    requests' sessions are not safe to share between threads; pooling them keeps connections and
    tokens from one phase of a run (planning, pushing, reading back) to the next.
    """

    def __init__(self, verify: str | bool, proxy_env: Mapping[str, str], user_agent: str) -> None:
        self._verify = verify
        self._proxy_env = dict(proxy_env)
        self._user_agent = user_agent
        self._lock = threading.Lock()
        self._idle: list[requests.Session] = []  # sessions no thread holds, last used first (warm connections)
        self._all: list[requests.Session] = []
        self._held = threading.local()  # the session this thread holds for its current operation

    def _new(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # requests would read proxies, CA bundle and .netrc from the environment
        session.headers["User-Agent"] = self._user_agent
        session.verify = self._verify
        adapter = Adapter(self._proxy_env)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    @contextlib.contextmanager
    def hold(self) -> Iterator[requests.Session]:
        """A session this thread alone uses until the block ends (retries and token fetches included)."""
        held: requests.Session | None = getattr(self._held, "session", None)
        if held is not None:  # an operation inside another one (a resolve reading the manifest)
            yield held
            return
        with self._lock:
            session = self._idle.pop() if self._idle else None
        if session is None:
            session = self._new()
            with self._lock:
                self._all.append(session)
        self._held.session = session
        try:
            yield session
        finally:
            self._held.session = None
            with self._lock:
                self._idle.append(session)

    def current(self) -> requests.Session:
        """The session this thread holds (every request is sent inside `hold`)."""
        session: requests.Session = self._held.session
        return session

    def close(self) -> None:
        with self._lock:
            sessions, self._all, self._idle = self._all, [], []
        for session in sessions:
            session.close()


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


def finish(response: requests.Response) -> None:
    """Close an answer whose body is not wanted, keeping its connection for the next request.

    An answer without a body (to a HEAD, or with `Content-Length: 0`, as registries answer uploads and
    manifest PUTs) is read to its end first, which hands the connection back to the pool; closing it
    unread would close the connection, and each request would open a new one (a TCP and a TLS
    handshake on a real network). Any other body is not waited for: the connection is closed.
    """
    if response.request.method == "HEAD" or response.headers.get("Content-Length") == "0":
        with contextlib.suppress(urllib3.exceptions.HTTPError, OSError):
            response.raw.read()
    response.close()


def read_body(
    registry: str, response: requests.Response, cap: int, what: str, deadline_seconds: float, clock: Clock
) -> bytes:
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


def stream_body(response: requests.Response, clock: Clock, what: str, deadline_seconds: float) -> Iterator[bytes]:
    """The body as it arrives, ended by a wall-clock deadline however slowly the bytes come.

    `read1` returns what has arrived instead of waiting for a full chunk (as `iter_content` does), so
    the deadline is checked at least once per read timeout even when the registry sends a byte at a time.
    """
    started = clock.monotonic()
    try:
        while chunk := response.raw.read1(CHUNK, decode_content=True):
            if clock.monotonic() - started > deadline_seconds:
                raise Transient(f"{what} took over {deadline_seconds:.0f} s to arrive")
            yield chunk
    except urllib3.exceptions.ReadTimeoutError:
        raise Transient(f"{what}: timed out") from None
    except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
        raise Transient(f"{what} was cut short ({root_cause(exc)})") from None
