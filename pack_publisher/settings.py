"""Settings resolved once from the environment (and task flags) into one validated, frozen model."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from .commands import Commands
from .errors import ConfigError
from .gitinfo import Git, remote_slug
from .oci_names import (
    PATH_COMPONENT_RE,
    REGISTRY_RE,
    REPOSITORY_PATH_RE,
    semver_problem,
)
from .redact import is_secret_env_name
from .safe_files import lock_file_path

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
}
# Proxy variables, passed to the built-in client as read here (nothing below reads the environment).
PROXY_ENV_NAMES = frozenset({"https_proxy", "http_proxy", "all_proxy", "no_proxy"})
LOCAL_ORG = "local"  # the placeholder org of a dry run that has none


def secret_values(*secrets: SecretStr | None) -> list[str]:
    """The values of the secrets that are set, for redaction."""
    return [s.get_secret_value() for s in secrets if s is not None]


class EnvSettings(BaseSettings):
    """The raw inputs, one field per environment variable; task flags are passed as init values."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", env_ignore_empty=True, populate_by_name=True
    )

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
    packc: str | None = Field(default=None, validation_alias=AliasChoices("packc", "PACKC", "PACKC_BIN"))
    source_date_epoch: int | None = Field(default=None, ge=0)
    github_repository: str | None = None
    github_repository_owner: str | None = None
    github_server_url: str = "https://github.com"
    # publishing
    oci_client: Literal["auto", "oras", "python"] = "auto"
    oras_bin: str | None = None
    oci_plain_http: bool = False
    publish_latest: bool = False
    publish_jobs: int = Field(default=4, ge=1, le=32)
    oci_timeout: float = Field(default=15.0, gt=0, le=600)
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

    @field_validator("git_sha", "github_sha")
    @classmethod
    def _sha(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", value.strip().lower()):
            raise ValueError(f"{value!r} is not a full git commit id (40 hex digits)")
        return value.strip().lower() if value else None

    @field_validator("oci_registry")
    @classmethod
    def _registry(cls, value: str) -> str:
        value = value.strip()
        if "://" in value:
            raise ValueError(f"{value!r} must be a host[:port] without a scheme (e.g. 'ghcr.io')")
        lowered = value.lower().rstrip("/")
        if not REGISTRY_RE.match(lowered):
            raise ValueError(f"{value!r} is not a registry host[:port]")
        return lowered

    @field_validator("oci_org")
    @classmethod
    def _org(cls, value: str | None) -> str | None:
        if value is None:
            return None
        lowered = value.strip().lower()  # GitHub owners may have capitals; OCI paths may not
        if not PATH_COMPONENT_RE.match(lowered):
            raise ValueError(f"{value!r} is not a valid OCI repository path component")
        return lowered

    @field_validator("oci_repo")
    @classmethod
    def _repo(cls, value: str) -> str:
        if not REPOSITORY_PATH_RE.match(value):
            hint = " (it must be lowercase)" if REPOSITORY_PATH_RE.match(value.lower()) else ""
            raise ValueError(f"{value!r} is not a valid OCI repository path{hint}")
        return value

    @field_validator("pack_version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value != value.strip():  # a tag is taken as written: "1.2.3\n" is not 1.2.3 (README)
            raise ValueError(f"{value!r} has white space around it; set the bare version, e.g. {value.strip()!r}")
        problem = semver_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("source_date_epoch")
    @classmethod
    def _epoch(cls, value: int | None) -> int | None:
        if value is not None and value > MAX_EPOCH:
            raise ValueError(f"{value} is after {MAX_EPOCH} (9999-12-31T23:59:59Z), the last time a date can hold")
        return value


class PublishOptions(BaseModel):
    """How to reach the registry: transport choice, plain HTTP, credentials (secrets), tags, jobs."""

    model_config = ConfigDict(frozen=True)

    client: Literal["auto", "oras", "python"]
    oras_bin: str | None
    plain_http: bool
    oras_experimental: bool
    latest: bool
    jobs: int
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


def options_of(env: EnvSettings) -> PublishOptions:
    """The publishing options alone (what `verify` needs): no git, version or org required."""
    return PublishOptions(
        client=env.oci_client,
        oras_bin=env.oras_bin,
        plain_http=env.oci_plain_http,
        oras_experimental=env.oras_experimental,
        latest=env.publish_latest,
        jobs=env.publish_jobs,
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


def read_environment(overrides: dict[str, Any] | None = None) -> EnvSettings:
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    try:
        return EnvSettings(**given)
    except ValidationError as exc:
        raise _first_error(exc) from None


class Settings(BaseModel):
    """Everything a task needs, resolved and checked once; shared by every task of one invocation."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    root: Path
    registry: str
    org: str
    repo: str
    version: str
    version_source: str
    packs_dir: Path
    out_dir: Path
    stage_dir: Path
    lock_file: Path
    dry_run: bool
    builder_override: str | None
    publish: PublishOptions
    git_sha: str
    in_git: bool  # False when GIT_SHA / GITHUB_SHA stand in for a checkout
    created: str
    source_url: str | None
    allow_dirty: bool = False
    echo_commands: bool = False  # CI / GITHUB_ACTIONS: show every external command
    step_summary: Path | None = None  # GITHUB_STEP_SUMMARY
    notices: tuple[str, ...] = ()

    @property
    def secrets(self) -> list[str]:
        """Every secret value the settings know, for redaction."""
        return self.publish.secrets

    def repository(self, pack_name: str) -> str:
        """The repository path of a pack inside the registry: `<org>/<repo>/<pack>`."""
        return f"{self.org}/{self.repo}/{pack_name}"

    def reference(self, pack_name: str, tag: str | None = None) -> str:
        return f"{self.registry}/{self.repository(pack_name)}:{tag or self.version}"

    def relative(self, path: Path) -> str:
        """A path as shown to users and written to the lockfile: relative to the repository if inside."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()


def _first_error(exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    field = str(err["loc"][0]) if err["loc"] else ""
    name = ENV_NAMES.get(field, field.upper())
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] in {
        "bool_parsing",
        "int_parsing",
        "float_parsing",
        "greater_than",
        "greater_than_equal",
        "less_than_equal",
        "literal_error",
    }:
        message = f"{err['input']!r}: {message.lower()}"
    return ConfigError(f"{name}: {message}")


def _resolve_version(env: EnvSettings, git: Git | None, sha: str, dry_run: bool) -> tuple[str, str, list[str]]:
    if env.pack_version:
        return env.pack_version, "PACK_VERSION", []
    tags = git.head_tags() if git else []
    version_tags = [t for t in tags if t[:1] == "v" and t[1:2].isdigit()]
    for tag in version_tags:
        problem = semver_problem(tag[1:])
        if problem:
            raise ConfigError(f"git tag {tag!r} on HEAD is not a release tag vX.Y.Z: {problem}")
    if len(version_tags) > 1:
        raise ConfigError(f"HEAD carries several release tags ({', '.join(version_tags)}); set PACK_VERSION")
    if version_tags:
        return version_tags[0][1:], f"git tag {version_tags[0]}", []
    if dry_run:
        version = f"0.0.0-dev.{sha[:7]}"
        who = "dry run uses" if env.dry_run else "no registry is written: this task uses"
        return version, "dry-run fallback", [f"no PACK_VERSION and no vX.Y.Z tag on HEAD: {who} {version}"]
    raise ConfigError(
        "PACK_VERSION is not set and HEAD has no vX.Y.Z tag: tag the commit (git tag v1.2.3) or set PACK_VERSION"
    )


def _source_url(env: EnvSettings, slug: tuple[str, str, str] | None) -> str | None:
    if env.github_repository:
        return f"{env.github_server_url.rstrip('/')}/{env.github_repository}"
    return f"https://{slug[0]}/{slug[1]}/{slug[2]}" if slug else None


def _org(env: EnvSettings, slug: tuple[str, str, str] | None, notices: list[str], placeholder: bool) -> str:
    if env.oci_org:
        return env.oci_org
    candidates = [
        ("GITHUB_REPOSITORY_OWNER", env.github_repository_owner),
        (f"the owner of the origin remote on {slug[0]}" if slug else "", slug[1] if slug else None),
    ]
    for origin, value in candidates:
        if value:
            lowered = value.lower()
            if not PATH_COMPONENT_RE.match(lowered):
                raise ConfigError(f"OCI_ORG: {value!r} (from {origin}) is not a valid OCI repository path component")
            return lowered
    if placeholder:
        who = "the dry run uses" if env.dry_run else "no registry is written: this task uses"
        notices.append(f"no OCI_ORG, GITHUB_REPOSITORY_OWNER or origin remote: {who} the org {LOCAL_ORG!r}")
        return LOCAL_ORG
    raise ConfigError(
        "OCI_ORG: not set, and neither GITHUB_REPOSITORY_OWNER nor an origin remote gives one; "
        "set OCI_ORG (a dry run uses 'local')"
    )


def _commit(env: EnvSettings, git: Git | None) -> tuple[str, bool]:
    """The commit being published and whether it comes from a git checkout (else GIT_SHA / GITHUB_SHA)."""
    sha = git.head_sha() if git else None
    if sha:
        return sha, True
    given = env.git_sha or env.github_sha
    if given:
        return given, False
    raise ConfigError(
        "not a git checkout with a commit: the release annotations need the commit; outside git, "
        "set GIT_SHA (or GITHUB_SHA) and SOURCE_DATE_EPOCH"
    )


def in_ci(env: EnvSettings) -> bool:
    """CI or GITHUB_ACTIONS set (to anything but 0/false/no): every external command is shown."""
    return any(v and v.strip().lower() not in {"0", "false", "no"} for v in (env.ci, env.github_actions))


# 9999-12-31T23:59:59Z: the last second a four-digit RFC 3339 year (and Python's datetime) can hold.
MAX_EPOCH = 253402300799


def format_created(epoch: int) -> str:
    """The `created` annotation for `epoch`; an epoch out of range (a bad commit date) is a clear error."""
    if not 0 <= epoch <= MAX_EPOCH:
        raise ConfigError(
            f"SOURCE_DATE_EPOCH / HEAD commit time: {epoch} is outside 0..{MAX_EPOCH} (1970 to the end of 9999)"
        )
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def resolve_settings(
    root: Path,
    overrides: dict[str, Any] | None = None,
    commands: Commands | None = None,
    *,
    dev_version: bool = False,
    env: EnvSettings | None = None,
) -> Settings:
    """Read the environment once, apply task flags (`overrides`, None meaning 'not given'), check all.

    `dev_version` lets a task that never writes to a registry (lock) take the dry run's fallback version;
    `env` is the environment already read with these overrides, if the caller has it.
    """
    env = env or read_environment(overrides)
    root = root.resolve()
    git = Git(commands or Commands(child_environment(), print), root)
    sha, in_git = _commit(env, git)
    version, version_source, notices = _resolve_version(env, git if in_git else None, sha, env.dry_run or dev_version)
    slug = remote_slug(git.origin_url()) if in_git else None  # (host, owner, path) of the origin, read once
    source_url = _source_url(env, slug)
    if source_url is None:
        notices.append("no GITHUB_REPOSITORY and no origin remote: the source annotation is left out")
    if env.source_date_epoch is not None:
        epoch = env.source_date_epoch
    elif in_git:
        epoch = git.head_commit_time()
    else:
        raise ConfigError("SOURCE_DATE_EPOCH: not set; outside a git checkout it gives the build time")
    return Settings(
        root=root,
        registry=env.oci_registry,
        org=_org(env, slug, notices, env.dry_run or dev_version),
        repo=env.oci_repo,
        version=version,
        version_source=version_source,
        packs_dir=(root / env.packs_dir).resolve(),
        out_dir=(root / env.out_dir).resolve(),
        stage_dir=(root / env.stage_dir).resolve(),
        lock_file=lock_file_path(root, env.lock_file),
        dry_run=env.dry_run,
        builder_override=env.packc,
        publish=options_of(env),
        git_sha=sha,
        in_git=in_git,
        created=format_created(epoch),
        source_url=source_url,
        allow_dirty=env.allow_dirty,
        echo_commands=in_ci(env),
        step_summary=Path(env.github_step_summary) if env.github_step_summary else None,
        notices=tuple(notices),
    )


def child_environment() -> dict[str, str]:
    """The environment for child processes (builder, oras, credential helpers): the parent's without secrets.

    Names compare case-insensitively: the settings read `oci_password` as OCI_PASSWORD, so it is one too.
    """
    return {k: v for k, v in os.environ.items() if not is_secret_env_name(k)}
