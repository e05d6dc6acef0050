"""The two ways to reach a registry (the oras CLI, the built-in HTTP client) and the choice between them.

Both are the storage primitives of `base.Transport`; `pack_publisher.content` checks what they move.
"""

from __future__ import annotations

import shutil
from types import TracebackType

from ..commands import Commands
from ..credentials import Credentials, resolve_credentials
from ..errors import ConfigError, PublisherError
from ..redact import Redactor
from ..settings import PublishOptions
from .auth import RealmRefused, TokenRefused, is_loopback
from .base import NotFound, PushOutcome, PushRequest, Transport
from .retry import RetryPolicy

__all__ = ["NotFound", "PushOutcome", "PushRequest", "Transport", "Transports", "find_oras"]


def find_oras(options: PublishOptions) -> str | None:
    if options.oras_bin:
        found = shutil.which(options.oras_bin, path=options.search_path)
        if found is None:
            raise ConfigError(f"ORAS_BIN: {options.oras_bin!r} is not an executable file")
        return found
    return shutil.which("oras", path=options.search_path)


def chosen_oras(options: PublishOptions) -> str | None:
    """The oras executable the run will use, or None for the built-in client; oras asked for but absent is an error."""
    oras = find_oras(options) if options.client != "python" else None
    if options.client == "oras" and oras is None:
        raise ConfigError("OCI_CLIENT: 'oras' asked for, but no oras executable was found (set ORAS_BIN)")
    return oras


def check_plain_http(registry: str, options: PublishOptions, credentials: Credentials | None) -> None:
    """Credentials in clear text only to this machine, unless OCI_PLAIN_HTTP_CREDENTIALS=1 says so too."""
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    if credentials is None or not options.uses_plain_http(registry) or is_loopback(host):
        return
    if not options.plain_http_credentials:
        raise ConfigError(
            f"OCI_PLAIN_HTTP: would send the credentials from {credentials.origin} to {registry} in clear text; "
            "use TLS, or set OCI_PLAIN_HTTP_CREDENTIALS=1 as well to accept that"
        )


class Transports:
    """The transports of one run, opened after credentials and the oras choice were checked up front.

    A malformed Docker config or a missing oras is a configuration error for the whole run, found
    before any pack is pushed. One transport serves every thread of the run: the built-in client pools
    its sessions (warm connections and tokens carry over from planning to pushing to reading back),
    and the oras transport has one private registry config per run, removed by `close()` (and by
    Ctrl-C handling, see `pack_publisher.cleanup`).
    """

    def __init__(
        self,
        registry: str,
        options: PublishOptions,
        redactor: Redactor,
        commands: Commands,
        *,
        use_credentials: bool = True,
        policy: RetryPolicy | None = None,
    ):
        self.registry = registry
        plain_http = options.uses_plain_http(registry)
        oras = chosen_oras(options)
        credentials: Credentials | None = None
        if use_credentials:
            credentials = resolve_credentials(registry, options, commands)
        if credentials is not None:
            redactor.add_credentials(credentials.username, credentials.password.get_secret_value())
        check_plain_http(registry, options, credentials)
        self.credentials = credentials
        policy = policy or RetryPolicy(read_timeout=options.timeout)
        self._config = None
        self._transport: Transport
        if oras is not None:
            from .oras import OrasTransport, PrivateRegistryConfig

            if credentials is not None:  # where a token realm would take them, decided before oras has them
                probe_token_realm(registry, credentials, plain_http, policy, options, redactor)
            self._config = PrivateRegistryConfig(registry, credentials)
            env = dict(options.child_env)
            if options.oras_experimental:
                env["ORAS_EXPERIMENTAL"] = "1"
            self._transport = OrasTransport(
                oras, registry, self._config, credentials, plain_http, commands, env, redactor, policy
            )
        else:
            from .http import HttpTransport

            self._transport = HttpTransport(
                registry,
                credentials,
                plain_http,
                policy,
                ca_bundle=options.ca_bundle,
                proxy_env=options.proxy_env,
                redactor=redactor,
                plain_http_credentials=options.plain_http_credentials,
            )

    def get(self) -> Transport:
        """The run's transport (safe to use from any thread)."""
        return self._transport

    def close(self) -> None:
        self._transport.close()
        if self._config is not None:
            self._config.remove()

    def __enter__(self) -> Transports:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def probe_token_realm(
    registry: str,
    credentials: Credentials,
    plain_http: bool,
    policy: RetryPolicy,
    options: PublishOptions,
    redactor: Redactor,
) -> None:
    """Answer the registry's challenge once with the built-in client before oras is handed the credentials.

    oras sends them to whatever token realm the registry names, over plain HTTP too; the built-in
    client's rules (`auth.Authenticator`) refuse a realm that may not have them, and a token the service
    answers joins the redactor (and is refused with control characters) before anything else sees it.
    """
    from dataclasses import replace

    from .http import HttpTransport

    probe = HttpTransport(
        registry,
        credentials,
        plain_http,
        replace(policy, attempts=1),
        ca_bundle=options.ca_bundle,
        proxy_env=options.proxy_env,
        redactor=redactor,
        plain_http_credentials=options.plain_http_credentials,
    )
    try:
        probe.answer_challenge()
    except (RealmRefused, TokenRefused):
        raise
    except PublisherError:
        pass  # unreachable, failing, or the credentials refused: oras meets the same and says so per pack
    finally:
        probe.close()
