"""A small OCI distribution client on `requests`: streamed blob uploads, exact manifests, Basic and
Bearer-token auth driven by the registry's challenge, bounded retries with backoff and jitter.

Why not oras-py: its push cannot set `artifactType`, reads whole files into memory, retries only
HTTP 500 for over two minutes, fails against Basic-auth registries and raises bare ValueErrors
(see shared/docs/oci-publishing.md). The protocol subset needed here is a few requests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import requests

from .artifact import MANIFEST_MEDIA_TYPE
from .credentials import Credentials
from .errors import PublisherError

TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
DOCKER_MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = {MANIFEST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE}
MANIFEST_ACCEPT = f"{MANIFEST_MEDIA_TYPE}, {DOCKER_MANIFEST_MEDIA_TYPE}"
CHUNK = 1024 * 1024
USER_AGENT = "greentic-pack-publisher/0.1"


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for one operation: attempts, the total time spent retrying, per-request timeouts."""

    attempts: int = 5
    total_seconds: float = 30.0
    base_delay: float = 0.5
    max_delay: float = 8.0
    connect_timeout: float = 5.0
    read_timeout: float = 15.0


class Transient(Exception):
    """A failure worth retrying: connection trouble, a timeout, 408/429/5xx."""

    def __init__(self, cause: str, retry_after: float | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.retry_after = retry_after


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def error_text(response: requests.Response) -> str:
    """`CODE: message` from the registry's JSON errors, else a short, safe description of the body."""
    try:
        errors = response.json().get("errors") or []
        parts = [f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errors if isinstance(e, dict)]
        if parts:
            return "; ".join(parts)
    except (ValueError, AttributeError):
        pass
    kind = response.headers.get("Content-Type", "no content type").split(";")[0]
    return f"HTTP {response.status_code} ({kind} body, not a registry error)"


_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


class RegistryClient:
    """One registry, one set of credentials; safe to use from one thread at a time."""

    def __init__(
        self,
        registry: str,
        credentials: Credentials | None,
        plain_http: bool,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.registry = registry
        self.base = f"{'http' if plain_http else 'https'}://{registry}"
        self.credentials = credentials
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._session = requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        # requests re-reads the whole environment for proxy settings on every request (trust_env),
        # which profiling showed to be ~40% of the client's CPU per push. Read it once per host
        # instead: HTTPS_PROXY / NO_PROXY are still honoured, and so is a custom CA bundle.
        self._session.trust_env = False
        self._session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self._proxies: dict[str, dict[str, str]] = {}
        self._auth: dict[str, str] = {}  # scope -> Authorization header value
        self.uploaded_blobs = 0

    def close(self) -> None:
        self._session.close()

    # --- the retry and auth machinery -------------------------------------------------------

    def _retrying(self, operation: str, attempt: Callable[[], Any]) -> Any:
        """Run `attempt` until it succeeds, raises a final error, or the retry bounds run out."""
        started = time.monotonic()
        for number in range(1, self.policy.attempts + 1):
            try:
                return attempt()
            except Transient as exc:
                elapsed = time.monotonic() - started
                delay = exc.retry_after
                if delay is None:
                    delay = min(self.policy.max_delay, self.policy.base_delay * 2 ** (number - 1))
                    delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not cryptography
                if number == self.policy.attempts or elapsed + delay > self.policy.total_seconds:
                    raise PublisherError(
                        f"{self.registry}: {operation} failed after {number} attempt(s) in {elapsed:.0f} s: {exc.cause}"
                    ) from None
                self._sleep(delay)
        raise AssertionError("unreachable")

    def _send(
        self,
        method: str,
        url: str,
        scope: str,
        *,
        body: Callable[[], bytes | IO[bytes] | None] = lambda: None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """One request, answering an auth challenge once; transient trouble raises Transient."""
        for first_try in (True, False):
            all_headers = dict(headers or {})
            if scope in self._auth:
                all_headers["Authorization"] = self._auth[scope]
            payload = body()
            try:
                response = self._session.request(
                    method,
                    url,
                    data=payload,
                    headers=all_headers,
                    stream=stream,
                    allow_redirects=True,
                    proxies=self._proxies_for(url),
                    timeout=(self.policy.connect_timeout, self.policy.read_timeout),
                )
            except requests.Timeout:
                raise Transient("timed out") from None
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
                if not challenge:
                    raise PublisherError(f"{self.registry}: 401 Unauthorized without an auth challenge")
                self._authenticate(challenge, scope)
                continue
            if response.status_code in TRANSIENT_STATUS:
                cause = f"{error_text(response)}"
                retry_after = _retry_after(response)
                response.close()
                raise Transient(cause, retry_after)
            return response
        return response

    def _authenticate(self, challenge: str, scope: str) -> None:
        scheme, params = parse_challenge(challenge)
        creds = self.credentials
        if scheme == "basic":
            if creds is None:
                raise PublisherError(
                    f"{self.registry}: the registry requires credentials; set OCI_USERNAME and OCI_PASSWORD "
                    "or log in with `oras login` / `docker login`"
                )
            pair = f"{creds.username}:{creds.password.get_secret_value()}".encode()
            self._auth[scope] = "Basic " + base64.b64encode(pair).decode()
            return
        if scheme != "bearer" or "realm" not in params:
            raise PublisherError(f"{self.registry}: unsupported auth challenge {scheme!r}")
        query: dict[str, str] = {"scope": params.get("scope") or scope}
        if "service" in params:
            query["service"] = params["service"]
        auth = (creds.username, creds.password.get_secret_value()) if creds else None
        try:
            response = self._session.get(
                params["realm"],
                params=query,
                auth=auth,
                timeout=(self.policy.connect_timeout, self.policy.read_timeout),
                proxies=self._proxies_for(params["realm"]),
            )
        except requests.RequestException as exc:
            raise Transient(f"token service unreachable ({_root_cause(exc)})") from None
        if response.status_code in TRANSIENT_STATUS:
            raise Transient(f"token service: {error_text(response)}", _retry_after(response))
        if response.status_code != 200:
            who = f"as {creds.username} ({creds.origin})" if creds else "anonymously"
            raise PublisherError(f"{self.registry}: authentication {who} was refused (HTTP {response.status_code})")
        try:
            data = response.json()
            token = data.get("token") or data.get("access_token")
        except ValueError:
            token = None
        if not isinstance(token, str) or not token:
            raise PublisherError(f"{self.registry}: the token service answered without a token")
        self._auth[scope] = f"Bearer {token}"

    def _proxies_for(self, url: str) -> dict[str, str]:
        host = urlsplit(url).netloc
        if host not in self._proxies:
            self._proxies[host] = requests.utils.get_environ_proxies(url)
        return self._proxies[host]

    def _url(self, repository: str, tail: str) -> str:
        return f"{self.base}/v2/{repository}/{tail}"

    def _fail(self, operation: str, response: requests.Response) -> PublisherError:
        if response.status_code in (401, 403):
            who = f"as {self.credentials.username}" if self.credentials else "anonymously"
            return PublisherError(f"{self.registry}: {operation}: access denied {who} ({error_text(response)})")
        return PublisherError(f"{self.registry}: {operation}: {error_text(response)}")

    # --- the operations ----------------------------------------------------------------------

    def blob_exists(self, repository: str, digest: str) -> bool:
        def attempt() -> bool:
            response = self._send("HEAD", self._url(repository, f"blobs/{digest}"), _scope(repository, "pull"))
            response.close()
            if response.status_code == 200:
                return True
            if response.status_code == 404:
                return False
            raise self._fail(f"checking blob {digest[:19]}", response)

        return bool(self._retrying(f"checking blob {digest[:19]} in {repository}", attempt))

    def upload_blob(self, repository: str, digest: str, size: int, source: Path | bytes) -> bool:
        """Upload unless present (True when bytes were sent); files stream from disk, never read whole."""
        if self.blob_exists(repository, digest):
            return False
        scope = _scope(repository, "push")

        def body() -> bytes | IO[bytes]:
            return source if isinstance(source, bytes) else source.open("rb")

        def attempt() -> None:
            start = self._send("POST", self._url(repository, "blobs/uploads/"), scope)
            start.close()
            if start.status_code != 202 or "Location" not in start.headers:
                raise self._fail("starting a blob upload", start)
            location = urljoin(self._url(repository, "blobs/uploads/"), start.headers["Location"])
            separator = "&" if "?" in location else "?"
            done = self._send(
                "PUT",
                f"{location}{separator}digest={digest}",
                scope,
                body=body,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            )
            done.close()
            if done.status_code != 201:
                raise self._fail(f"uploading blob {digest[:19]}", done)

        self._retrying(f"uploading blob {digest[:19]} to {repository}", attempt)
        self.uploaded_blobs += 1
        return True

    def put_manifest(self, repository: str, tag: str, manifest: bytes) -> str:
        """Upload the manifest bytes unchanged under `tag`; the digest the registry reports, checked."""
        expected = "sha256:" + hashlib.sha256(manifest).hexdigest()

        def attempt() -> str:
            response = self._send(
                "PUT",
                self._url(repository, f"manifests/{tag}"),
                _scope(repository, "push"),
                body=lambda: manifest,
                headers={"Content-Type": MANIFEST_MEDIA_TYPE},
            )
            response.close()
            if response.status_code not in (200, 201):
                raise self._fail(f"uploading the manifest for tag {tag}", response)
            reported = response.headers.get("Docker-Content-Digest", expected)
            if reported != expected:
                # the PUT is idempotent: a garbled answer is retried, a registry that really stores
                # other bytes fails after the retries with both digests named
                raise Transient(f"the registry reported {repository}:{tag} as {reported}, expected {expected}")
            return expected

        return str(self._retrying(f"uploading the manifest {repository}:{tag}", attempt))

    def get_manifest(self, repository: str, reference: str) -> bytes | None:
        """The manifest bytes at a tag or digest, None when there is none."""

        def attempt() -> bytes | None:
            response = self._send(
                "GET",
                self._url(repository, f"manifests/{reference}"),
                _scope(repository, "pull"),
                headers={"Accept": MANIFEST_ACCEPT},
            )
            if response.status_code == 404:
                response.close()
                return None
            if response.status_code != 200:
                response.close()
                raise self._fail(f"reading manifest {reference}", response)
            try:
                body = response.content
            except requests.RequestException as exc:
                raise Transient(f"reading the manifest was cut short ({_root_cause(exc)})") from None
            kind = response.headers.get("Content-Type", "").split(";")[0].strip()
            if kind not in MANIFEST_TYPES or not _is_json_object(body):
                raise PublisherError(
                    f"{self.registry}: reading manifest {repository}:{reference}: the registry answered "
                    f"{kind or 'no content type'} that is not an OCI manifest (is this an OCI registry?)"
                )
            return body

        result = self._retrying(f"reading manifest {repository}:{reference}", attempt)
        return result if isinstance(result, bytes) else None

    def resolve(self, repository: str, reference: str) -> str | None:
        """The manifest digest a tag points at (computed from the bytes served), None when absent."""
        manifest = self.get_manifest(repository, reference)
        return None if manifest is None else "sha256:" + hashlib.sha256(manifest).hexdigest()

    def download_blob(self, repository: str, digest: str, destination: Path) -> None:
        """Stream a blob to `destination`, checking its digest."""

        def attempt() -> None:
            response = self._send(
                "GET", self._url(repository, f"blobs/{digest}"), _scope(repository, "pull"), stream=True
            )
            with response:
                if response.status_code != 200:
                    raise self._fail(f"downloading blob {digest[:19]}", response)
                hasher = hashlib.sha256()
                try:
                    with destination.open("wb") as fh:
                        for chunk in response.iter_content(CHUNK):
                            hasher.update(chunk)
                            fh.write(chunk)
                except requests.RequestException as exc:
                    raise Transient(f"download cut short ({_root_cause(exc)})") from None
            if "sha256:" + hasher.hexdigest() != digest:
                raise Transient(f"blob {digest[:19]} arrived with other content")

        self._retrying(f"downloading blob {digest[:19]} from {repository}", attempt)


def _is_json_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, UnicodeDecodeError):
        return False


def _scope(repository: str, action: str) -> str:
    return f"repository:{repository}:{'pull' if action == 'pull' else 'pull,push'}"


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc) or type(exc).__name__
    return re.sub(r"<urllib3[^>]*>: ", "", text)[:200]
