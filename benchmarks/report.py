"""docs/benchmarks.md from one run of `invoke bench`: the tables, each target with this run's verdict, and
the hand-written analysis (`benchmarks/NOTES.md`)."""

from __future__ import annotations

import os
import statistics
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.harness import ROOT, Sample, Stat

IMPORT_GROUPS = {
    "invoke": "invoke",
    "pydantic": "pydantic (settings, records)",
    "pydantic_core": "pydantic (settings, records)",
    "pydantic_settings": "pydantic (settings, records)",
    "annotated_types": "pydantic (settings, records)",
    "typing_inspection": "pydantic (settings, records)",
    "typing_extensions": "pydantic (settings, records)",
    "requests": "requests, urllib3",
    "urllib3": "requests, urllib3",
    "charset_normalizer": "requests, urllib3",
    "idna": "requests, urllib3",
    "certifi": "requests, urllib3",
    "pack_publisher": "pack_publisher, tasks.py",
    "tasks": "pack_publisher, tasks.py",
    "yaml": "yaml, semver, cbor2, blake3",
    "semver": "yaml, semver, cbor2, blake3",
    "cbor2": "yaml, semver, cbor2, blake3",
    "blake3": "yaml, semver, cbor2, blake3",
}
OTHER = "the rest of the standard library, site"


def import_groups(stderr: str) -> dict[str, float]:
    """Milliseconds of import time by package, from `-X importtime` output.

    Each module's own time counts for the group of its nearest ancestor in the import tree that belongs
    to one (`ssl` imported by urllib3 counts for requests, `asyncio` imported by Invoke for Invoke).
    """
    nodes: list[tuple[int, str, float, list[int]]] = []  # depth, name, own ms, children
    stack: list[int] = []  # nodes whose parent has not been printed yet (children come first)
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, _, rest = line.removeprefix("import time:").split("|", 2)
        depth = (len(rest) - len(rest.lstrip(" "))) // 2
        children = []
        while stack and nodes[stack[-1]][0] > depth:
            children.append(stack.pop())
        nodes.append((depth, rest.strip(), int(own) / 1000, children))
        stack.append(len(nodes) - 1)
    groups: dict[str, float] = defaultdict(float)

    def walk(index: int, inherited: str) -> None:
        _, name, own, children = nodes[index]
        group = IMPORT_GROUPS.get(name.split(".")[0], inherited)
        groups[group] += own
        for child in children:
            walk(child, group)

    for root in stack:
        walk(root, OTHER)
    return dict(groups)


def profile_rows(path: Path, shown: int = 14) -> list[tuple[str, float, float]]:
    """The functions of pack_publisher (and Invoke's task run) taking the most time, module bodies left out:
    (name, cumulative ms, own ms), from a cProfile dump of the main thread."""
    import pstats

    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    rows = []
    for (filename, line, function), (_, _, own, cumulative, _) in stats.items():
        if function == "<module>" or not ("pack_publisher" in filename or filename.endswith("invoke/program.py")):
            continue
        where = filename.split("pack_publisher/")[-1] if "pack_publisher" in filename else "invoke/program.py"
        rows.append((f"{where}:{line} {function}", cumulative * 1000, own * 1000))
    return sorted(rows, key=lambda row: -row[1])[:shown]


def walls(samples: Iterable[Sample]) -> Stat:
    return Stat([s.wall for s in samples])


