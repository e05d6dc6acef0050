"""The transport interface and its built-in implementation; `oras_transport` holds the other one.

Both take the same composed artifact (the exact manifest bytes) and return the same outcome, so a
pack's digest does not depend on which one ran.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .artifact import EMPTY_CONFIG_BYTES, EMPTY_CONFIG_DIGEST
from .credentials import Credentials, resolve_credentials
from .errors import ConfigError
from .redact import Redactor
from .registry_client import RegistryClient, RetryPolicy
from .settings import PublishOptions


@dataclass(frozen=True)
class PushRequest:
    """One pack's artifact, ready to go: the archive on disk and the exact manifest bytes."""

    repository: str  # path inside the registry: <org>/<repo>/<pack>
    tags: list[str]  # the version tag first; 'latest' after it when asked for
    gtpack: Path
    layer_digest: str
    layer_size: int
    manifest: bytes
    digest: str


@dataclass(frozen=True)
class PushOutcome:
    digest: str  # what the registry reports for the version tag
    uploaded_blobs: int | None  # None when the transport does not say


class Transport(Protocol):
    name: str

    def resolve(self, repository: str, reference: str) -> str | None: ...

    def fetch_manifest(self, repository: str, reference: str) -> bytes | None: ...

    def blob_exists(self, repository: str, digest: str) -> bool: ...

    def fetch_blob(self, repository: str, digest: str, destination: Path) -> None:
        """Write the blob to `destination`; raise unless its content has exactly `digest`."""
        ...

    def push(self, request: PushRequest) -> PushOutcome: ...

    def close(self) -> None: ...


class PythonTransport:
    """The built-in client: blobs first (skipping those present), then the manifest under each tag."""

    name = "built-in client"

    def __init__(
        self, registry: str, credentials: Credentials | None, plain_http: bool, policy: RetryPolicy | None = None
    ) -> None:
        self.client = RegistryClient(registry, credentials, plain_http, policy)

    def resolve(self, repository: str, reference: str) -> str | None:
        return self.client.resolve(repository, reference)

    def fetch_manifest(self, repository: str, reference: str) -> bytes | None:
        return self.client.get_manifest(repository, reference)

    def blob_exists(self, repository: str, digest: str) -> bool:
        return self.client.blob_exists(repository, digest)

    def fetch_blob(self, repository: str, digest: str, destination: Path) -> None:
        self.client.download_blob(repository, digest, destination)

    def push(self, request: PushRequest) -> PushOutcome:
        uploaded = 0
        uploaded += self.client.upload_blob(request.repository, EMPTY_CONFIG_DIGEST, 2, EMPTY_CONFIG_BYTES)
        uploaded += self.client.upload_blob(
            request.repository, request.layer_digest, request.layer_size, request.gtpack
        )
        digest = ""
        for tag in request.tags:
            reported = self.client.put_manifest(request.repository, tag, request.manifest)
            digest = digest or reported
        return PushOutcome(digest=digest, uploaded_blobs=uploaded)

    def close(self) -> None:
        self.client.close()


def find_oras(options: PublishOptions) -> str | None:
    if options.oras_bin:
        found = shutil.which(options.oras_bin)
        if found is None:
            raise ConfigError(f"ORAS_BIN: {options.oras_bin!r} is not an executable file")
        return found
    return shutil.which("oras")


def transport_factory(registry: str, options: PublishOptions, redactor: Redactor) -> Callable[[], Transport]:
    """Check credentials and the oras choice once, up front; the factory then opens transports.

    A malformed Docker config or a missing oras is a configuration error for the whole run, found
    before any pack is pushed. Each push thread opens its own transport (a requests session is not
    shared between threads).
    """
    plain_http = options.uses_plain_http(registry)
    credentials = resolve_credentials(
        registry, options.oci_username, options.oci_password, options.github_actor, options.github_token
    )
    if credentials is not None:
        redactor.add(credentials.password.get_secret_value())
    oras = find_oras(options) if options.client != "python" else None
    if options.client == "oras" and oras is None:
        raise ConfigError("OCI_CLIENT: 'oras' asked for, but no oras executable was found (set ORAS_BIN)")
    if oras is not None:
        from .oras_transport import OrasTransport

        oras_path = oras
        return lambda: OrasTransport(oras_path, registry, credentials, plain_http, options.oras_experimental, redactor)
    policy = RetryPolicy(read_timeout=options.timeout)
    return lambda: PythonTransport(registry, credentials, plain_http, policy)


def open_transport(registry: str, options: PublishOptions, redactor: Redactor) -> Transport:
    return transport_factory(registry, options, redactor)()
