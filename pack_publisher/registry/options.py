"""How to reach a registry: the registry layer's own options, made by the settings from the environment.

The registry code receives these values and never reads settings or the environment itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


def secret_values(*secrets: SecretStr | None) -> list[str]:
    """The values of the secrets that are set, for redaction."""
    return [s.get_secret_value() for s in secrets if s is not None]


class PublishOptions(BaseModel):
    """How to reach the registry: transport choice, plain HTTP, timeouts, credentials (secrets), proxies."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    client: Literal["auto", "oras", "python"]
    oras_bin: str | None
    plain_http: bool
    oras_experimental: bool
    timeout: float  # seconds to wait for each registry response
    oci_username: str | None = None
    oci_password: SecretStr | None = Field(default=None, repr=False)
    github_actor: str | None = None
    github_token: SecretStr | None = Field(default=None, repr=False)
    plain_http_credentials: bool = False
    docker_config: Path = Path(".docker/config.json")  # the Docker config file credentials may come from
    ca_bundle: str | None = None  # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE
    proxy_env: dict[str, str] = Field(default_factory=dict)  # the proxy variables, as set
    child_env: dict[str, str] = Field(default_factory=dict, repr=False)  # for builder, oras, helpers: no secrets

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
