"""The two ways to reach a registry (the oras CLI, the built-in HTTP client) and the choice between them.

Both are the storage primitives of `transport.Transport`; `verified.VerifiedRegistry`, which `connect`
returns, checks what they move and owns the transport for the whole run.
"""

from __future__ import annotations

import shutil

from pack_publisher.registry.credentials import Credentials, resolve_credentials
from pack_publisher.registry.options import PublishOptions
from pack_publisher.registry.retry import RetryPolicy
from pack_publisher.registry.transport import Transport
from pack_publisher.registry.verified import VerifiedRegistry
from pack_publisher.runtime.errors import ConfigError
from pack_publisher.runtime.processes import Commands
from pack_publisher.runtime.redact import Redactor

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


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
    if credentials is None or not options.uses_plain_http(registry) or host in LOOPBACK_HOSTS:
        return
    if not options.plain_http_credentials:
        raise ConfigError(
            f"OCI_PLAIN_HTTP: would send the credentials from {credentials.origin} to {registry} in clear text; "
            "use TLS, or set OCI_PLAIN_HTTP_CREDENTIALS=1 as well to accept that"
        )


def connect(
    registry: str,
    options: PublishOptions,
    redactor: Redactor,
    commands: Commands,
    *,
    use_credentials: bool = True,
    policy: RetryPolicy | None = None,
) -> VerifiedRegistry:
    """The registry of a run, reached through its one transport, checked up front; use it as a context manager.

    A malformed Docker config, a missing oras or clear-text credentials are configuration errors for the
    whole run, found before any pack is built. One transport serves every thread of the run: the
    built-in client pools its sessions (warm connections and tokens carry over from planning to pushing
    to reading back), and the oras transport has one private registry config per run, removed when the
    registry is closed (and by Ctrl-C handling, see `runtime.cleanup`).
    """
    plain_http = options.uses_plain_http(registry)
    oras = chosen_oras(options)
    credentials: Credentials | None = None
    if use_credentials:
        credentials = resolve_credentials(registry, options, commands)
    if credentials is not None:
        redactor.add_credentials(credentials.username, credentials.password.get_secret_value())
    check_plain_http(registry, options, credentials)
    policy = policy or RetryPolicy(read_timeout=options.timeout)
    transport: Transport
    if oras is not None:
        from pack_publisher.registry.oras import OrasTransport, PrivateRegistryConfig

        env = dict(options.child_env)
        if options.oras_experimental:
            env["ORAS_EXPERIMENTAL"] = "1"
        config = PrivateRegistryConfig(registry, credentials)
        transport = OrasTransport(oras, registry, config, credentials, plain_http, commands, env, redactor, policy)
    else:
        from pack_publisher.registry.http import HttpTransport

        transport = HttpTransport(
            registry, credentials, plain_http, policy, ca_bundle=options.ca_bundle, proxy_env=options.proxy_env
        )
    return VerifiedRegistry(transport, registry)
