"""Invoke tasks: build Greentic packs and publish them to an OCI registry (see README.md)."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

# Only the light glue is imported here; the pipeline is imported inside the tasks that use it, so
# `invoke --list` and `--help` stay fast (see docs/benchmarks.md, start-up).
from pack_publisher.cli import clean_exit, session, verify_inputs

ROOT = Path(__file__).resolve().parent
PACK_HELP = "Pack folder name under PACKS_DIR; repeat to select several (default: every pack)."
PUSH_HELP = {
    "pack": PACK_HELP,
    "latest": "Also point the 'latest' tag at the same manifest (or PUBLISH_LATEST=1). Off by default.",
    "force": "Overwrite a version tag that holds a different digest (release tags are immutable otherwise).",
    "jobs": "How many packs to push at once (or PUBLISH_JOBS; default 4).",
}


@task(iterable=["pack"], help={"pack": PACK_HELP})
@clean_exit
def build(c: Context, pack: list[str] | None = None) -> None:
    """Build each pack into OUT_DIR/<pack>.gtpack with the Greentic builder, validate it, compose its manifest."""
    from pack_publisher import pipeline

    s = session(c, ROOT)
    pipeline.build(s.settings, pack, s.redact, s.say)


@task(iterable=["pack"], help=PUSH_HELP)
@clean_exit
def push(
    c: Context, pack: list[str] | None = None, latest: bool = False, force: bool = False, jobs: int | None = None
) -> None:
    """Publish the built packs to <registry>/<org>/<repo>/<pack>:<version> and verify what landed."""
    from pack_publisher import pipeline

    s = session(c, ROOT, publish_latest=latest or None, publish_jobs=jobs)
    built = pipeline.load_built(s.settings, pack)
    pipeline.push(s.settings, built, s.redact, s.say, force)


@task(iterable=["pack"], help={"pack": PACK_HELP})
@clean_exit
def lock(c: Context, pack: list[str] | None = None) -> None:
    """Write packs.lock.json (LOCK_FILE) from the last push, or dry run, of the selected packs."""
    from pack_publisher import pipeline

    s = session(c, ROOT)
    pipeline.lock(s.settings, pack, s.say)


@task(
    iterable=["pack"],
    help={
        **PUSH_HELP,
        "dry-run": "Build and describe what would be pushed, write the lockfile with digest DRY_RUN; no registry.",
    },
)
@clean_exit
def release(
    c: Context,
    pack: list[str] | None = None,
    dry_run: bool = False,
    latest: bool = False,
    force: bool = False,
    jobs: int | None = None,
) -> None:
    """Build, push, verify and lock every selected pack (or only describe it with --dry-run / DRY_RUN=1)."""
    from pack_publisher import pipeline

    s = session(c, ROOT, dry_run=dry_run or None, publish_latest=latest or None, publish_jobs=jobs)
    built = pipeline.build(s.settings, pack, s.redact, s.say)
    if s.settings.dry_run:
        pipeline.dry_run(s.settings, built, s.say)
    else:
        pipeline.push(s.settings, built, s.redact, s.say, force)
    pipeline.lock(s.settings, pack, s.say)


@task(help={"lock": "The lockfile to check (default: LOCK_FILE, packs.lock.json)."})
@clean_exit
def verify(c: Context, lock: str | None = None) -> None:
    """Check every pack of a lockfile against the registry: tag, pinned digest, manifest, layer, archive."""
    from pack_publisher.verify import verify as verify_lockfile

    options, registry, lock_file, printer = verify_inputs(c, ROOT, lock)
    verify_lockfile(lock_file, options, registry, printer.redact, printer.say)


@task(
    help={
        "runs": "Runs per figure; each figure is their median, with min and max (default 5).",
        "quick": "Only the smallest cases, one run each: checks the benchmark works, measures little.",
        "output": "Where to write the report (default docs/benchmarks.md).",
    }
)
def bench(c: Context, runs: int = 5, quick: bool = False, output: str = "docs/benchmarks.md") -> None:
    """Measure publish speed and memory, release scale, re-release, dry run and start-up on a local registry."""
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
    """Install the pinned oras and Greentic builder (pack_publisher/tools.py) into the virtual environment."""
    from pack_publisher import tools as pinned

    pinned.install(
        pinned.select(tool),
        Path(bin_dir).resolve() if bin_dir else pinned.default_bin_dir(),
        Path(cache_dir).resolve() if cache_dir else pinned.default_cache_dir(),
        print,
        base_url,
    )


@task(help={"pytest-args": "Extra arguments for pytest, e.g. '-k registry -x'."})
def test(c: Context, pytest_args: str = "") -> None:
    """Run the whole test command: ruff (lint and format), mypy, then pytest."""
    c.run("ruff check .", echo=True, pty=False)
    c.run("ruff format --check .", echo=True, pty=False)
    c.run("mypy", echo=True, pty=False)
    c.run(f"python -m pytest {pytest_args}".strip(), echo=True, pty=False)
