"""Registry credentials: OCI_USERNAME/OCI_PASSWORD, else GITHUB_ACTOR/GITHUB_TOKEN, else Docker's config;
and the private registry config that hands them to oras (in memory on Linux, never on a disk).

The Docker config file is the one `docker login` and `oras login` write (`$DOCKER_CONFIG/config.json`,
default `~/.docker/config.json`), including `credsStore` / `credHelpers` helper programs.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pack_publisher.runtime import cleanup
from pack_publisher.runtime.errors import ConfigError
from pack_publisher.runtime.frozen import frozen
from pack_publisher.runtime.processes import Commands
from pack_publisher.runtime.redact import SecretStr
from pack_publisher.runtime.safe_files import read_regular

if TYPE_CHECKING:
    from pack_publisher.registry.connect import PublishOptions

HELPER_TIMEOUT_SECONDS = 30
MAX_DOCKER_CONFIG_BYTES = 4 * 1024 * 1024  # far above a real one; a link to /dev/zero must not fill the memory


@frozen
class Credentials:
    username: str
    password: SecretStr = field(repr=False)
    origin: str  # where they came from, for messages (never the values)


def _host_keys(registry: str) -> list[str]:
    keys = [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/", f"https://{registry}/v2/"]
    if registry == "docker.io":
        keys.append("https://index.docker.io/v1/")
    return keys


def _from_helper(commands: Commands, helper: str, registry: str, path: Path) -> Credentials | None:
    program = f"docker-credential-{helper}"
    found = shutil.which(program, path=commands.env.get("PATH"))
    if found is None:
        raise ConfigError(f"{path}: credential helper {program} is not installed")
    try:
        # a helper is a third-party program: it gets the child environment, with no secret of ours
        result = commands.run([found, "get"], timeout=HELPER_TIMEOUT_SECONDS, stdin=registry.encode())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot run credential helper {program} ({exc.strerror})") from None
    if result.expired:
        raise ConfigError(f"{path}: credential helper {program} did not answer within {HELPER_TIMEOUT_SECONDS} s")
    if result.returncode != 0:
        return None  # helpers exit non-zero for "no credentials for this host"
    try:
        data = json.loads(result.stdout)
        return Credentials(data["Username"], SecretStr(data["Secret"]), f"credential helper {program}")
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"credential helper {program} answered something that is not credentials") from None


def _from_docker_config(commands: Commands, path: Path, registry: str) -> Credentials | None:
    data = read_regular(path, MAX_DOCKER_CONFIG_BYTES, "DOCKER_CONFIG")  # no FIFO, device or endless file
    if data is None:
        return None
    try:
        config: Any = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError(f"{path}: not a readable Docker config file ({type(exc).__name__})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: not a Docker config file (expected a JSON object)")
    helpers = config.get("credHelpers", {})
    auths = config.get("auths", {})
    for key, value in (("credHelpers", helpers), ("auths", auths)):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: '{key}' is not an object")
    if isinstance(helpers.get(registry), str):
        return _from_helper(commands, helpers[registry], registry, path)
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
        return _from_helper(commands, config["credsStore"], registry, path)
    return None


def check_pairs(options: PublishOptions) -> None:
    """Half a pair of credentials is a mistake, never a reason to go anonymous."""
    if options.oci_password is not None and not options.oci_username:
        raise ConfigError("OCI_USERNAME: not set, but OCI_PASSWORD is")
    if options.oci_username and options.oci_password is None:
        raise ConfigError("OCI_PASSWORD: not set, but OCI_USERNAME is")


def resolve_credentials(registry: str, options: PublishOptions, commands: Commands) -> Credentials | None:
    """The first complete pair, in the documented order; None means anonymous."""
    check_pairs(options)
    if options.oci_password is not None and options.oci_username:
        return Credentials(options.oci_username, options.oci_password, "OCI_USERNAME/OCI_PASSWORD")
    if options.github_token is not None and options.github_actor:
        return Credentials(options.github_actor, options.github_token, "GITHUB_ACTOR/GITHUB_TOKEN")
    return _from_docker_config(commands, options.docker_config, registry)


CONFIG_PREFIX = "pack-publisher-oras-"


class PrivateRegistryConfig:
    """The run's own registry config for oras; remove() on every exit path.

    On Linux it never touches a disk: an anonymous in-memory file (`memfd_create`) that oras opens as
    `/dev/fd/N`, inherited by each oras command alone, gone when this process ends however it ends.
    Elsewhere (or `in_memory=False`) a 0600 file in a 0700 folder named after this process; a later run
    sweeps such folders whose process is gone (`sweep_stale`), so a run killed outright leaves no
    credentials behind for long.
    """

    def __init__(self, registry: str, credentials: Credentials | None, *, in_memory: bool = True) -> None:
        auths: dict[str, Any] = {}
        if credentials is not None:
            pair = f"{credentials.username}:{credentials.password.get_secret_value()}"
            auths[registry] = {"auth": base64.b64encode(pair.encode()).decode()}
        data = json.dumps({"auths": auths}).encode()
        self.folder: Path | None = None
        self.fd: int | None = None
        if in_memory and hasattr(os, "memfd_create") and Path("/dev/fd").is_dir():
            self.fd = os.memfd_create("pack-publisher-oras-config")  # close-on-exec: only pass_fds hands it on
            os.write(self.fd, data)
            self.path = Path(f"/dev/fd/{self.fd}")
            return
        self.folder = cleanup.scratch_folder(Path(tempfile.gettempdir()), CONFIG_PREFIX)  # mode 0700
        self.path = self.folder / "config.json"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self.fd,) if self.fd is not None else ()

    def remove(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        if self.folder is not None:
            cleanup.remove_folder(self.folder)
