"""The built-in client's HTTP requests, on `http.client` (why not requests: `connections`, issue 24).

Each request, and each hop of a redirect, goes through the proxy the snapshot of the proxy variables
names (`runtime.proxies`; plain HTTP as an absolute URL to the proxy, HTTPS through a CONNECT tunnel)
or straight to the host; nothing is read from the environment (no proxy variables, CA bundle or
.netrc). Redirects are followed as requests followed them (301, 302, 303, 307, 308; at most 30), and
the Authorization header goes to no other origin than the one it was meant for.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import os
import ssl
import threading
import time
from collections.abc import Mapping
from typing import IO
from urllib.parse import quote, unquote, urlencode, urljoin, urlsplit

from pack_publisher.registry.connections import Pool, Response
from pack_publisher.runtime.proxies import proxies_for

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 30  # requests' limit, and its message when it is passed
MAX_REDIRECT_BODY = 64 * 1024  # a redirect's body read this far to keep its connection, else it is closed
DEFAULT_PORTS = {"http": 80, "https": 443}
_SAFE_IN_TARGET = "!#$%&'()*+,/:;=?@[]~"  # what requests leaves unquoted in a URL it sends

Body = bytes | IO[bytes] | None


class ClientError(Exception):
    """A request that cannot be sent as it is (invalid URL, unsupported proxy, a redirect loop): final."""


class InvalidURL(ClientError):
    pass


class InvalidSchema(ClientError):
    pass


class TooManyRedirects(ClientError):
    pass


def kind_of(exc: BaseException) -> str:
    """The kind of failure in a word, as requests named it (`token service unreachable (...)`)."""
    if isinstance(exc, ClientError):
        return type(exc).__name__
    if isinstance(exc, ssl.SSLError):
        return "SSLError"
    if isinstance(exc, TimeoutError):
        return "Timeout"
    return "ConnectionError"


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Certificates and host names checked against `ca_bundle` (a file or a folder); without one, against
    the system's trust store (with OpenSSL's SSL_CERT_FILE / SSL_CERT_DIR, as oras trusts) and certifi's
    bundle (what requests trusted): the oras transport reads through this client, so a registry either
    trusted before must still be trusted."""
    if ca_bundle:
        if os.path.isdir(ca_bundle):
            return ssl.create_default_context(capath=ca_bundle)
        return ssl.create_default_context(cafile=ca_bundle)
    context = ssl.create_default_context()
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with the project's dependencies
        return context
    context.load_verify_locations(cafile=certifi.where())
    return context


