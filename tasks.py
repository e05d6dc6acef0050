"""Invoke tasks: build Greentic packs and publish them to an OCI registry (see README.md)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from invoke.context import Context
from invoke.tasks import task

# Invoke switches bytecode writing off before it loads this file (so no tasks.pyc is left beside it), and
# pack_publisher would then be compiled again on every run (~40 ms, docs/benchmarks.md): give the
# interpreter back its own setting (PYTHONDONTWRITEBYTECODE, -B) for the modules imported from here on.
sys.dont_write_bytecode = bool(sys.flags.dont_write_bytecode)

# Only the light glue is imported here; the pipeline is imported inside the tasks that use it, so
# `invoke --list` and `--help` stay fast (see docs/benchmarks.md, start-up).
from pack_publisher.cli.context import WholeNumber, clean_exit, open_run  # noqa: E402

ROOT = Path(__file__).resolve().parent
P = ParamSpec("P")
R = TypeVar("R")
PACK_HELP = "Pack folder name under PACKS_DIR; repeat to select several (default: every pack)."
DIRTY_HELP = "Publish even with uncommitted changes under PACKS_DIR, marked as <sha>-dirty (or ALLOW_DIRTY=1)."
DRY_RUN_HELP = "Plan only: show what would be pushed (consulting the registry if it answers), write nothing to it."
CHANGED_HELP = (
    "Only packs whose folder changed between this git ref and the working tree (every pack when a shared "
    "input such as tasks.py or pyproject.toml changed)."
)
# Shown under each task's docstring in `--help`: what picks the packs, the target and the transport.
TARGET_DOC = """

    Select packs with --pack NAME (repeat it for several; leave it out for every pack).
    The target is OCI_REGISTRY/OCI_ORG/OCI_REPO/<pack>:PACK_VERSION, set in the environment
    (defaults: ghcr.io, GITHUB_REPOSITORY_OWNER or the owner of the origin remote, greentic-packs,
    the vX.Y.Z tag on HEAD); OCI_CLIENT picks the transport (auto, oras or python). See README, Settings.
    """
VERIFY_DOC = """

    Select packs of the lockfile with --pack NAME (repeat it for several; leave it out for every pack).
    The lockfile names the target: the OCI_REGISTRY/OCI_ORG/OCI_REPO and PACK_VERSION its release was
    made for (LOCK_FILE, or --lock). Credentials are sent only when its registry is the configured
    OCI_REGISTRY; OCI_CLIENT picks the transport (auto, oras or python). See README, Settings.
    """


def _target_doc(doc: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Add the paragraph naming the selection and target settings to a task's docstring (its --help)."""

    def add(func: Callable[P, R]) -> Callable[P, R]:
        func.__doc__ = (func.__doc__ or "").rstrip() + doc
        return func

    return add


PUSH_HELP = {
    "pack": PACK_HELP,
    "latest": "Also point 'latest' at this build (or PUBLISH_LATEST=1); only forward in semver, never a pre-release.",
    "force": "Overwrite a version tag holding another digest, or move 'latest' backwards; both digests are shown.",
    "jobs": "How many packs to build and push at once (or PUBLISH_JOBS; 0 means that, else 4).",
    "dry-run": DRY_RUN_HELP + " Same as DRY_RUN=1.",
    "allow-dirty": DIRTY_HELP,
    "require-public": (
        "Fail (after publishing) when a pack cannot be pulled anonymously, as Greentic's tools pull "
        "(or REQUIRE_PUBLIC=1); without it such packs are named in warnings."
    ),
}


@task(
    iterable=["pack"],
    help={
        "pack": PACK_HELP,
        "changed-since": CHANGED_HELP,
        "jobs": "How many builders to run at once (or PUBLISH_JOBS; 0 means that, else 4).",
    },
)
@clean_exit
@_target_doc(TARGET_DOC)
def build(c: Context, pack: list[str] | None = None, changed_since: str = "", jobs: int = WholeNumber(0)) -> None:
    """Build each pack into OUT_DIR/<pack>.gtpack with the Greentic builder, validate it, compose its manifest."""
    from pack_publisher.commands.build import build_packs

    # a build writes no registry: without a tag or PACK_VERSION it takes the dry run's version and org
    build_packs(open_run(c, ROOT, dev_version=True, publish_jobs=jobs or None), pack, changed_since)


