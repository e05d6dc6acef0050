"""The tasks of a release spread over runners: `invoke matrix` (the shards) and `invoke lock --merge`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pack_publisher.commands import pipeline, shards
from pack_publisher.config.run import Printer, Run
from pack_publisher.runtime.errors import ConfigError
from pack_publisher.sources import packs
from pack_publisher.sources.git import Git
from pack_publisher.state import lockfile


def print_matrix(run: Run, names: list[str] | None, changed_since: str, max_jobs: int) -> None:
    """The shards as `strategy.matrix` JSON, alone on stdout (warnings and echoed commands go to stderr)."""
    selected = pipeline.select_packs(run, names, changed_since or None)
    files = Git(run.commands, run.settings.root).files(run.settings.packs_dir) if run.settings.in_git else None
    costs = {pack.name: shards.folder_cost(pack.path, files) for pack in selected}
    planned = shards.split(costs, shards.shard_count(len(costs), max_jobs))
    sys.stdout.write(json.dumps(shards.matrix(planned)) + "\n")
    sys.stdout.flush()


def merge_fragments(root: Path, folder: Path, names: list[str] | None) -> None:
    """`invoke lock --merge DIR`: every fragment in DIR into LOCK_FILE; needs no git, version or org."""
    from pack_publisher.config.settings import read_environment

    env = read_environment()
    printer = Printer([])
    packs_dir = (root / env.packs_dir).resolve()
    lock_file = (root / env.lock_file).resolve()
    known = packs.discover(packs_dir)
    expected = sorted({packs.wanted_name(packs_dir, n) for n in names}) if names else known
    unknown = [n for n in expected if n not in known]
    if unknown:
        raise ConfigError(f"--pack: unknown pack {', '.join(map(repr, unknown))}; known packs: {', '.join(known)}")
    merged = lockfile.merge((root / folder).resolve(), expected, lock_file, packs_dir)
    shown = lock_file.relative_to(root) if lock_file.is_relative_to(root) else lock_file
    printer.say(f"wrote {shown} ({len(merged['packs'])} pack(s) from {folder})")
