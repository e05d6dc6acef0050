"""Spread packs over runners: the GitHub Actions `strategy.matrix` that `invoke matrix` prints.

Each shard is one release job building and pushing its packs, writing one lock fragment; `invoke
lock --merge` joins the fragments. Every pack is one builder run (a Rust/WASM build), so shards first
get the same number of packs (they differ by one at most); within that, the size of a pack's files in
bytes (those git tracks or would track: no `target/` or other ignored output) stands for its build
time: shards are filled largest pack first, each into the lightest shard that is not full (ties to the
lower shard number). The same packs and files always give the same shards.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from pack_publisher.commands.select import select_packs
from pack_publisher.config.run import Run
from pack_publisher.sources.git import Git

MIN_PACKS_PER_SHARD = 3  # below this a runner's set-up (checkout, Python, Rust, builder) outweighs the split


def folder_cost(folder: Path, files: list[Path] | None = None) -> int:
    """Bytes of a pack's files (`files`, as git lists them; else every regular file below); at least 1."""
    if files is None:
        files = [Path(here, name) for here, _dirs, names in os.walk(folder) for name in names]
    total = 0
    for path in files:
        if path.is_relative_to(folder):
            try:
                total += os.lstat(path).st_size
            except OSError:
                continue
    return max(1, total)


def shard_count(packs: int, max_jobs: int, min_packs: int = MIN_PACKS_PER_SHARD) -> int:
    """How many shards: one per `min_packs` packs, at most `max_jobs`, at least one when there are packs."""
    if packs == 0:
        return 0
    return max(1, min(max_jobs, math.ceil(packs / max(1, min_packs))))


def split(costs: dict[str, int], count: int) -> list[list[str]]:
    """`count` shards of pack names, as even in number as can be, then balanced by cost; names sorted."""
    if count <= 0:
        return []
    capacity = math.ceil(len(costs) / count)  # shards differ by one pack at most
    loads = [0] * count
    shards: list[list[str]] = [[] for _ in range(count)]
    for name in sorted(costs, key=lambda n: (-costs[n], n)):
        open_shards = [i for i in range(count) if len(shards[i]) < capacity]
        lightest = min(open_shards, key=lambda i: (loads[i], len(shards[i]), i))
        shards[lightest].append(name)
        loads[lightest] += costs[name]
    return [sorted(s) for s in shards if s]


def matrix(shards: list[list[str]]) -> dict[str, Any]:
    """`{"include": [{"name": "shard-1", "packs": [...]}, ...]}` for `strategy.matrix: ${{ fromJSON(...) }}`."""
    return {"include": [{"name": f"shard-{i}", "packs": packs} for i, packs in enumerate(shards, start=1)]}


def print_matrix(run: Run, names: list[str] | None, changed_since: str, max_jobs: int) -> None:
    """The shards as `strategy.matrix` JSON, alone on stdout (warnings and echoed commands go to stderr)."""
    selected = select_packs(run, names, changed_since or None)
    files = Git(run.commands, run.settings.root).files(run.settings.packs_dir) if run.settings.in_git else None
    costs = {pack.name: folder_cost(pack.path, files) for pack in selected}
    planned = split(costs, shard_count(len(costs), max_jobs))
    sys.stdout.write(json.dumps(matrix(planned)) + "\n")
    sys.stdout.flush()
