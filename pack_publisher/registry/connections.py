"""The connections the built-in client opens: every hop through the proxy a snapshot of the proxy
variables names, the status line and headers of every answer under a wall-clock deadline, sessions
pooled per thread, and archives counted as they are sent.

The proxy choice is hand-written because requests decides from `os.environ` at request time, and
nothing below the settings may read the environment (the settings pass the variables they read,
see `PublishOptions.proxy_env`).
"""

from __future__ import annotations

import contextlib
import heapq
import io
import ipaddress
import itertools
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

import requests
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.response

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


# --- proxies, from a snapshot of the environment ----------------------------------------------------


PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
)


def proxies_for(url: str, proxy_env: Mapping[str, str]) -> dict[str, str]:
    """The proxy for `url` as requests' `proxies=` mapping, decided from `proxy_env` alone.

    `https_proxy` or `http_proxy` by the URL's scheme, else `all_proxy`. Of two spellings of one variable
    the lower-case one wins when it is set, even empty (which turns that proxy off), as in curl and
    requests. `no_proxy` is a comma-separated list of `*`, host names (each also covering its subdomains;
    a leading `.` or `*.` is allowed), IP addresses or CIDR ranges, each optionally with `:port`.
    """
    parts = urlsplit(url)
    proxy = _variable(proxy_env, f"{parts.scheme}_proxy") or _variable(proxy_env, "all_proxy")
    if not proxy or _bypassed(parts, _variable(proxy_env, "no_proxy")):
        return {}
    return {parts.scheme: proxy}


def _variable(env: Mapping[str, str], lower_name: str) -> str:
    value = env.get(lower_name)
    return (value if value is not None else env.get(lower_name.upper(), "")).strip()


def _bypassed(url: SplitResult, no_proxy: str) -> bool:
    host = (url.hostname or "").lower()
    port = url.port or (443 if url.scheme == "https" else 80)
    for entry in filter(None, (item.strip().lower() for item in no_proxy.split(","))):
        if entry == "*":
            return True
        if entry.startswith("["):  # [v6 address] or [v6 address]:port
            name, _, rest = entry[1:].partition("]")
            entry_port = rest.removeprefix(":")
        elif entry.count(":") == 1:  # host:port (a bare v6 address has several colons)
            name, _, entry_port = entry.partition(":")
        else:
            name, entry_port = entry, ""
        if entry_port and entry_port != str(port):
            continue
        if _host_matches(host, name.removeprefix("*").removeprefix(".")):
            return True
    return False


def _host_matches(host: str, name: str) -> bool:
    try:
        network = ipaddress.ip_network(name, strict=False)
    except ValueError:
        return bool(name) and (host == name or host.endswith("." + name))
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == network.version and address in network
