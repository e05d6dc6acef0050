"""Registry auth for the built-in client: a 401 challenge becomes an Authorization header, cached per scope.

`Basic` challenges get the credentials; `Bearer` challenges send them to the token realm the registry
names (the GHCR flow) and cache the token. Credentials never go to a realm over plain HTTP when the
registry itself is reached over TLS, nor to a plain-HTTP realm off this machine without the
OCI_PLAIN_HTTP_CREDENTIALS opt-in (the registry's own rule), and never follow a redirect of the realm;
they go as UTF-8 (any password). `redact` (the run's redactor) masks every secret this side knows (the
password, the Basic header, each token as it arrives, before any use) in text a registry sends back;
a token a header cannot carry as it is (control characters, spaces, non-ASCII) is refused.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from pack_publisher.oci.names import is_loopback
from pack_publisher.registry.client import ClientError, kind_of
from pack_publisher.registry.connections import Response
from pack_publisher.registry.credentials import Credentials
from pack_publisher.registry.retry import TRANSIENT_STATUS, Transient
from pack_publisher.runtime.errors import AccessError, ConfigError, PublisherError
from pack_publisher.runtime.redact import Redactor

# compiled on first use (the `re` module's cache): a registry without auth never needs them
_CHALLENGE_PARAM = r'(\w+)="([^"]*)"'
_HEADER_SAFE = r"[\x21-\x7e]+"  # visible ASCII: what a header value can carry unchanged
MAX_TOKEN_ANSWER_BYTES = 1024 * 1024
# Reads a (streamed) answer whole, refusing more than `cap` bytes: response, cap -> body.
ReadBody = Callable[[Response, int], bytes]


class RealmRefused(ConfigError):
    """The registry names a token realm the credentials may not go to (see `Authenticator.answer`)."""


class TokenRefused(AccessError):
    """The token service answered a token that cannot be used as it is."""


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(re.findall(_CHALLENGE_PARAM, rest))


def retry_after_seconds(response: Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class Authenticator:
    """The Authorization header for each scope, obtained by answering the registry's challenges."""

    def __init__(
        self,
        registry: str,
        credentials: Credentials | None,
        tls: bool,
        get: Callable[..., Response],
        read: ReadBody | None = None,
        *,
        redactor: Redactor | None = None,
        plain_http_credentials: bool = False,
    ) -> None:
        """`redactor`: the run's (every token joins it as it arrives); `plain_http_credentials`: the
        OCI_PLAIN_HTTP_CREDENTIALS opt-in, which alone lets credentials go to a plain-HTTP realm elsewhere."""
        self.registry = registry
        self.credentials = credentials
        self.tls = tls
        self.plain_http_credentials = plain_http_credentials
        self._get = get  # the client's GET (its session, proxies and timeouts)
        self._read = read or self._read_capped  # the client's reader (with its deadline)
        self._headers: dict[str, str] = {}  # scope -> Authorization header value
        self.redact = redactor if redactor is not None else Redactor()
        if credentials is not None:
            self.redact.add_credentials(credentials.username, credentials.password.get_secret_value())

    def _read_capped(self, response: Response, cap: int) -> bytes:
        """The body, refusing more than `cap` bytes (for callers without a reader of their own)."""
        body = b""
        while chunk := response.read1(64 * 1024):
            body += chunk
            if len(body) > cap:
                raise PublisherError(f"{self.registry}: the token answer is over the {cap}-byte limit")
        return body

    def header(self, scope: str) -> str | None:
        return self._headers.get(scope)

    @property
    def who(self) -> str:
        return f"as {self.credentials.username}" if self.credentials else "anonymously"

    def answer(self, challenge: str, scope: str) -> None:
        """Get credentials for `scope` as the challenge asks; a refusal is final, an outage transient."""
        if not challenge:
            raise PublisherError(f"{self.registry}: 401 Unauthorized without an auth challenge")
        scheme, params = parse_challenge(challenge)
        creds = self.credentials
        if scheme == "basic":
            if creds is None:
                raise AccessError(
                    f"{self.registry}: the registry requires credentials; set OCI_USERNAME and OCI_PASSWORD "
                    "or log in with `oras login` / `docker login`"
                )
            self._headers[scope] = basic_header(creds)
            return
        if scheme != "bearer" or "realm" not in params:
            raise PublisherError(f"{self.registry}: unsupported auth challenge {scheme!r}")
        realm = params["realm"]
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise PublisherError(f"{self.registry}: the auth challenge names an invalid token realm {realm!r}")
        if self.tls and parts.scheme != "https":
            raise RealmRefused(
                f"{self.registry}: the registry sends credentials to a token realm over plain HTTP ({realm}); refused"
            )
        clear_text = parts.scheme != "https" and not is_loopback(parts.hostname or "")
        if creds is not None and clear_text and not self.plain_http_credentials:  # the registry's own rule
            raise RealmRefused(
                f"{self.registry}: the registry asks for the credentials at a token realm over plain HTTP on "
                f"another host ({realm}); refused: use TLS, or set OCI_PLAIN_HTTP_CREDENTIALS=1 to accept that"
            )
        query: dict[str, str] = {}
        if params.get("scope") or scope:
            query["scope"] = params.get("scope") or scope
        if "service" in params:
            query["service"] = params["service"]
        # UTF-8, as oras and the Basic path send them (requests' own Basic auth encoded the pair as Latin-1)
        headers = {"Authorization": basic_header(creds)} if creds else {}
        try:
            response = self._get(realm, params=query, headers=headers, allow_redirects=False)
        except TimeoutError:
            raise Transient("token service: timed out") from None
        except (ClientError, OSError, http.client.HTTPException) as exc:
            raise Transient(f"token service unreachable ({kind_of(exc)})") from None
        with response:
            if response.status_code in TRANSIENT_STATUS:
                raise Transient(f"token service: HTTP {response.status_code}", retry_after_seconds(response))
            if response.status_code != 200:
                who = f"as {creds.username} ({creds.origin})" if creds else "anonymously"
                raise AccessError(f"{self.registry}: authentication {who} was refused (HTTP {response.status_code})")
            token = _token_of(self._read(response, MAX_TOKEN_ANSWER_BYTES))
        if not token:
            raise PublisherError(f"{self.registry}: the token service answered without a token")
        self.redact.add(token)  # before any use: nothing said about it from here on can show it
        if not re.fullmatch(_HEADER_SAFE, token):
            raise TokenRefused(
                f"{self.registry}: the token service answered a token with control characters, spaces or "
                "non-ASCII characters (it cannot go in a header as it is); refused"
            )
        self._headers[scope] = f"Bearer {token}"


def basic_header(credentials: Credentials) -> str:
    """The Basic Authorization value, the pair encoded as UTF-8 (any password, `pässwörd` too)."""
    pair = f"{credentials.username}:{credentials.password.get_secret_value()}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def _token_of(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    token = data.get("token") or data.get("access_token")
    return token if isinstance(token, str) else None