class Client:
    """Requests for every thread of a run, on one pool of keep-alive connections."""

    def __init__(self, ca_bundle: str | None, proxy_env: Mapping[str, str], user_agent: str) -> None:
        self._ca_bundle = ca_bundle
        self._proxy_env = dict(proxy_env)
        self._user_agent = user_agent
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        self._pool = Pool(self._tls)

    def _tls(self) -> ssl.SSLContext:
        with self._lock:  # one context for every connection (loading a bundle costs milliseconds)
            if self._context is None:
                self._context = tls_context(self._ca_bundle)
            return self._context

    def close(self) -> None:
        self._pool.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        timeout: tuple[float, float],
        data: Body = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        allow_redirects: bool = True,
    ) -> Response:
        """The answer's status line and headers; its body is read as it arrives (`Response.read1`).

        Raises ClientError (final), ssl.SSLError, TimeoutError, or OSError / http.client.HTTPException
        for connection trouble.
        """
        if params:
            url += ("&" if urlsplit(url).query else "?") + urlencode(params)
        sent = {"User-Agent": self._user_agent, "Accept": "*/*", **(headers or {})}
        start = data.tell() if data is not None and not isinstance(data, bytes) and data.seekable() else None
        for hop in itertools.count():
            response = self._send(method, url, data, sent, timeout)
            location = response.headers.get("Location")
            if not allow_redirects or response.status_code not in REDIRECTS or location is None:
                return response
            _discard(response, timeout[1])
            if hop >= MAX_REDIRECTS:
                raise TooManyRedirects(f"Exceeded {MAX_REDIRECTS} redirects.")
            target = urljoin(url, location)
            method, keep_body = _redirected_method(method, response.status_code)
            if not keep_body:
                data = None
                sent = _without(sent, "Content-Length", "Content-Type", "Transfer-Encoding")
            elif start is not None and data is not None and not isinstance(data, bytes):
                data.seek(start)
            if _strips_authorization(url, target):  # credentials go to no other origin
                sent = _without(sent, "Authorization")
            url = target
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self, method: str, url: str, data: Body, headers: Mapping[str, str], timeout: tuple[float, float]
    ) -> Response:
        """One request, no redirect followed: straight to the host or through its proxy."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise InvalidSchema(f"No connection adapters were found for {url!r}")
        try:
            host, port = parts.hostname, parts.port or DEFAULT_PORTS[scheme]
        except ValueError:
            raise InvalidURL(f"Invalid URL {url!r}: invalid port") from None
        if not host:
            raise InvalidURL(f"Invalid URL {url!r}: No host supplied")
        target = quote(parts.path or "/", safe=_SAFE_IN_TARGET) + (f"?{parts.query}" if parts.query else "")
        proxy = proxies_for(url, self._proxy_env).get(scheme, "")
        headers, tunnel_headers = dict(headers), dict[str, str]()
        if proxy:
            proxy = proxy if "://" in proxy else f"http://{proxy}"
            proxy_parts = urlsplit(proxy)
            if proxy_parts.scheme.lower() != "http" or not proxy_parts.hostname:
                raise InvalidSchema(
                    f"only http:// proxies are supported (the proxy variables name {proxy_parts.scheme}://)"
                )
            if proxy_parts.username is not None:
                pair = f"{unquote(proxy_parts.username)}:{unquote(proxy_parts.password or '')}".encode()
                credentials = {"Proxy-Authorization": "Basic " + base64.b64encode(pair).decode()}
                (tunnel_headers if scheme == "https" else headers).update(credentials)
            if scheme == "http":
                target = f"http://{parts.netloc.rpartition('@')[2]}{target}"  # a forward proxy takes the whole URL
        key = (scheme, host, port, proxy)
        try:
            return self._pool.send(key, method, target, data, headers, timeout, tunnel_headers)
        except ssl.SSLError:  # also a certificate error (a ValueError too): not an invalid request
            raise
        except http.client.InvalidURL as exc:
            raise InvalidURL(str(exc)) from None
        except ValueError as exc:  # a header value http.client refuses to send
            raise ClientError(str(exc)) from None


def _discard(response: Response, seconds: float) -> None:
    """Read a redirect's (short) body to its end so its connection is kept; give up and close otherwise."""
    declared = response.headers.get("Content-Length", "")
    if response.method == "HEAD" or (declared.isdigit() and int(declared) <= MAX_REDIRECT_BODY):
        ends = time.monotonic() + seconds
        try:
            while time.monotonic() < ends and response.read1():
                pass
        except (http.client.HTTPException, OSError):
            pass
    response.close()


def _redirected_method(method: str, status: int) -> tuple[str, bool]:
    """The method for the next hop, and whether the body goes along (only on 307 and 308), as requests did."""
    if (status in (302, 303) and method != "HEAD") or (status == 301 and method == "POST"):
        method = "GET"
    return method, status in (307, 308)


def _without(headers: Mapping[str, str], *names: str) -> dict[str, str]:
    drop = {name.lower() for name in names}
    return {key: value for key, value in headers.items() if key.lower() not in drop}


def _strips_authorization(old_url: str, new_url: str) -> bool:
    """requests' rule: another host, scheme or port loses the Authorization header, except an upgrade
    from http to https on the default ports."""
    old, new = urlsplit(old_url), urlsplit(new_url)
    try:
        old_port, new_port = old.port, new.port
    except ValueError:  # not a URL to send anything to
        return True
    if old.hostname != new.hostname:
        return True
    if old.scheme == "http" and old_port in (80, None) and new.scheme == "https" and new_port in (443, None):
        return False
    default = (DEFAULT_PORTS.get(old.scheme), None)
    if old.scheme == new.scheme and old_port in default and new_port in default:
        return False
    return old_port != new_port or old.scheme != new.scheme
