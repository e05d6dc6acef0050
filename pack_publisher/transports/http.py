"""The built-in transport: the OCI distribution protocol on `requests`, with retry and auth as separate parts.

Why not oras-py: its push cannot set `artifactType`, reads whole files into memory, retries only
HTTP 500 for over two minutes, fails against Basic-auth registries and raises bare ValueErrors
(see shared/docs/oci-publishing.md). The protocol subset needed here is a few requests.

Every answer is read with a size cap and a wall-clock deadline (the status line and headers within one
read timeout, see `_headers_within_deadline`; the body under `HttpTransport._stream`), so a registry that
trickles bytes or sends a huge body cannot hold or swamp a release.

Nothing here reads the environment: the caller passes the CA bundle and a snapshot of the proxy
variables (`PROXY_VARIABLES`), and `proxies_for` decides from that snapshot alone.

One transport serves every thread of a run (planning, pushing, reading back, and within a pack its two
blob uploads and its read-back and blob checks, side by side with `base.together`): each request runs
on a requests session of its own (sessions are not shared between threads) taken from the transport's
pool, so connections and tokens are kept and reused from one phase to the next.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import ipaddress
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import SplitResult, urljoin, urlsplit

import requests
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.response

from ..artifact import MANIFEST_MEDIA_TYPE
from ..credentials import Credentials
from ..descriptor import Descriptor, digest_of, is_digest
from ..errors import AccessError, ConfigError, PublisherError
from ..redact import Redactor
from .auth import Authenticator, retry_after_seconds
from .base import MAX_MANIFEST_BYTES, FetchedManifest, NotFound, PushOutcome, PushRequest, SinkFactory, together
from .retry import TRANSIENT_STATUS, RetryPolicy, Transient, retrying

DOCKER_MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = {MANIFEST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE}
MANIFEST_ACCEPT = f"{MANIFEST_MEDIA_TYPE}, {DOCKER_MANIFEST_MEDIA_TYPE}"
MAX_ERROR_BYTES = 64 * 1024
CHUNK = 1024 * 1024
MIN_BLOB_RATE = 256 * 1024  # bytes/s a blob download may not fall below, on average, before it is cut off
USER_AGENT = "greentic-pack-publisher/0.1"
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


class HttpTransport:
    """One registry, one set of credentials; safe to use from several threads (one session each, pooled)."""

    name = "built-in client"
    cheap_blob_checks = True  # a HEAD request, side by side with the read-back

    def __init__(
        self,
        registry: str,
        credentials: Credentials | None,
        plain_http: bool,
        policy: RetryPolicy | None = None,
        *,
        ca_bundle: str | None = None,
        proxy_env: Mapping[str, str] | None = None,
        redactor: Redactor | None = None,
        plain_http_credentials: bool = False,
    ) -> None:
        """`ca_bundle`: a CA bundle file or folder (None: the system's). `proxy_env`: the proxy variables
        (any of `PROXY_VARIABLES`) as the caller read them; None or empty: no proxy. `redactor`: the run's,
        which every token joins; `plain_http_credentials`: OCI_PLAIN_HTTP_CREDENTIALS (see `Authenticator`)."""
        self.registry = registry
        self.base = f"{'http' if plain_http else 'https'}://{registry}"
        self.policy = policy or RetryPolicy()
        if ca_bundle and not Path(ca_bundle).exists():
            raise ConfigError(f"the CA bundle {ca_bundle} does not exist")
        self._verify: str | bool = ca_bundle or True
        self._proxy_env = dict(proxy_env or {})
        self._lock = threading.Lock()
        self._idle: list[requests.Session] = []  # sessions no thread holds, last used first (warm connections)
        self._sessions: list[requests.Session] = []
        self._held = threading.local()  # the session this thread holds for its current operation
        self.auth = Authenticator(
            registry,
            credentials,
            not plain_http,
            self._get_token,
            self._read_token_answer,
            redactor=redactor,
            plain_http_credentials=plain_http_credentials,
        )

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions, self._idle = self._sessions, [], []
        for session in sessions:
            session.close()

    # --- sessions: one per thread at a time, kept for the next operation ---------------------------

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # requests would read proxies, CA bundle and .netrc from the environment
        session.headers["User-Agent"] = USER_AGENT
        session.verify = self._verify
        adapter = _Adapter(self._proxy_env)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    @contextlib.contextmanager
    def _holding_session(self) -> Iterator[requests.Session]:
        """A session this thread alone uses until the block ends (retries and token fetches included)."""
        held: requests.Session | None = getattr(self._held, "session", None)
        if held is not None:  # an operation inside another one (a resolve reading the manifest)
            yield held
            return
        with self._lock:
            session = self._idle.pop() if self._idle else None
        if session is None:
            session = self._new_session()
            with self._lock:
                self._sessions.append(session)
        self._held.session = session
        try:
            yield session
        finally:
            self._held.session = None
            with self._lock:
                self._idle.append(session)

    # --- one request -----------------------------------------------------------------------------

    def _timeouts(self) -> tuple[float, float]:
        return (self.policy.connect_timeout, self.policy.read_timeout)

    def _current_session(self) -> requests.Session:
        """The session this thread holds (every request is sent inside `_holding_session`)."""
        session: requests.Session = self._held.session
        return session

    def _get_token(self, url: str, **kwargs: Any) -> requests.Response:
        with self._holding_session() as session:
            return session.get(url, timeout=self._timeouts(), stream=True, **kwargs)

    def _read_token_answer(self, response: requests.Response, cap: int) -> bytes:
        return self._read(response, cap, "the token answer", self.policy.read_timeout)

    def _send(
        self,
        method: str,
        url: str,
        scope: str,
        *,
        body: Callable[[], bytes | IO[bytes] | None] = lambda: None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """One request (streamed), answering an auth challenge once; transient trouble raises Transient."""
        for first_try in (True, False):
            all_headers = dict(headers or {})
            authorization = self.auth.header(scope)
            if authorization and urlsplit(url).netloc == self.registry:  # credentials go nowhere else
                all_headers["Authorization"] = authorization
            payload = body()
            try:
                response = self._current_session().request(
                    method,
                    url,
                    data=payload,
                    headers=all_headers,
                    stream=True,
                    allow_redirects=True,
                    timeout=self._timeouts(),
                )
            except requests.Timeout as exc:
                raise Transient(_timeout_text(exc)) from None
            except requests.exceptions.SSLError as exc:  # a certificate problem does not go away by retrying
                raise AccessError(f"{self.registry}: TLS failed ({_root_cause(exc)})") from None
            except requests.ConnectionError as exc:
                raise Transient(f"connection failed ({_root_cause(exc)})") from None
            except requests.exceptions.ChunkedEncodingError as exc:
                raise Transient(f"the answer was cut short ({_root_cause(exc)})") from None
            except requests.RequestException as exc:  # invalid URL, redirect loop, bad header: final
                raise PublisherError(f"{self.registry}: {method} {url}: {_root_cause(exc)}") from None
            finally:
                if hasattr(payload, "close"):
                    payload.close()  # type: ignore[union-attr]
            if response.status_code == 401 and first_try:
                challenge = response.headers.get("WWW-Authenticate", "")
                response.close()
                self.auth.answer(challenge, scope)
                continue
            if response.status_code in TRANSIENT_STATUS:
                cause = self._error_text(response)
                raise Transient(cause, retry_after_seconds(response))
            return response
        return response

    def _finish(self, response: requests.Response) -> None:
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

    def _read(self, response: requests.Response, cap: int, what: str, deadline_seconds: float) -> bytes:
        """The whole body, refusing more than `cap` bytes or longer than `deadline_seconds` however it trickles."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            response.close()
            raise PublisherError(f"{self.registry}: {what} is {int(declared)} bytes, over the {cap}-byte limit")
        chunks: list[bytes] = []
        total = 0
        with response:
            for chunk in self._stream(response, what, deadline_seconds):
                total += len(chunk)
                if total > cap:
                    raise PublisherError(f"{self.registry}: {what} is over the {cap}-byte limit")
                chunks.append(chunk)
        return b"".join(chunks)

    def _stream(self, response: requests.Response, what: str, deadline_seconds: float) -> Iterator[bytes]:
        """The body as it arrives, ended by a wall-clock deadline however slowly the bytes come.

        `read1` returns what has arrived instead of waiting for a full chunk (as `iter_content` does), so
        the deadline is checked at least once per read timeout even when the registry sends a byte at a time.
        """
        clock = self.policy.clock
        started = clock.monotonic()
        try:
            while chunk := response.raw.read1(CHUNK, decode_content=True):
                if clock.monotonic() - started > deadline_seconds:
                    raise Transient(f"{what} took over {deadline_seconds:.0f} s to arrive")
                yield chunk
        except urllib3.exceptions.ReadTimeoutError:
            raise Transient(f"{what}: timed out") from None
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
            raise Transient(f"{what} was cut short ({_root_cause(exc)})") from None

    def _error_text(self, response: requests.Response) -> str:
        """`CODE: message` from the registry's JSON errors, else a short, safe description of the body."""
        kind = response.headers.get("Content-Type", "no content type").split(";")[0]
        try:
            body = self._read(response, MAX_ERROR_BYTES, "an error answer", self.policy.read_timeout)
            errors = json.loads(body).get("errors") or []
            parts = [f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errors if isinstance(e, dict)]
            if parts:  # masked before shortening, so no secret survives cut in half
                return self.auth.redact("; ".join(parts))[:300]
        except (ValueError, AttributeError, RecursionError, PublisherError, Transient):
            pass
        return f"HTTP {response.status_code} ({kind} body, not a registry error)"

    def _fail(self, operation: str, response: requests.Response) -> PublisherError:
        if response.status_code in (401, 403):
            return AccessError(
                f"{self.registry}: {operation}: access denied {self.auth.who} ({self._error_text(response)})"
            )
        return PublisherError(f"{self.registry}: {operation}: {self._error_text(response)}")

    def _url(self, repository: str, tail: str) -> str:
        return f"{self.base}/v2/{repository}/{tail}"

    def _retrying(self, operation: str, attempt: Callable[[], Any]) -> Any:
        with self._holding_session():
            return retrying(self.policy, self.registry, operation, attempt)

    def answer_challenge(self) -> None:
        """Ask the API root and answer its auth challenge, if any (what oras would do with the credentials)."""

        def attempt() -> None:
            response = self._send("GET", f"{self.base}/v2/", "")
            response.close()

        self._retrying("checking where the credentials go", attempt)

    # --- the storage primitives -------------------------------------------------------------------

    def resolve(self, repository: str, reference: str) -> Descriptor:
        def attempt() -> Descriptor:
            url = self._url(repository, f"manifests/{reference}")
            response = self._send("HEAD", url, _scope(repository, "pull"), headers={"Accept": MANIFEST_ACCEPT})
            self._finish(response)
            if response.status_code == 404:
                raise NotFound(reference)
            if response.status_code != 200:
                raise self._fail(f"resolving {repository}:{reference}", response)
            digest = response.headers.get("Docker-Content-Digest", "")
            size = response.headers.get("Content-Length", "")
            kind = response.headers.get("Content-Type", "").split(";")[0].strip()
            if not is_digest(digest) or not size.isdigit():  # a registry that does not say: read the bytes
                data = self.fetch_manifest(repository, reference).data
                return Descriptor(kind or MANIFEST_MEDIA_TYPE, digest_of(data), len(data))
            return Descriptor(kind, digest, int(size))

        return self._retrying(f"resolving {repository}:{reference}", attempt)  # type: ignore[no-any-return]

    def fetch_manifest(self, repository: str, reference: str) -> FetchedManifest:
        def attempt() -> FetchedManifest:
            url = self._url(repository, f"manifests/{reference}")
            response = self._send("GET", url, _scope(repository, "pull"), headers={"Accept": MANIFEST_ACCEPT})
            if response.status_code == 404:
                response.close()
                raise NotFound(reference)
            if response.status_code != 200:
                raise self._fail(f"reading manifest {reference}", response)
            kind = response.headers.get("Content-Type", "").split(";")[0].strip()
            body = self._read(response, MAX_MANIFEST_BYTES, f"manifest {reference}", self.policy.read_timeout)
            if kind not in MANIFEST_TYPES or not _is_json_object(body):
                raise PublisherError(
                    f"{self.registry}: reading manifest {repository}:{reference}: the registry answered "
                    f"{kind or 'no content type'} that is not an OCI manifest (is this an OCI registry?)"
                )
            return FetchedManifest(body, response.headers.get("Docker-Content-Digest"))

        return self._retrying(f"reading manifest {repository}:{reference}", attempt)  # type: ignore[no-any-return]

    def blob_exists(self, repository: str, digest: str) -> bool:
        def attempt() -> bool:
            response = self._send("HEAD", self._url(repository, f"blobs/{digest}"), _scope(repository, "pull"))
            self._finish(response)
            if response.status_code == 200:
                return True
            if response.status_code == 404:
                return False
            raise self._fail(f"checking blob {digest[:19]}", response)

        return bool(self._retrying(f"checking blob {digest[:19]} in {repository}", attempt))

    def blob_served(self, repository: str, digest: str) -> tuple[str, int] | None:
        def attempt() -> tuple[str, int] | None:
            response = self._send("HEAD", self._url(repository, f"blobs/{digest}"), _scope(repository, "pull"))
            self._finish(response)
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                raise self._fail(f"checking blob {digest[:19]}", response)
            size = response.headers.get("Content-Length", "")
            if not size.isdigit():
                raise PublisherError(f"{self.registry}: blob {digest[:19]} in {repository}: the registry says no size")
            return response.headers.get("Docker-Content-Digest") or digest, int(size)

        return self._retrying(f"checking blob {digest[:19]} in {repository}", attempt)  # type: ignore[no-any-return]

    def fetch_blob(self, repository: str, digest: str, open_sink: SinkFactory) -> None:
        def attempt() -> None:
            response = self._send("GET", self._url(repository, f"blobs/{digest}"), _scope(repository, "pull"))
            if response.status_code == 404:
                response.close()
                raise NotFound(digest)
            if response.status_code != 200:
                raise self._fail(f"downloading blob {digest[:19]}", response)
            declared = response.headers.get("Content-Length", "")
            budget = self.policy.read_timeout + (int(declared) if declared.isdigit() else 0) / MIN_BLOB_RATE
            with response, open_sink() as sink:
                for chunk in self._stream(response, f"blob {digest[:19]}", budget):
                    sink.write(chunk)

        self._retrying(f"downloading blob {digest[:19]} from {repository}", attempt)

    def push(self, request: PushRequest) -> PushOutcome:
        """The blobs side by side (each skipped when present), then the manifest under each tag in order."""
        artifact = request.artifact
        uploads = [
            functools.partial(
                self._upload_blob, request.repository, blob, request.gtpack if blob == artifact.layer else b"{}"
            )
            for blob in artifact.blobs
        ]
        uploaded = sum(together(uploads))  # both blobs are in before any manifest names them
        for tag in request.tags:
            self._put_manifest(request.repository, tag, artifact.manifest)
        return PushOutcome(uploaded_blobs=uploaded)

    # --- push steps -------------------------------------------------------------------------------

    def _upload_blob(self, repository: str, blob: Descriptor, source: Path | bytes) -> bool:
        """Upload unless present (True when bytes were sent); files stream from disk, never read whole."""
        if self.blob_exists(repository, blob.digest):
            return False
        scope = _scope(repository, "push")

        def body() -> bytes | IO[bytes]:
            return source if isinstance(source, bytes) else source.open("rb")

        def attempt() -> None:
            start = self._send("POST", self._url(repository, "blobs/uploads/"), scope)
            if start.status_code != 202 or "Location" not in start.headers:
                raise self._fail("starting a blob upload", start)
            self._finish(start)
            location = urljoin(self._url(repository, "blobs/uploads/"), start.headers["Location"])
            separator = "&" if "?" in location else "?"
            done = self._send(
                "PUT",
                f"{location}{separator}digest={blob.digest}",
                scope,
                body=body,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)},
            )
            if done.status_code != 201:
                raise self._fail(f"uploading blob {blob.short}", done)
            self._finish(done)

        self._retrying(f"uploading blob {blob.short} to {repository}", attempt)
        return True

    def _put_manifest(self, repository: str, tag: str, manifest: bytes) -> None:
        """Upload the manifest bytes unchanged under `tag` (what landed is read back and checked above)."""

        def attempt() -> None:
            response = self._send(
                "PUT",
                self._url(repository, f"manifests/{tag}"),
                _scope(repository, "push"),
                body=lambda: manifest,
                headers={"Content-Type": MANIFEST_MEDIA_TYPE},
            )
            if response.status_code not in (200, 201):
                raise self._fail(f"uploading the manifest for tag {tag}", response)
            self._finish(response)

        self._retrying(f"uploading the manifest {repository}:{tag}", attempt)


def _is_json_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False


def _scope(repository: str, action: str) -> str:
    return f"repository:{repository}:{'pull' if action == 'pull' else 'pull,push'}"


def _timeout_text(exc: BaseException) -> str:
    """`timed out`, saying which deadline passed when it was the headers deadline."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, HeadersTimedOut):
        cause = cause.__cause__ or cause.__context__
    return str(cause) if cause is not None else "timed out"


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc) or type(exc).__name__
    return re.sub(r"<urllib3[^>]*>: ", "", text)[:200]


# --- proxies, from a snapshot of the environment ----------------------------------------------------


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


class _Adapter(requests.adapters.HTTPAdapter):
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
