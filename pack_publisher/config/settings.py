"""Settings resolved once per run from the environment (and task flags) into one validated, frozen model:
the target (registry, org, repo), the version and commit, the paths, and how to reach the registry.

Git answers what the environment does not (version tag, commit, origin owner, commit time).
"""

from __future__ import annotations

from dataclasses import field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pack_publisher.config.environment import (
    MAX_EPOCH,
    EnvSettings,
    child_environment,
    options_of,
    read_environment,
    signing_key_of,
)
from pack_publisher.oci.names import (
    PATH_COMPONENT_RE,
    Reference,
    semver_problem,
)
from pack_publisher.registry.connect import PublishOptions, secret_values
from pack_publisher.runtime.errors import ConfigError
from pack_publisher.runtime.frozen import frozen
from pack_publisher.runtime.processes import Commands
from pack_publisher.runtime.redact import SecretStr
from pack_publisher.runtime.safe_files import lock_file_path
from pack_publisher.sources.git import Git, describe_origin, remote_slug

LOCAL_ORG = "local"  # the placeholder org of a dry run that has none


@frozen(kw_only=True)
class Settings:
    """Everything a task needs, resolved and checked once; shared by every task of one invocation.

    A plain dataclass: built here from checked values only (see `resolve_settings`), it needs no
    validation of its own, and pydantic's import cost ~60 ms of a ~0.3 s command (issue 24).
    """

    root: Path
    registry: str
    org: str
    org_is_placeholder: bool = False  # the dry run's stand-in org: no registry is asked about it
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
    latest: bool  # also point `latest` at this build (a per-run flag, not a way to reach the registry)
    jobs: int  # packs built and pushed at once
    git_sha: str
    in_git: bool  # False when GIT_SHA / GITHUB_SHA stand in for a checkout
    created: str
    source_url: str | None
    allow_dirty: bool = False
    step_summary: Path | None = None  # GITHUB_STEP_SUMMARY
    notices: tuple[str, ...] = ()
    signing_key: SecretStr | None = field(default=None, repr=False)  # PKCS#8 PEM text, never written
    require_signature: bool = False
    require_public: bool = False

    @property
    def secrets(self) -> list[str]:
        """Every secret value the settings know, for redaction."""
        return self.publish.secrets + secret_values(self.signing_key)

    def repository(self, pack_name: str) -> str:
        """The repository path of a pack inside the registry: `<org>/<repo>/<pack>`."""
        return f"{self.org}/{self.repo}/{pack_name}"

    def reference(self, pack_name: str, tag: str | None = None) -> str:
        return str(self.target(pack_name, tag))

    def target(self, pack_name: str, tag: str | None = None) -> Reference:
        """Where a pack is published: `<registry>/<org>/<repo>/<pack>:<tag, by default the version>`."""
        return Reference(self.registry, self.repository(pack_name), tag or self.version)

    def relative(self, path: Path) -> str:
        """A path as shown to users and written to the lockfile: relative to the repository if inside."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()


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


def _org(
    env: EnvSettings, slug: tuple[str, str, str] | None, origin: str | None, notices: list[str], placeholder: bool
) -> str:
    if env.oci_org:
        return env.oci_org
    candidates = [
        ("GITHUB_REPOSITORY_OWNER", env.github_repository_owner),
        (f"the owner of the origin remote on {slug[0]}" if slug else "", slug[1] if slug else None),
    ]
    for given_by, value in candidates:
        if value:
            lowered = value.lower()
            if not PATH_COMPONENT_RE.match(lowered):
                raise ConfigError(f"OCI_ORG: {value!r} (from {given_by}) is not a valid OCI repository path component")
            return lowered
    # an origin that names no owner (a clone of a local clone: a path) is named as such, not taken as none
    missing = f"no OCI_ORG or GITHUB_REPOSITORY_OWNER, and {describe_origin(origin)}" if origin else ""
    if placeholder:
        who = "the dry run uses" if env.dry_run else "no registry is written: this task uses"
        missing = missing or "no OCI_ORG, GITHUB_REPOSITORY_OWNER or origin remote"
        notices.append(f"{missing}: {who} the org {LOCAL_ORG!r}")
        return LOCAL_ORG
    if missing:
        raise ConfigError(f"OCI_ORG: not set: {missing}; set OCI_ORG (a dry run uses 'local')")
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
    # (host, owner, path) of the origin: read only when no variable gives the source and the org
    needs_origin = in_git and not (env.github_repository and (env.oci_org or env.github_repository_owner))
    origin = git.origin_url() if needs_origin else None
    slug = remote_slug(origin)
    source_url = _source_url(env, slug)
    if source_url is None:
        why = describe_origin(origin) if origin else "no origin remote"
        notices.append(f"no GITHUB_REPOSITORY and {why}: the source annotation is left out")
    org = _org(env, slug, origin, notices, env.dry_run or dev_version)
    if env.source_date_epoch is not None:
        epoch = env.source_date_epoch
    elif in_git:
        epoch = git.head_commit_time()
    else:
        raise ConfigError("SOURCE_DATE_EPOCH: not set; outside a git checkout it gives the build time")
    return Settings(
        root=root,
        registry=env.oci_registry,
        org=org,
        org_is_placeholder=org == LOCAL_ORG and not (env.oci_org or env.github_repository_owner or slug),
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
        latest=env.publish_latest,
        jobs=env.publish_jobs,
        git_sha=sha,
        in_git=in_git,
        created=format_created(epoch),
        source_url=source_url,
        allow_dirty=env.allow_dirty,
        step_summary=Path(env.github_step_summary) if env.github_step_summary else None,
        notices=tuple(notices),
        signing_key=signing_key_of(env),
        require_signature=env.require_signature,
        require_public=env.require_public,
    )