def ratios(samples: list[Sample], baseline: list[Sample]) -> Stat:
    """Each run's time over the baseline's in the same run (side by side), as a Stat."""
    return Stat([s.wall / b.wall for s, b in zip(samples, baseline, strict=True)])


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def matrix_table(results: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    matrix = results["matrix"]
    modes = sorted({mode for _, mode, _ in matrix}, key=_mode_order)
    seen: dict[str, Any] = {}
    lines = ["| packs | run | " + " | ".join(modes) + " |", "|---|---|" + "---|" * len(modes)]
    for count in results["counts"]:
        for phase in ("fresh", "re-run"):
            cells = []
            seed = matrix.get((count, "seed loop", phase))
            for mode in modes:
                samples = matrix[(count, mode, phase)]
                if mode == "seed loop" or seed is None:
                    cells.append(walls(samples).fmt())
                    continue
                ratio = ratios(samples, seed)
                seen[f"{count} {mode} {phase}"] = ratio
                spread = f" ({min(ratio.samples):.2f}..{max(ratio.samples):.2f})" if len(ratio.samples) > 1 else ""
                cells.append(f"{walls(samples).median:.2f} s, **{ratio.median:.2f}x**{spread}")
            lines.append(f"| {count} | {phase} | " + " | ".join(cells) + " |")
    return lines, seen


def cpu_table(results: dict[str, Any]) -> list[str]:
    """Where the time of the largest case goes: the command's own CPU and the registry's, against its wall time."""
    count = results["counts"][-1]
    matrix, registry = results["matrix"], results["registry_cpu"]
    modes = sorted({mode for c, mode, _ in matrix if c == count}, key=_mode_order)
    lines = [
        f"CPU seconds for {count} packs (medians; the machine has {os.cpu_count()} cores, shared by the command,",
        "the registry and the proxy):",
        "",
        "| command | run | wall | the command's CPU (all its processes) | registry CPU |",
        "|---|---|---|---|---|",
    ]
    for mode in modes:
        for phase in ("fresh", "re-run"):
            samples = matrix[(count, mode, phase)]
            lines.append(
                f"| {mode} | {phase} | {walls(samples).median:.2f} s | {Stat([s.cpu for s in samples]).median:.2f} s | "
                f"{Stat(registry[(count, mode, phase)]).median:.2f} s |"
            )
    return [*lines, ""]


def _mode_order(mode: str) -> int:
    return ["seed loop", "built-in --jobs 1", "built-in --jobs 4", "oras --jobs 1", "oras --jobs 4"].index(mode)


def write(path: Path, command: str, machine: str, oras: str | None, results: dict[str, Any]) -> None:
    counts, mib = results["counts"], results["large_mib"]
    table, ratio = matrix_table(results)
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        f"Machine: {machine}; oras: {oras or 'none found (set ORAS_BIN): the seed loop and oras rows are left out'}.",
        "",
        "Every figure is a whole command as users run it (`python -m invoke push ...`, the seed's `/bin/sh` loop,",
        "`oras push`), a child process with its own environment (a user's shell: no CI variables, bytecode",
        "caching on), timed from start to exit; the median of the runs with (min..max). Ratios are taken run by",
        "run against the seed loop run beside them, then their median is shown. Each fresh run starts on an",
        "empty Debian `docker-registry`; the re-run follows it with everything published. Packs are built",
        "beforehand by the test stand-in builder (about 1 MiB each, incompressible).",
        "",
        f"## 1. Publishing through a registry {results['latency_ms']} ms away",
        "",
        f"A proxy adds {results['latency_ms']} ms to every request (a registry across a network). Seed loop:",
        "`oras push` then `oras manifest fetch --descriptor` per pack. The others: `invoke push --jobs N` (plan,",
        f"push, read back). Runs: {results['proxy_runs']}.",
        "",
        *table,
        "",
    ]
    lines += cpu_table(results)
    processes = results.get("processes")
    if processes:
        links = [n for n, _ in processes["fresh layout blobs"]]
        lines += [
            "## 2. oras processes per pack",
            "",
            f"Counted with a shim as `ORAS_BIN`, `invoke push --jobs 4` of {counts[-1]} packs through the proxy:",
            f"fresh **{processes['fresh']:.1f}** per pack ({', '.join(processes['fresh calls'])}), already",
            f"published **{processes['re-run']:.1f}** per pack ({', '.join(processes['re-run calls'])}); the seed",
            "loop runs 2. oras writes: a `cp -r` of the pack and its SBOM referrer; while other packs wait for",
            "the push slot, only the archive goes in it (`blob push`) and the `cp -r` follows beside the next",
            "packs' uploads. Every read and proof is a request of the built-in client (`registry/oras.py`).",
            "The layout `oras cp` reads",
            "holds the archive as a hard link (link counts of its blobs",
            f"while `cp` ran: {sorted(set(links))}; the archive's is 2), so nothing is copied.",
            "",
        ]
    large = results["large"]
    lines += [f"## 3. One {mib} MiB pack, loopback", "", "| command | wall | ratio to `oras push` | peak RSS |"]
    lines += ["|---|---|---|---|"]
    for label, samples in large.items():
        shown = "`oras push`" if label == "oras push" else f"`invoke push` ({label})"
        base = large.get("oras push")
        rel = ratios(samples, base).fmt("x") if base and label != "oras push" else "-"
        lines.append(f"| {shown} | {walls(samples).fmt()} | {rel} | {Stat([s.rss_mb for s in samples]).fmt('MB', 0)} |")
    startup = results["startup"]
    lines += ["", "## 4. Start-up: `invoke push` of one small pack, loopback", ""]
    lines += ["| command | wall | CPU | ratio to the `invoke --list` run beside it |", "|---|---|---|---|"]
    for label in ("built-in", "oras", "python -c 'import invoke'", "invoke --list"):
        if label in startup:
            samples = startup[label]
            shown = f"`invoke push` ({label}), fresh" if label in ("built-in", "oras") else f"`{label}` (the floor)"
            rel = ratios(samples, startup["invoke --list"]).fmt("x") if label in ("built-in", "oras") else "-"
            lines.append(f"| {shown} | {walls(samples).fmt()} | {Stat([s.cpu for s in samples]).fmt()} | {rel} |")
    profiles = {k.removeprefix("imports "): v for k, v in startup.items() if k.startswith("imports ")}
    groups = sorted({g for p in profiles.values() for g in p["groups"]})
    lines += [
        "",
        "Where it goes: import time by package (each module's own time, `python -X importtime`, one run each;",
        "importing under the profiler is slower than without it), and the rest of the whole command.",
        "",
        "| part | " + " | ".join(f"`invoke push` ({p})" for p in profiles) + " |",
        "|---|" + "---|" * len(profiles),
    ]
    for group in groups:
        lines.append(
            f"| import {group} | " + " | ".join(f"{p['groups'].get(group, 0):.0f} ms" for p in profiles.values()) + " |"
        )
    lines.append(
        "| everything else (interpreter start, settings and git, registry requests, oras processes) | "
        + " | ".join(f"{(p['wall'] * 1000 - sum(p['groups'].values())):.0f} ms" for p in profiles.values())
        + " |"
    )
    lines.append(
        "| whole command, under the profiler | "
        + " | ".join(f"{p['wall'] * 1000:.0f} ms" for p in profiles.values())
        + " |"
    )
    if startup.get("profile"):
        lines += [
            "",
            "The built-in push function by function (cProfile of its main thread, one run, under the profiler's",
            "overhead; a function's cumulative time includes what it calls, imports made on first use too, so rows",
            "overlap; modules' own import rows are left out; the pack's requests run on push threads):",
            "",
            "| function | cumulative | own |",
            "|---|---|---|",
            *(f"| `{name}` | {total:.0f} ms | {own:.0f} ms |" for name, total, own in startup["profile"]),
        ]
    rss = results["rss"]
    all_rss = max(max(v) for v in rss.values())
    lines += ["", "## 5. Peak RSS of `invoke push`", "", "| packs | peak RSS (largest process) |", "|---|---|"]
    for key, values in rss.items():
        lines.append(f"| {key} | {max(values):.0f} MB |")
    lines += [
        "",
        *additions_table(results["additions"]),
        "",
    ]
    lines += targets(results, ratio, all_rss)
    notes = ROOT / "benchmarks" / "NOTES.md"
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def additions_table(found: dict[str, Any]) -> list[str]:
    """What issue 24's wave adds, per pack, from the walls `Bench.additions` measured (medians)."""
    count, walls_of = found["count"], found["walls"]

    def median(key: str) -> float:
        return float(statistics.median(walls_of[key]))

    lines = [
        "## 6. What the SBOM referrer, the anonymous-pull check and the signatures cost per pack",
        "",
        f"{count} packs through the proxy, `invoke push --jobs 4`, fresh; medians of {len(walls_of['lock signed'])}",
        "runs.",
        "The SBOM referrer: the same packs built with and without an SBOM. The anonymous-pull check: from",
        "the summary line to the check's line of the same push. The signatures: `invoke lock` with and",
        "without `PACK_SIGNING_KEY` (a lockfile entry each).",
        "",
        "| addition | transport | whole command | per pack |",
        "|---|---|---|---|",
    ]
    for label in ("built-in", "oras"):
        if f"{label} with SBOM" not in walls_of:
            continue
        plain, sbom = median(f"{label} without SBOM"), median(f"{label} with SBOM")
        lines.append(
            f"| SBOM referrer | {label} | {plain:.2f} s -> {sbom:.2f} s | {(sbom - plain) / count * 1000:.0f} ms |"
        )
        check = median(f"{label} check")
        lines.append(f"| anonymous-pull check | {label} | {check:.2f} s | {check / count * 1000:.0f} ms |")
    unsigned, signed = median("lock unsigned"), median("lock signed")
    per_pack = (signed - unsigned) / count * 1000
    lines.append(f"| lockfile signatures | either | {unsigned:.2f} s -> {signed:.2f} s | {per_pack:.1f} ms |")
    return lines


