"""Invoke tasks: build Greentic packs and publish them to an OCI registry (see README.md)."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from pack_publisher import pipeline
from pack_publisher.cli import clean_exit, session

ROOT = Path(__file__).resolve().parent
PACK_HELP = "Pack folder name under PACKS_DIR; repeat to select several (default: every pack)."


@task(iterable=["pack"], help={"pack": PACK_HELP})
@clean_exit
def build(c: Context, pack: list[str] | None = None) -> None:
    """Build each pack into OUT_DIR/<pack>.gtpack with the Greentic builder, validate it, compose its manifest."""
    s = session(c, ROOT)
    pipeline.build(s.settings, pack, s.redact, s.say)


@task(iterable=["pack"], help={"pack": PACK_HELP})
@clean_exit
def lock(c: Context, pack: list[str] | None = None) -> None:
    """Write packs.lock.json (LOCK_FILE) from the last push, or dry run, of the selected packs."""
    s = session(c, ROOT)
    pipeline.lock(s.settings, pack, s.say)


@task(
    iterable=["pack"],
    help={
        "pack": PACK_HELP,
        "dry-run": "Build and describe what would be pushed, write the lockfile with digest DRY_RUN; no registry.",
    },
)
@clean_exit
def release(c: Context, pack: list[str] | None = None, dry_run: bool = False) -> None:
    """Build, push, verify and lock every selected pack (or only describe it with --dry-run / DRY_RUN=1)."""
    s = session(c, ROOT, dry_run=dry_run or None)
    built = pipeline.build(s.settings, pack, s.redact, s.say)
    if not s.settings.dry_run:
        raise NotImplementedError("publishing lands with the publish issue")
    pipeline.dry_run(s.settings, built, s.say)
    pipeline.lock(s.settings, pack, s.say)


@task(help={"pytest-args": "Extra arguments for pytest, e.g. '-k registry -x'."})
def test(c: Context, pytest_args: str = "") -> None:
    """Run the whole test command: ruff (lint and format), mypy, then pytest."""
    c.run("ruff check .", echo=True, pty=False)
    c.run("ruff format --check .", echo=True, pty=False)
    c.run("mypy", echo=True, pty=False)
    c.run(f"python -m pytest {pytest_args}".strip(), echo=True, pty=False)
