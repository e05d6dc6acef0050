"""The environment boundary: every variable the tool reads, read once into one validated model.

The only module that reads `os.environ` (with `runtime.redact`'s fallback and the tools installer);
everything below receives values: `options_of` makes the registry layer's `PublishOptions`,
`child_environment` the environment handed to child processes, without secrets.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

from pack_publisher.oci.names import (
    PATH_COMPONENT_RE,
    REGISTRY_RE,
    REPOSITORY_PATH_RE,
    semver_problem,
)
from pack_publisher.registry.connect import PublishOptions
from pack_publisher.runtime.errors import ConfigError
from pack_publisher.runtime.frozen import frozen
from pack_publisher.runtime.redact import SecretStr, withheld_from_children
from pack_publisher.runtime.values import Invalid, as_bool, as_choice, as_float, as_int, as_str

# The environment variable each field is read from, for error messages.
ENV_NAMES = {
    "oci_registry": "OCI_REGISTRY",
    "oci_org": "OCI_ORG",
    "oci_repo": "OCI_REPO",
    "pack_version": "PACK_VERSION",
    "packs_dir": "PACKS_DIR",
    "out_dir": "OUT_DIR",
    "stage_dir": "STAGE_DIR",
    "lock_file": "LOCK_FILE",
    "dry_run": "DRY_RUN",
    "oras_experimental": "ORAS_EXPERIMENTAL",
    "packc": "PACKC / PACKC_BIN",
    "source_date_epoch": "SOURCE_DATE_EPOCH",
    "github_repository": "GITHUB_REPOSITORY",
    "github_repository_owner": "GITHUB_REPOSITORY_OWNER",
    "github_server_url": "GITHUB_SERVER_URL",
    "oci_client": "OCI_CLIENT",
    "oras_bin": "ORAS_BIN",
    "oci_plain_http": "OCI_PLAIN_HTTP",
    "publish_latest": "PUBLISH_LATEST",
    "publish_jobs": "PUBLISH_JOBS / --jobs",
    "oci_timeout": "OCI_TIMEOUT",
    "oci_plain_http_credentials": "OCI_PLAIN_HTTP_CREDENTIALS",
    "allow_dirty": "ALLOW_DIRTY / --allow-dirty",
    "git_sha": "GIT_SHA",
    "github_sha": "GITHUB_SHA",
    "pack_signing_key_file": "PACK_SIGNING_KEY_FILE",
    "require_signature": "REQUIRE_SIGNATURE",
    "require_public": "REQUIRE_PUBLIC / --require-public",
}


# Proxy variables, passed to the built-in client as read here (nothing below reads the environment).
PROXY_ENV_NAMES = frozenset({"https_proxy", "http_proxy", "all_proxy", "no_proxy"})


# 9999-12-31T23:59:59Z: the last second a four-digit RFC 3339 year (and Python's datetime) can hold.
MAX_EPOCH = 253402300799


OciClient = Literal["auto", "oras", "python"]
OCI_CLIENTS: tuple[OciClient, ...] = ("auto", "oras", "python")


@frozen(kw_only=True)
class EnvSettings:
    """The raw inputs, one field per environment variable; task flags are passed as init values.

    Read by `read_environment` as pydantic-settings read them (names case-insensitively, empty values
    as unset, task flags over the environment) and checked by hand (`CHECKS`, `runtime.values`) with
    pydantic's rules and words: importing pydantic cost ~60 ms of a ~0.3 s command (issue 24).
    """

    oci_registry: str = "ghcr.io"
    oci_org: str | None = None
    oci_repo: str = "greentic-packs"
    pack_version: str | None = None
    packs_dir: str = "packs"
    out_dir: str = "dist/packs"
    # where packs are copied for the builder, which records that absolute path in the archive: fixed, not
    # under OUT_DIR, so shards with their own OUT_DIR build the same bytes as a single run
    stage_dir: str = "dist/packs/stage"
    lock_file: str = "packs.lock.json"
    dry_run: bool = False
    oras_experimental: bool = False
    packc: str | None = None  # PACKC, else PACKC_BIN (ALIASES)
    source_date_epoch: int | None = None
    github_repository: str | None = None
    github_repository_owner: str | None = None
    github_server_url: str = "https://github.com"
    # publishing
    oci_client: OciClient = "auto"
    oras_bin: str | None = None
    oci_plain_http: bool = False
    publish_latest: bool = False
    publish_jobs: int = 4
    oci_timeout: float = 15.0
    # credentials: typed as secrets so they never print; used by the publishing transports
    oci_username: str | None = None
    oci_password: SecretStr | None = None
    github_actor: str | None = None
    github_token: SecretStr | None = None
    oci_plain_http_credentials: bool = False  # the second opt-in: credentials over plain HTTP to a remote host
    # the rest of what the run reads from its environment, read here once
    allow_dirty: bool = False
    git_sha: str | None = None
    github_sha: str | None = None
    ci: str | None = None  # any value but 0/false/no counts: CI systems set it to all kinds of words
    github_actions: str | None = None
    docker_config: str | None = None
    github_step_summary: str | None = None
    requests_ca_bundle: str | None = None
    curl_ca_bundle: str | None = None
    # what consumers get (docs/consumers.md): the lock entries' signing key (a secret) and the release's demands
    pack_signing_key: SecretStr | None = None
    pack_signing_key_file: str | None = None
    require_signature: bool = False
    require_public: bool = False


# The names a field is given by, first found wins: in the environment (compared lowercase) and in flags.
ALIASES = {"packc": ("packc", "PACKC", "PACKC_BIN")}


def _sha(value: object) -> str:
    text = as_str(value)
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", text.strip().lower()):
        raise Invalid(f"{text!r} is not a full git commit id (40 hex digits)")
    return text.strip().lower()


def _registry(value: object) -> str:
    text = as_str(value).strip()
    if "://" in text:
        raise Invalid(f"{text!r} must be a host[:port] without a scheme (e.g. 'ghcr.io')")
    lowered = text.lower().rstrip("/")
    if not REGISTRY_RE.match(lowered):
        raise Invalid(f"{text!r} is not a registry host[:port]")
    return lowered


def _org(value: object) -> str:
    text = as_str(value)
    lowered = text.strip().lower()  # GitHub owners may have capitals; OCI paths may not
    if not PATH_COMPONENT_RE.match(lowered):
        raise Invalid(f"{text!r} is not a valid OCI repository path component")
    return lowered


def _repo(value: object) -> str:
    text = as_str(value)
    if not REPOSITORY_PATH_RE.match(text):
        hint = " (it must be lowercase)" if REPOSITORY_PATH_RE.match(text.lower()) else ""
        raise Invalid(f"{text!r} is not a valid OCI repository path{hint}")
    return text


def _version(value: object) -> str:
    text = as_str(value)
    if text != text.strip():  # a tag is taken as written: "1.2.3\n" is not 1.2.3 (README)
        raise Invalid(f"{text!r} has white space around it; set the bare version, e.g. {text.strip()!r}")
    problem = semver_problem(text)
    if problem:
        raise Invalid(problem)
    return text


def _epoch(value: object) -> int:
    number = as_int(value, ge=0)
    if number > MAX_EPOCH:
        raise Invalid(f"{number} is after {MAX_EPOCH} (9999-12-31T23:59:59Z), the last time a date can hold")
    return number


def _secret(value: object) -> SecretStr:
    return value if isinstance(value, SecretStr) else SecretStr(as_str(value))


# How each field's value is checked; a field not named here is text. Defaults are not checked.
CHECKS: dict[str, Callable[[object], object]] = {
    "oci_registry": _registry,
    "oci_org": _org,
    "oci_repo": _repo,
    "pack_version": _version,
    "source_date_epoch": _epoch,
    "oci_client": lambda value: as_choice(value, OCI_CLIENTS),
    "publish_jobs": lambda value: as_int(value, ge=1, le=32),
    "oci_timeout": lambda value: as_float(value, gt=0, le=600),
    "git_sha": _sha,
    "github_sha": _sha,
    **dict.fromkeys(("oci_password", "github_token", "pack_signing_key"), _secret),
    **dict.fromkeys(
        (
            *("dry_run", "oras_experimental", "oci_plain_http", "publish_latest", "oci_plain_http_credentials"),
            *("allow_dirty", "require_signature", "require_public"),
        ),
        as_bool,
    ),
}
FIELD_NAMES = tuple(f.name for f in fields(EnvSettings))


def _env_names(name: str) -> tuple[str, ...]:
    """The environment variables a field is read from, lowercase, first found wins (as pydantic-settings)."""
    return tuple(dict.fromkeys(choice.lower() for choice in ALIASES.get(name, (name,))))


def environment_values() -> dict[str, str]:
    """Each field's value as set in the environment (names compared case-insensitively; empty: unset)."""
    lowered = {k.lower(): v for k, v in os.environ.items() if v != ""}
    values = {}
    for name in FIELD_NAMES:
        found = next((lowered[n] for n in _env_names(name) if n in lowered), None)
        if found is not None:
            values[name] = found
    return values


