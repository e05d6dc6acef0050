"""The two ways to reach a registry (the oras CLI, the built-in HTTP client) and the choice between them.

Both are the storage primitives of `transport.Transport`; `verified.VerifiedRegistry`, which `connect`
returns, checks what they move and owns the transport for the whole run.
"""

from __future__ import annotations

import shutil
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pack_publisher.oci.names import is_loopback
from pack_publisher.registry.credentials import Credentials, PrivateRegistryConfig, resolve_credentials
from pack_publisher.registry.retry import RetryPolicy
from pack_publisher.registry.verified import VerifiedRegistry
from pack_publisher.runtime.errors import ConfigError, PublisherError
from pack_publisher.runtime.frozen import frozen
from pack_publisher.runtime.processes import Commands
from pack_publisher.runtime.proxies import proxies_for
from pack_publisher.runtime.redact import Redactor, SecretStr

if TYPE_CHECKING:
    from pack_publisher.registry.http import HttpTransport


def secret_values(*secrets: SecretStr | None) -> list[str]:
    """The values of the secrets that are set, for redaction."""
    return [s.get_secret_value() for s in secrets if s is not None]


@frozen(kw_only=True)
class PublishOptions:
    """How to reach the registry: transport choice, plain HTTP, timeouts, credentials (secrets), proxies.

    A plain dataclass, made from checked settings by `config.environment.options_of` (pydantic's import
    cost ~60 ms of a ~0.3 s command; issue 24).
    """

    client: Literal["auto", "oras", "python"]
    oras_bin: str | None
    plain_http: bool
    oras_experimental: bool
    timeout: float  # seconds to wait for each registry response
    oci_username: str | None = None
    oci_password: SecretStr | None = field(default=None, repr=False)
    github_actor: str | None = None
    github_token: SecretStr | None = field(default=None, repr=False)
    plain_http_credentials: bool = False
    docker_config: Path = Path(".docker/config.json")  # the Docker config file credentials may come from
    ca_bundle: str | None = None  # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE
    proxy_env: dict[str, str] = field(default_factory=dict)  # the proxy variables, as set
    child_env: dict[str, str] = field(default_factory=dict, repr=False)  # for builder, oras, helpers: no secrets

    @property
    def secrets(self) -> list[str]:
        """Every secret value known, for redaction."""
        return secret_values(self.oci_password, self.github_token)

    @property
    def search_path(self) -> str | None:
        """PATH, for finding oras and the builder."""
        return self.child_env.get("PATH")

    def uses_plain_http(self, registry: str) -> bool:
        host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
        return self.plain_http or host in {"localhost", "127.0.0.1", "[::1]"}


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


def check_proxy(registry: str, options: PublishOptions) -> None:
    """The proxy the variables name for the registry, if any, is one the built-in client can use: http://.

    Both transports read through the built-in client, which reaches HTTPS registries through an HTTP
    proxy's CONNECT tunnel only (no TLS to the proxy itself, no SOCKS): said once, before any build.
    """
    scheme = "http" if options.uses_plain_http(registry) else "https"
    proxy = proxies_for(f"{scheme}://{registry}/v2/", options.proxy_env).get(scheme, "")
    kind = proxy.split("://", 1)[0].lower() if "://" in proxy else "http"
    if proxy and kind != "http":
        raise ConfigError(
            f"{scheme.upper()}_PROXY / ALL_PROXY: a {kind}:// proxy for {registry} is not supported; "
            "use an http:// proxy (HTTPS registries are reached through its CONNECT tunnel)"
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
    check_proxy(registry, options)
    oras = chosen_oras(options)
    credentials: Credentials | None = None
    if use_credentials:
        credentials = resolve_credentials(registry, options, commands)
    if credentials is not None:
        redactor.add_credentials(credentials.username, credentials.password.get_secret_value())
    check_plain_http(registry, options, credentials)
    policy = policy or RetryPolicy(read_timeout=options.timeout)
    from pack_publisher.registry.http import HttpTransport

    client = HttpTransport(
        registry,
        credentials,
        plain_http,
        policy,
        ca_bundle=options.ca_bundle,
        proxy_env=options.proxy_env,
        redactor=redactor,
        plain_http_credentials=options.plain_http_credentials,
    )
    if oras is None:
        return VerifiedRegistry(client, registry)
    from pack_publisher.registry.oras import OrasTransport

    try:  # oras writes, the built-in client reads (see `registry.oras`)
        if credentials is not None:  # where a token realm would take them, decided before oras has them
            probe_token_realm(client)
        env = dict(options.child_env)
        if options.oras_experimental:
            env["ORAS_EXPERIMENTAL"] = "1"
        config = PrivateRegistryConfig(registry, credentials)
    except BaseException:
        client.close()
        raise
    transport = OrasTransport(
        oras, registry, config, credentials, plain_http, commands, env, redactor, policy, reader=client
    )
    return VerifiedRegistry(transport, registry)


def probe_token_realm(client: HttpTransport) -> None:
    """Answer the registry's challenge once with the built-in client before oras is handed the credentials.

    oras sends them to whatever token realm the registry names, over plain HTTP too; the built-in
    client's rules (`auth.Authenticator`) refuse a realm that may not have them, and a token the service
    answers joins the redactor (and is refused with control characters) before anything else sees it.
    The client is the run's reader, so its token serves the reads that follow.
    """
    from pack_publisher.registry.auth import RealmRefused, TokenRefused

    try:
        client.answer_challenge(attempts=1)
    except (RealmRefused, TokenRefused):
        raise
    except PublisherError:
        pass  # unreachable, failing, or the credentials refused: oras meets the same and says so per pack
