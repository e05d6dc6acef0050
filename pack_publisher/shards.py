"""Spread packs over runners: the GitHub Actions `strategy.matrix` that `invoke matrix` prints.

Each shard is one release job building and pushing its packs, writing one lock fragment; `invoke
lock --merge` joins the fragments. The cost of a pack is the size of its folder in bytes, a proxy for
its build time that needs no history; shards are filled largest pack first, each into the shard with
the least cost so far (ties to the lower shard number), so the same packs always give the same shards.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

MIN_PACKS_PER_SHARD = 3  # below this a runner's set-up (checkout, Python, Rust, builder) outweighs the split


def folder_cost(folder: Path) -> int:
    """Bytes of the regular files in a pack folder (symlinks not followed); at least 1."""
    total = 0
    for here, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(here, name)).st_size
            except OSError:
                continue
    return max(1, total)


def shard_count(packs: int, max_jobs: int, min_packs: int = MIN_PACKS_PER_SHARD) -> int:
    """How many shards: one per `min_packs` packs, at most `max_jobs`, at least one when there are packs."""
    if packs == 0:
        return 0
    return max(1, min(max_jobs, math.ceil(packs / max(1, min_packs))))


def split(costs: dict[str, int], count: int) -> list[list[str]]:
    """`count` shards of pack names balanced by cost (largest first into the lightest shard), names sorted."""
    if count <= 0:
        return []
    loads = [0] * count
    shards: list[list[str]] = [[] for _ in range(count)]
    for name in sorted(costs, key=lambda n: (-costs[n], n)):
        lightest = min(range(count), key=lambda i: (loads[i], len(shards[i]), i))
        shards[lightest].append(name)
        loads[lightest] += costs[name]
    return [sorted(s) for s in shards if s]


def matrix(shards: list[list[str]]) -> dict[str, Any]:
    """`{"include": [{"name": "shard-1", "packs": [...]}, ...]}` for `strategy.matrix: ${{ fromJSON(...) }}`."""
    return {"include": [{"name": f"shard-{i}", "packs": packs} for i, packs in enumerate(shards, start=1)]}