def read_environment(overrides: dict[str, Any] | None = None) -> EnvSettings:
    """The environment with the task flags (`overrides`, None meaning 'not given') over it, checked field by
    field in order: the first refused value is the error, as pydantic reported it. Unknown names are ignored."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    data = {**environment_values(), **given}
    checked: dict[str, Any] = {}
    for name in FIELD_NAMES:
        key = next((k for k in ALIASES.get(name, (name,)) if k in data), None)
        if key is None:
            continue  # the default
        try:
            checked[name] = CHECKS.get(name, as_str)(data[key])
        except Invalid as exc:
            raise _first_error(name, exc) from None
    return EnvSettings(**checked)


def _first_error(field: str, exc: Invalid) -> ConfigError:
    name = ENV_NAMES.get(field, field.upper())
    message = f"{exc.value!r}: {exc.message.lower()}" if exc.parsing else exc.message
    return ConfigError(f"{name}: {message}")


def options_of(env: EnvSettings) -> PublishOptions:
    """The publishing options alone (what `verify` needs): no git, version or org required."""
    return PublishOptions(
        client=env.oci_client,
        oras_bin=env.oras_bin,
        plain_http=env.oci_plain_http,
        oras_experimental=env.oras_experimental,
        timeout=env.oci_timeout,
        oci_username=env.oci_username,
        oci_password=env.oci_password,
        github_actor=env.github_actor,
        github_token=env.github_token,
        plain_http_credentials=env.oci_plain_http_credentials,
        docker_config=Path(env.docker_config or Path.home() / ".docker") / "config.json",
        ca_bundle=env.requests_ca_bundle or env.curl_ca_bundle,
        proxy_env={k: v for k, v in os.environ.items() if k.lower() in PROXY_ENV_NAMES and v},
        child_env=child_environment(),
    )


def child_environment() -> dict[str, str]:
    """The environment for child processes (builder, oras, credential helpers): the parent's without secrets.

    Names compare case-insensitively: the settings read `oci_password` as OCI_PASSWORD, so it is one too.
    """
    return {k: v for k, v in os.environ.items() if not withheld_from_children(k)}


def in_ci(env: EnvSettings) -> bool:
    """CI or GITHUB_ACTIONS set (to anything but 0/false/no): every external command is shown."""
    return any(v and v.strip().lower() not in {"0", "false", "no"} for v in (env.ci, env.github_actions))


MAX_KEY_FILE_BYTES = 64 * 1024


def signing_key_of(env: EnvSettings) -> SecretStr | None:
    """PACK_SIGNING_KEY, or what PACK_SIGNING_KEY_FILE holds: PEM text, a secret either way."""
    if env.pack_signing_key is not None and env.pack_signing_key_file:
        raise ConfigError("PACK_SIGNING_KEY and PACK_SIGNING_KEY_FILE are both set; set one of them")
    if not env.pack_signing_key_file:
        return env.pack_signing_key
    try:
        with open(env.pack_signing_key_file, "rb") as fh:
            data = fh.read(MAX_KEY_FILE_BYTES + 1)
        if len(data) > MAX_KEY_FILE_BYTES:
            raise ConfigError(f"PACK_SIGNING_KEY_FILE: {env.pack_signing_key_file} is too big to be a PEM key")
        return SecretStr(data.decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"PACK_SIGNING_KEY_FILE: cannot read {env.pack_signing_key_file} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"PACK_SIGNING_KEY_FILE: {env.pack_signing_key_file} is not PEM text") from None