@task(iterable=["pack"], help=PUSH_HELP)
@clean_exit
@_target_doc(TARGET_DOC)
def push(
    c: Context,
    pack: list[str] | None = None,
    latest: bool = False,
    force: bool = False,
    jobs: int = WholeNumber(0),
    dry_run: bool = False,
    allow_dirty: bool = False,
    require_public: bool = False,
) -> None:
    """Plan, then publish the built packs to <registry>/<org>/<repo>/<pack>:<version> and verify what landed."""
    from pack_publisher.commands.push import push_packs

    push_packs(open_run(c, ROOT, **_flags(dry_run, latest, jobs, allow_dirty, require_public)), pack, force=force)


@task(
    iterable=["pack"],
    help={
        "pack": PACK_HELP + " With --merge: the packs the fragments must hold (default: every pack).",
        "merge": "Join every *.json lock fragment in this folder (one per shard) into LOCK_FILE instead.",
    },
)
@clean_exit
def lock(c: Context, pack: list[str] | None = None, merge: str = "") -> None:
    """Write packs.lock.json (LOCK_FILE) from the last push or dry run, or --merge the fragments of shards."""
    from pack_publisher.commands.lock import lock_packs, merge_fragments

    if merge:
        merge_fragments(open_run(c, ROOT, settings=False), Path(merge), pack)
        return
    lock_packs(open_run(c, ROOT, dev_version=True), pack)  # writes no registry: a dry run's version and org do


@task(iterable=["pack"], help={**PUSH_HELP, "changed-since": CHANGED_HELP})
@clean_exit
@_target_doc(TARGET_DOC)
def release(
    c: Context,
    pack: list[str] | None = None,
    dry_run: bool = False,
    latest: bool = False,
    force: bool = False,
    jobs: int = WholeNumber(0),
    allow_dirty: bool = False,
    changed_since: str = "",
    require_public: bool = False,
) -> None:
    """Check everything, then build, plan, push, verify and lock every selected pack (--dry-run: plan only)."""
    from pack_publisher.commands.release import release as release_packs

    run = open_run(c, ROOT, **_flags(dry_run, latest, jobs, allow_dirty, require_public))
    release_packs(run, pack, changed_since, force=force)


@task(
    iterable=["pack"],
    help={
        "pack": PACK_HELP,
        "changed-since": CHANGED_HELP,
        "max-jobs": "At most this many shards (default 4); one shard per 3 packs, so 3 packs or fewer are one job.",
    },
)
@clean_exit
def matrix(c: Context, pack: list[str] | None = None, changed_since: str = "", max_jobs: int = WholeNumber(4)) -> None:
    """Print the GitHub Actions matrix of release shards as JSON on stdout: {"include": [{name, packs}]}."""
    from pack_publisher.commands.matrix import print_matrix
    from pack_publisher.runtime.errors import ConfigError

    if max_jobs < 1:
        raise ConfigError(f"--max-jobs: {max_jobs} must be at least 1")
    # builds nothing, writes no registry; stdout is the matrix alone
    print_matrix(open_run(c, ROOT, dev_version=True, stdout_is_data=True), pack, changed_since, max_jobs)


def _flags(dry_run: bool, latest: bool, jobs: int, allow_dirty: bool, require_public: bool = False) -> dict[str, Any]:
    """Task flags as settings overrides; an unset flag (None) leaves the environment's value."""
    return {
        "dry_run": dry_run or None,
        "publish_latest": latest or None,
        "publish_jobs": jobs or None,
        "allow_dirty": allow_dirty or None,
        "require_public": require_public or None,
    }


@task(
    iterable=["trusted_key", "pack"],
    help={
        "lock": "The lockfile to check (default: LOCK_FILE, packs.lock.json).",
        "pack": "Pack name in the lockfile; repeat to select several (default: every pack it lists).",
        "trusted-key": "An Ed25519 public key (SPKI PEM file) trusted to sign entries; repeat for several. "
        "Every signature is then checked as greentic-dist checks it.",
        "require-signature": "Fail every entry without a signature (needs --trusted-key).",
    },
)
@clean_exit
@_target_doc(VERIFY_DOC)
def verify(
    c: Context,
    lock: str | None = None,
    trusted_key: list[str] | None = None,
    require_signature: bool = False,
    pack: list[str] | None = None,
) -> None:
    """Check every pack of a lockfile against the registry: tag, pinned digest, manifest, layer, archive, signature."""
    from pack_publisher.commands.verify import verify as verify_lockfile

    run = open_run(c, ROOT, settings=False)  # no git, version or org: a lockfile can be checked anywhere
    lock_file = run.path(lock or run.env.lock_file)
    trust = None
    if trusted_key or require_signature:
        from pack_publisher.state.lock_signatures import Trust

        trust = Trust.load([(ROOT / k).resolve() for k in trusted_key or []], require_signature)
    verify_lockfile(
        lock_file, run.options, run.env.oci_registry, run.redact, run.say, run.commands, trust, pack or None
    )


