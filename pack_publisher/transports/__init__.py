"""The two ways to reach a registry (the oras CLI, the built-in HTTP client) and the choice between them.

Both are the storage primitives of `base.Transport`; `pack_publisher.content` checks what they move.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from types import TracebackType

from ..credentials import Credentials, resolve_credentials
from ..errors import ConfigError
from ..redact import Redactor
from ..settings import PublishOptions, child_environment
from .base import NotFound, PushOutcome, PushRequest, Transport
from .retry import RetryPolicy

__all__ = ["NotFound", "PushOutcome", "PushRequest", "Transport", "Transports", "find_oras"]


def find_oras(options: PublishOptions) -> str | None:
    if options.oras_bin:
        found = shutil.which(options.oras_bin)
        if found is None:
            raise ConfigError(f"ORAS_BIN: {options.oras_bin!r} is not an executable file")
        return found
    return shutil.which("oras")


class Transports:
    """The transports of one run, opened after credentials and the oras choice were checked up front.

    A malformed Docker config or a missing oras is a configuration error for the whole run, found
    before any pack is pushed. The built-in client opens one transport per thread (a requests session
    is not shared between threads); the oras transport is shared, with one private registry config
    per run, removed by `close()` (and by Ctrl-C handling, see `pack_publisher.cleanup`).
    """

    def __init__(self, registry: str, options: PublishOptions, redactor: Redactor, *, use_credentials: bool = True):
        self.registry = registry
        plain_http = options.uses_plain_http(registry)
        credentials: Credentials | None = None
        if use_credentials:
            credentials = resolve_credentials(
                registry, options.oci_username, options.oci_password, options.github_actor, options.github_token
            )
        if credentials is not None:
            redactor.add_credentials(credentials.username, credentials.password.get_secret_value())
        self.credentials = credentials
        policy = RetryPolicy(read_timeout=options.timeout)
        oras = find_oras(options) if options.client != "python" else None
        if options.client == "oras" and oras is None:
            raise ConfigError("OCI_CLIENT: 'oras' asked for, but no oras executable was found (set ORAS_BIN)")
        self._opened: list[Transport] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._config = None
        self._new: Callable[[], Transport]
        if oras is not None:
            from .oras import OrasTransport, PrivateRegistryConfig

            self._config = PrivateRegistryConfig(registry, credentials)
            env = child_environment()
            if options.oras_experimental:
                env["ORAS_EXPERIMENTAL"] = "1"
            shared = OrasTransport(oras, registry, self._config, credentials, plain_http, env, redactor, policy)
            self._new = lambda: shared
        else:
            from .http import HttpTransport

            self._new = lambda: HttpTransport(registry, credentials, plain_http, policy)

    def get(self) -> Transport:
        """This thread's transport."""
        transport: Transport | None = getattr(self._local, "transport", None)
        if transport is None:
            transport = self._new()
            self._local.transport = transport
            with self._lock:
                self._opened.append(transport)
        return transport

    def close(self) -> None:
        for transport in self._opened:
            transport.close()
        if self._config is not None:
            self._config.remove()

    def __enter__(self) -> Transports:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
