"""Registry credentials: OCI_USERNAME/OCI_PASSWORD, else GITHUB_ACTOR/GITHUB_TOKEN, else Docker's config.

The Docker config file is the one `docker login` and `oras login` write (`$DOCKER_CONFIG/config.json`,
default `~/.docker/config.json`), including `credsStore` / `credHelpers` helper programs.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from .errors import ConfigError


@dataclass(frozen=True)
class Credentials:
    username: str
    password: SecretStr = field(repr=False)
    origin: str  # where they came from, for messages (never the values)


def docker_config_path() -> Path:
    folder = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    return Path(folder) / "config.json"


def _host_keys(registry: str) -> list[str]:
    keys = [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/", f"https://{registry}/v2/"]
    if registry == "docker.io":
        keys.append("https://index.docker.io/v1/")
    return keys


def _from_helper(helper: str, registry: str, path: Path) -> Credentials | None:
    program = f"docker-credential-{helper}"
    from .settings import child_environment  # late: settings is heavy, and only helpers need it

    try:
        result = subprocess.run(
            [program, "get"],
            input=registry,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=child_environment(),  # a helper is a third-party program: it gets no secret of ours
        )
    except FileNotFoundError:
        raise ConfigError(f"{path}: credential helper {program} is not installed") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{path}: credential helper {program} did not answer within 30 s") from None
    if result.returncode != 0:
        return None  # helpers exit non-zero for "no credentials for this host"
    try:
        data = json.loads(result.stdout)
        return Credentials(data["Username"], SecretStr(data["Secret"]), f"credential helper {program}")
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"credential helper {program} answered something that is not credentials") from None


def _from_docker_config(registry: str) -> Credentials | None:
    path = docker_config_path()
    try:
        config: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable Docker config file ({type(exc).__name__})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: not a Docker config file (expected a JSON object)")
    helpers = config.get("credHelpers", {})
    auths = config.get("auths", {})
    for key, value in (("credHelpers", helpers), ("auths", auths)):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: '{key}' is not an object")
    if isinstance(helpers.get(registry), str):
        return _from_helper(helpers[registry], registry, path)
    for key in _host_keys(registry):
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError, TypeError):
                raise ConfigError(f"{path}: the 'auth' entry for {registry} is not base64 user:password") from None
            return Credentials(user, SecretStr(password), f"{path}")
        if entry.get("username") and entry.get("password"):
            return Credentials(str(entry["username"]), SecretStr(str(entry["password"])), f"{path}")
    if isinstance(config.get("credsStore"), str):
        return _from_helper(config["credsStore"], registry, path)
    return None


def resolve_credentials(
    registry: str,
    oci_username: str | None,
    oci_password: SecretStr | None,
    github_actor: str | None,
    github_token: SecretStr | None,
) -> Credentials | None:
    """The first complete pair, in the documented order; None means anonymous."""
    if oci_password is not None:
        if not oci_username:
            raise ConfigError("OCI_USERNAME: not set, but OCI_PASSWORD is")
        return Credentials(oci_username, oci_password, "OCI_USERNAME/OCI_PASSWORD")
    if github_token is not None and github_actor:
        return Credentials(github_actor, github_token, "GITHUB_ACTOR/GITHUB_TOKEN")
    return _from_docker_config(registry)