def targets(results: dict[str, Any], ratio: dict[str, Stat], all_rss: float) -> list[str]:
    rows = ["## Targets", "", "| target | measured (median, worst run) | verdict |", "|---|---|---|"]
    counts = [c for c in results["counts"] if c > 1] or results["counts"]

    def row(label: str, keys: list[str], limit: float) -> None:
        found = [ratio[k] for k in keys if k in ratio]
        if not found:
            rows.append(f"| {label} | not measured | - |")
            return
        worst = max(found, key=lambda s: s.median)
        shown = ", ".join(
            f"{k.split(' ', 1)[0]} {k.rsplit(' ', 1)[1]} {ratio[k].median:.2f}x" for k in keys if k in ratio
        )
        highest = max(max(s.samples) for s in found)
        rows.append(f"| {label} | {shown} (worst run {highest:.2f}x) | {verdict(worst.median <= limit)} |")

    for mode, limit in (("built-in --jobs 4", 0.40), ("oras --jobs 4", 0.50)):  # issue 24's ratios
        keys = [f"{c} {mode} {phase}" for c in counts for phase in ("fresh", "re-run")]
        row(f"{'/'.join(map(str, counts))} packs, `{mode}` <= {limit}x the seed loop", keys, limit)
    biggest = results["counts"][-1]
    row(
        f"{biggest} packs, `built-in --jobs 1` <= 1.0x",
        [f"{biggest} built-in --jobs 1 {p}" for p in ("fresh", "re-run")],
        1.0,
    )
    processes = results.get("processes")
    if processes:
        links = min(
            n
            for n, size in processes["fresh layout blobs"]
            if size == max(s for _, s in processes["fresh layout blobs"])
        )
        # oras writes, the built-in client reads (registry/oras.py): one `cp -r` per fresh pack, after a
        # `blob push` while others wait for its slot (within issue 13's three); nothing to write once published
        ok = processes["fresh"] <= 2 and processes["re-run"] == 0 and links >= 2
        rows.append(
            "| oras: <= 2 processes per fresh pack (a `cp -r`, after a `blob push` while others wait), "
            "none per published one, "
            f"no copy into the layout | "
            f"{processes['fresh']:.1f} and {processes['re-run']:.1f}; archive link count {links} | {verdict(ok)} |"
        )
    large = results["large"]
    if "oras push" in large:
        for label in ("built-in", "oras"):
            r = ratios(large[label], large["oras push"])
            rows.append(
                f"| {results['large_mib']} MiB, whole `invoke push` ({label}) <= 1.25x `oras push`, loopback | "
                f"{r.median:.2f}x | {verdict(r.median <= 1.25)} |"
            )
    for label in ("built-in", "oras"):
        if label in results["startup"]:
            w = walls(results["startup"][label])
            rows.append(
                f"| `invoke push` of one small pack ({label}), loopback, <= 0.25 s | {w.median:.3f} s | "
                f"{verdict(w.median <= 0.25)} |"
            )
            r = ratios(results["startup"][label], results["startup"]["invoke --list"])
            rows.append(
                f"| `invoke push` of one small pack ({label}) <= 1.6x the `invoke --list` run beside it | "
                f"{r.median:.2f}x | {verdict(r.median <= 1.6)} |"
            )
    rows.append(f"| peak RSS < 100 MB at any size | at most {all_rss:.0f} MB | {verdict(all_rss < 100)} |")
    lines = results["lines"]
    rows.append(
        f"| one whole line per pack at any `--jobs` | {sum(lines)} of {len(lines)} `invoke push` outputs | "
        f"{verdict(all(lines))} |"
    )
    return rows
