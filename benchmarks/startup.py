"""`invoke bench --startup`: the start-up of `invoke push` of one small pack against `invoke --list`.

The ratio is what issue 24 asks for (at most 1.6x): both commands are whole processes, measured side
by side in alternating order, and each round's ratio is taken against the `invoke --list` run beside it,
so a machine busy with other work slows both alike. Then one `-X importtime` run per transport shows
where the time goes, package by package. Prints a Markdown table; docs/benchmarks.md quotes it.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.harness import FreshRegistry, Sample, base_env, build, invoke_push, make_project, measure

TARGET = 1.6
LABELS = {"built-in": "python", "oras": "oras"}


def measure_startup(work: Path, runs: int, oras: str | None) -> dict[str, Any]:
    """Walls of `invoke --list` and of each transport's push, per round, and one import profile each."""
    from testsupport.standins import STANDINS, make_executable

    builder_dir = work / "builder"
    builder_dir.mkdir()
    make_executable(builder_dir / "greentic-pack", STANDINS / "greentic_pack.py")
    env = base_env(work, builder_dir)
    if oras:
        env["ORAS_BIN"] = oras
    registry = FreshRegistry(work / "registry")
    registry.restart()
    labels = [label for label in LABELS if label == "built-in" or oras]
    rounds: list[dict[str, Sample]] = []
    imports: dict[str, dict[str, float]] = {}
    try:
        project = make_project(work / "small", 1, 1, builder_dir)
        build(project, env, registry.host, "dist/loop")
        listing = [sys.executable, "-m", "invoke", "--list"]
        measure(listing, env, project)  # a first run of each fills the bytecode caches
        invoke_push(project, env, registry.host, "dist/loop", "python", 1)
        for run in range(runs):
            found: dict[str, Sample] = {}
            order = ["list", *labels] if run % 2 == 0 else [*reversed(labels), "list"]
            for label in order:
                if label == "list":
                    found[label] = measure(listing, env, project)
                    continue
                registry.restart()  # a fresh push every time: one pack, an empty registry
                found[label] = invoke_push(project, env, registry.host, "dist/loop", LABELS[label], 1)
            rounds.append(found)
        for label in labels:
            registry.restart()
            profiled = {**env, "PYTHONPROFILEIMPORTTIME": "1"}
            sample = invoke_push(project, profiled, registry.host, "dist/loop", LABELS[label], 1)
            imports[label] = report.import_groups(sample.stderr)
        listed = measure(listing, {**env, "PYTHONPROFILEIMPORTTIME": "1"}, project)
        imports["invoke --list"] = report.import_groups(listed.stderr)
    finally:
        registry.stop()
    return {"rounds": rounds, "imports": imports, "labels": labels}


def table(results: dict[str, Any]) -> str:
    rounds: list[dict[str, Sample]] = results["rounds"]
    lines = [
        "| command | wall, median (min..max) | ratio to `invoke --list` beside it, median (min..max) |",
        "|---|---|---|",
    ]
    for label in ["list", *results["labels"]]:
        walls = [r[label].wall for r in rounds]
        ratios = [r[label].wall / r["list"].wall for r in rounds]
        name = "`invoke --list`" if label == "list" else f"`invoke push` ({label}), one small pack"
        ratio = "-" if label == "list" else _spread(ratios, "x")
        lines.append(f"| {name} | {_spread(walls, ' s')} | {ratio} |")
    groups = sorted({g for found in results["imports"].values() for g in found})
    columns = list(results["imports"])
    lines += ["", "| import time by package (`-X importtime`, one run) | " + " | ".join(columns) + " |"]
    lines.append("|---|" + "---|" * len(columns))
    for group in groups:
        cells = [f"{results['imports'][c].get(group, 0.0):.0f} ms" for c in columns]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _spread(values: list[float], unit: str) -> str:
    return f"{statistics.median(values):.2f}{unit} ({min(values):.2f}..{max(values):.2f})"


def verdict(results: dict[str, Any]) -> str:
    rounds: list[dict[str, Sample]] = results["rounds"]
    parts = []
    for label in results["labels"]:
        ratio = statistics.median(r[label].wall / r["list"].wall for r in rounds)
        parts.append(f"{label} {ratio:.2f}x ({'met' if ratio <= TARGET else 'missed'})")
    return f"start-up target <= {TARGET}x `invoke --list`: " + ", ".join(parts)


def run(runs: int) -> str:
    from testsupport.oras import real_oras

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        results = measure_startup(Path(tmp), runs, real_oras())
    return table(results) + "\n\n" + verdict(results)
