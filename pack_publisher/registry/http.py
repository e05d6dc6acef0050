"""The built-in transport: the OCI distribution protocol on a small client of its own (`client`, on
`http.client`), with retry and auth as separate parts.

Why not oras-py: its push cannot set `artifactType`, reads whole files into memory, retries only
HTTP 500 for over two minutes, fails against Basic-auth registries and raises bare ValueErrors
(see shared/docs/oci-publishing.md). The protocol subset needed here is a few requests.

Every answer is read with a size cap and a wall-clock deadline (headers: `connections`; the body:
`HttpTransport._stream`), so a registry that trickles bytes or sends a huge body cannot hold a release.
Nothing here reads the environment: the caller passes the CA bundle and a snapshot of the proxy
variables (`runtime.proxies.proxies_for` decides from it alone).

One transport serves every thread of a run: its client's keep-alive connections (`connections.Pool`)
and its tokens carry over from planning to pushing to reading back.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from pack_publisher import __version__
from pack_publisher.oci.descriptor import Descriptor, digest_of, is_digest
from pack_publisher.oci.manifest import MANIFEST_MEDIA_TYPE
from pack_publisher.registry.auth import Authenticator, retry_after_seconds
from pack_publisher.registry.client import Client, ClientError
from pack_publisher.registry.connections import (
    Response,
    finish,
    read_body,
    root_cause,
    stream_body,
    timeout_text,
)
from pack_publisher.registry.credentials import Credentials
from pack_publisher.registry.retry import TRANSIENT_STATUS, RetryPolicy, Transient, retrying
from pack_publisher.registry.transport import (
    MAX_MANIFEST_BYTES,
    AttachRequest,
    FetchedManifest,
    LikelyPush,
    NotFound,
    PushOutcome,
    PushRequest,
    SinkFactory,
)
from pack_publisher.runtime.errors import AccessError, ConfigError, PublisherError
from pack_publisher.runtime.redact import Redactor

DOCKER_MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = {MANIFEST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE}
MANIFEST_ACCEPT = f"{MANIFEST_MEDIA_TYPE}, {DOCKER_MANIFEST_MEDIA_TYPE}"
MAX_ERROR_BYTES = 64 * 1024
MIN_BLOB_RATE = 256 * 1024  # bytes/s a blob download may not fall below, on average, before it is cut off
USER_AGENT = f"greentic-pack-publisher/{__version__}"


class HttpTransport:
    """One registry, one set of credentials; safe to use from several threads (connections pooled)."""

    name = "built-in client"

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
        """`ca_bundle`: a CA bundle file or folder (None: the system's trust store and certifi's).
        `proxy_env`: the proxy variables (any of `PROXY_VARIABLES`) as the caller read them; None or empty:
        no proxy. `redactor`: the run's,
        which every token joins; `plain_http_credentials`: OCI_PLAIN_HTTP_CREDENTIALS (see `Authenticator`)."""
        self.registry = registry
        self._scheme = "http" if plain_http else "https"
        self.base = f"{self._scheme}://{registry}"
        self.policy = policy or RetryPolicy()
        self.referrers_api: bool | None = None  # None until asked (`http_referrers`): a registry has it or not
        # a referrer's PUT was answered without OCI-Subject: the registry keeps no referrers itself (the tag
        # schema), so it reads no subject field, and a referrer may go up beside its subject
        self.tag_schema = False
        if ca_bundle and not Path(ca_bundle).exists():
            raise ConfigError(f"the CA bundle {ca_bundle} does not exist")
        self._client = Client(ca_bundle, dict(proxy_env or {}), USER_AGENT)
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
        self._client.close()

    # --- one request -----------------------------------------------------------------------------

    def _timeouts(self) -> tuple[float, float]:
        return (self.policy.connect_timeout, self.policy.read_timeout)

    def _get_token(self, url: str, **kwargs: Any) -> Response:
        return self._client.request("GET", url, timeout=self._timeouts(), **kwargs)

    def _read(self, response: Response, cap: int, what: str, deadline_seconds: float) -> bytes:
        return read_body(self.registry, response, cap, what, deadline_seconds, self.policy.clock)

    def _read_token_answer(self, response: Response, cap: int) -> bytes:
        return self._read(response, cap, "the token answer", self.policy.read_timeout)

    def _send(
        self,
        method: str,
        url: str,
        scope: str,
        *,
        body: Callable[[], bytes | IO[bytes] | None] = lambda: None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """One request (streamed), answering an auth challenge once; transient trouble raises Transient."""
        for first_try in (True, False):
            all_headers = dict(headers or {})
            authorization = self.auth.header(scope)
            target = urlsplit(url)
            # credentials go nowhere else, and never in clear text to a registry reached over TLS
            if authorization and target.netloc == self.registry and target.scheme == self._scheme:
                all_headers["Authorization"] = authorization
            payload = body()
            try:
                response = self._client.request(
                    method, url, data=payload, headers=all_headers, timeout=self._timeouts()
                )
            except TimeoutError as exc:
                raise Transient(timeout_text(exc)) from None
            except ssl.SSLError as exc:  # a certificate problem does not go away by retrying
                raise AccessError(f"{self.registry}: TLS failed ({root_cause(exc)})") from None
            except ClientError as exc:  # invalid URL, redirect loop, bad header: final
                raise PublisherError(f"{self.registry}: {method} {url}: {root_cause(exc)}") from None
            except (OSError, http.client.HTTPException) as exc:
                raise Transient(f"connection failed ({root_cause(exc)})") from None
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

    def _error_text(self, response: Response) -> str:
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

    def _fail(self, operation: str, response: Response) -> PublisherError:
        if response.status_code in (401, 403):
            return AccessError(
                f"{self.registry}: {operation}: access denied {self.auth.who} ({self._error_text(response)})"
            )
        return PublisherError(f"{self.registry}: {operation}: {self._error_text(response)}")

    def _url(self, repository: str, tail: str) -> str:
        return f"{self.base}/v2/{repository}/{tail}"

    def _retrying(self, operation: str, attempt: Callable[[], Any]) -> Any:
        return retrying(self.policy, self.registry, operation, attempt)

    def answer_challenge(self, attempts: int | None = None) -> None:
        """Ask the API root and answer its auth challenge, if any (what oras would do with the credentials)."""

        def attempt() -> None:
            response = self._send("GET", f"{self.base}/v2/", "")
            response.close()

        retrying(self.policy, self.registry, "checking where the credentials go", attempt, attempts=attempts)

    # --- the storage primitives -------------------------------------------------------------------

    def resolve(self, repository: str, reference: str) -> Descriptor:
        def attempt() -> Descriptor:
            url = self._url(repository, f"manifests/{reference}")
            response = self._send("HEAD", url, _scope(repository, "pull"), headers={"Accept": MANIFEST_ACCEPT})
            finish(response)
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
            finish(response)
            if response.status_code == 200:
                return True
            if response.status_code == 404:
                return False
            raise self._fail(f"checking blob {digest[:19]}", response)

        return bool(self._retrying(f"checking blob {digest[:19]} in {repository}", attempt))

    def blob_served(self, repository: str, digest: str) -> tuple[str, int] | None:
        def attempt() -> tuple[str, int] | None:
            response = self._send("HEAD", self._url(repository, f"blobs/{digest}"), _scope(repository, "pull"))
            finish(response)
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
                for chunk in stream_body(response, self.policy.clock, f"blob {digest[:19]}", budget):
                    sink.write(chunk)

        self._retrying(f"downloading blob {digest[:19]} from {repository}", attempt)

    def prepare(self, likely: LikelyPush) -> None:
        """Nothing to get ready: a request costs no start-up."""

    def push(self, request: PushRequest) -> PushOutcome:
        from pack_publisher.registry.http_push import push

        return push(self, request)

    # --- push steps -------------------------------------------------------------------------------

    def _put_manifest(
        self, repository: str, tag: str, manifest: bytes, media_type: str = MANIFEST_MEDIA_TYPE
    ) -> str | None:
        """Upload the manifest bytes unchanged under `tag` (what landed is read back and checked above).

        Returns the registry's `OCI-Subject` header: set by registries with the referrers API when the
        manifest has a subject.
        """

        def attempt() -> str | None:
            response = self._send(
                "PUT",
                self._url(repository, f"manifests/{tag}"),
                _scope(repository, "push"),
                body=lambda: manifest,
                headers={"Content-Type": media_type},
            )
            if response.status_code not in (200, 201):
                raise self._fail(f"uploading the manifest for tag {tag}", response)
            finish(response)
            return response.headers.get("OCI-Subject")

        return self._retrying(f"uploading the manifest {repository}:{tag}", attempt)  # type: ignore[no-any-return]

    # --- referrers (the OCI 1.1 referrers API, else the tag schema): see http_referrers --------------

    def referrers(self, repository: str, subject: str) -> list[dict[str, Any]]:
        from pack_publisher.registry.http_referrers import referrers

        return referrers(self, repository, subject)

    def attach(self, request: AttachRequest) -> None:
        from pack_publisher.registry.http_referrers import attach

        attach(self, request)

    def index_referrer(self, request: AttachRequest) -> None:
        from pack_publisher.registry.http_referrers import update_index

        update_index(self, request.repository, request.referrer)


def _is_json_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False


def _scope(repository: str, action: str) -> str:
    return f"repository:{repository}:{'pull' if action == 'pull' else 'pull,push'}"