@task(
    help={
        "private-key": "Where to write the private key (PKCS#8 PEM, mode 0600); keep it out of the repository.",
        "public-key": "Where to write the public key (SPKI PEM) (default: the private key's path + .pub).",
    }
)
@clean_exit
def keygen(c: Context, private_key: str, public_key: str = "") -> None:
    """Make an Ed25519 key pair for signing lock entries, and say how to store it as a repository secret."""
    from pack_publisher.state.lock_signatures import keygen as make_key_pair

    private = (ROOT / Path(private_key).expanduser()).resolve()
    public = (
        (ROOT / Path(public_key).expanduser()).resolve() if public_key else private.with_name(private.name + ".pub")
    )
    make_key_pair(private, public, ROOT, print)


@task(
    help={
        "runs": "Runs per figure; each figure is their median, with min and max (default 5).",
        "quick": "Only the smallest cases, one run each: checks the benchmark works, measures little.",
        "output": "Where to write the report (default docs/benchmarks.md).",
        "startup": "Only the start-up: `invoke push` of one small pack beside `invoke --list`, printed, not written.",
    }
)
def bench(
    c: Context,
    runs: int = WholeNumber(5),
    quick: bool = False,
    output: str = "docs/benchmarks.md",
    startup: bool = False,
) -> None:
    """Measure publish speed and memory, release scale, re-release, dry run and start-up on a local registry."""
    if startup:
        from benchmarks.startup import run as run_startup

        print(run_startup(runs))
        return
    from benchmarks.bench import run

    written = run(ROOT / output, 1 if quick else runs, quick)
    print(f"wrote {written}")


@task(
    iterable=["tool"],
    help={
        "tool": "oras or greentic-pack; repeat to select several (default: every pinned tool).",
        "bin-dir": "Where to install (default: the folder of this Python, the virtual environment's bin/).",
        "cache-dir": "Where verified downloads are kept and reused (default: <venv>/cache/pinned-tools).",
        "base-url": "Download from this mirror instead, as <base-url>/<file name>; the sha256 is checked all the same.",
    },
)
@clean_exit
def tools(
    c: Context,
    tool: list[str] | None = None,
    bin_dir: str | None = None,
    cache_dir: str | None = None,
    base_url: str | None = None,
) -> None:
    """Install the pinned oras and Greentic builder (pack_publisher/commands/tools.py) into the virtual environment."""
    from pack_publisher.commands import tools as pinned

    run = open_run(c, ROOT, settings=False)
    pinned.install(
        pinned.select(tool),
        Path(bin_dir).resolve() if bin_dir else pinned.default_bin_dir(),
        Path(cache_dir).resolve() if cache_dir else pinned.default_cache_dir(),
        print,
        base_url,
        show=run.echo_argv if run.echo else None,
    )


# What `invoke test` checks before any test runs, in order; each must pass (add a step here).
CHECKS = ("ruff check .", "ruff format --check .", "mypy", "lint-imports")  # lint-imports: the layer rule
# The fast tier: no registry process, no `python -m invoke` child, no real waits (markers: tests/conftest.py).
FAST_TIER = "not registry and not subprocess and not slow"


@task(
    help={
        "all": "Every test, as CI runs them (.ci/run): registries, real oras, child processes; all cores, no skip.",
        "pytest-args": "Extra arguments for pytest, e.g. '-k registry -x' or 'tests/test_plan.py'.",
    }
)
def test(c: Context, all: bool = False, pytest_args: str = "") -> None:
    """Lint, format, types, the import contract, then the fast tests (under a minute); --all: every test, as CI."""
    for check in CHECKS:
        c.run(check, echo=True, pty=False)
    # every core; tests are handed out one at a time, costly ones first (tests/conftest.py), so the few
    # long ones start at once on different workers
    tier = "-n auto --maxschedchunk 1 --fail-on-skip" if all else f'-m "{FAST_TIER}"'
    c.run(f"python -m pytest {tier} {pytest_args}".strip(), echo=True, pty=False)
