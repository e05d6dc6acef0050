"""Measure publish throughput, memory, scale, idempotence and start-up against a local registry.

Every figure is the median of several runs, with min and max. Targets are stated in the report,
never asserted: this is a measurement, not a test.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
LATENCY_MS = 20


@dataclass
class Stat:
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def fmt(self, unit: str = "s", scale: float = 1.0, digits: int = 3) -> str:
        med, lo, hi = (v * scale for v in (self.median, min(self.samples), max(self.samples)))
        return f"{med:.{digits}f} {unit} ({lo:.{digits}f}..{hi:.{digits}f})"


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, IndexError, ValueError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / MIB:.0f} GiB memory"
    registry = subprocess.run(["docker-registry", "--version"], capture_output=True, text=True).stdout.strip()
    return (
        f"{os.cpu_count()} cores ({cpu}){memory}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; {registry or 'docker-registry'} on loopback"
    )


def make_blob(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        written, block = 0, 0
        while written < size:
            chunk = hashlib.sha256(str(block).encode()).digest() * (MIB // 32)
            chunk = chunk[: size - written]
            fh.write(chunk)
            digest.update(chunk)
            written += len(chunk)
            block += 1
    return digest.hexdigest()


def publish_once(mode: str, host: str, repo: str, blob: Path, sha: str, oras: str | None) -> dict[str, float]:
    args = [sys.executable, str(ROOT / "benchmarks" / "publish_once.py"), mode, host, repo, str(blob), sha]
    if oras:
        args += ["--oras", oras]
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{mode} publish failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def bench_publish(host: str, sizes: list[int], runs: int, work: Path, oras: str | None) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        blob = work / f"blob-{size // MIB}m.gtpack"
        sha = make_blob(blob, size)
        modes = ["baseline", "project", *(["oras"] if oras else [])]
        times: dict[str, list[float]] = {m: [] for m in modes}
        rss: dict[str, list[float]] = {m: [] for m in modes}
        for run in range(runs):
            # interleaved, and in alternating order, so drift and the registry's disk write-back
            # after a big upload hit every mode alike; sync first so each starts with clean pages
            for mode in modes if run % 2 == 0 else list(reversed(modes)):
                os.sync()
                out = publish_once(mode, host, f"bench/{mode}-{size // MIB}m-{run}", blob, sha, oras)
                times[mode].append(out["seconds"])
                rss[mode].append(out["max_rss_kb"] / 1024)
        row: dict[str, Any] = {"size": f"{size // MIB} MiB"}
        for mode in modes:
            row[mode] = Stat(times[mode])
            row[f"{mode}_rss"] = Stat(rss[mode])
        row["ratio"] = Stat([p / b for p, b in zip(times["project"], times["baseline"], strict=True)])
        rows.append(row)
        blob.unlink()
    return rows


def make_project(work: Path, count: int, builder_dir: Path) -> Path:
    repo = work / f"project-{count}"
    shutil.rmtree(repo, ignore_errors=True)
    (repo / "packs").mkdir(parents=True)
    shutil.copy2(ROOT / "tasks.py", repo / "tasks.py")
    for i in range(count):
        shutil.copytree(ROOT / "packs" / "messaging-provider-bundle", repo / "packs" / f"pack-{i:03d}")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env, capture_output=True)
    return repo


@contextlib.contextmanager
def timed_builder() -> Iterator[list[float]]:
    """Accumulate the time spent inside the builder CLI, so the tool's own share can be told apart."""
    from pack_publisher import builder

    spent: list[float] = []
    original = builder.build_gtpack

    def wrapper(*args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            original(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    builder.build_gtpack = wrapper
    try:
        yield spent
    finally:
        builder.build_gtpack = original


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process (the registry), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_split(action: Callable[[], Any], registry_pid: int) -> tuple[float, float, float]:
    """(wall, client CPU, registry CPU) seconds while `action` runs."""
    wall0, cpu0, reg0 = time.perf_counter(), time.process_time(), process_cpu_seconds(registry_pid)
    action()
    wall = time.perf_counter() - wall0
    return wall, time.process_time() - cpu0, process_cpu_seconds(registry_pid) - reg0


def clock(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = action()
    return time.perf_counter() - started, value


def bench_releases(
    host: str, counts: list[int], runs: int, work: Path, builder_dir: Path, registry_pid: int, slow_host: str
) -> dict[str, Any]:
    from pack_publisher import pipeline
    from pack_publisher.settings import resolve_settings

    release_rows: list[dict[str, Any]] = []
    dry_cpu: dict[str, Stat] = {}
    rerelease: dict[str, list[float]] = {"seconds": [], "uploads": []}
    dry: dict[str, Any] = {}
    for count in counts:
        project = make_project(work, count, builder_dir)
        total, outside, push1, push4 = [], [], [], []
        for run in range(runs):
            values: dict[str, Any] = {  # passed as values: the benchmark never changes its own environment
                "oci_registry": host,
                "pack_version": "1.0.0",
                "oci_client": "python",
                "packc": str(builder_dir / "greentic-pack"),
                "oci_org": f"r{run}n{count}",
            }
            with timed_builder() as spent:
                settings = resolve_settings(project, values)
                t_build, built = clock(partial(build_all, settings))
                s4 = settings.model_copy(update={"org": f"r{run}n{count}j4"})
                t_push4, _ = clock(partial(push_all, s4, built, 4))
                t_lock, _ = clock(
                    partial(pipeline.lock, quiet_run(settings), pipeline.select_packs(quiet_run(settings), None))
                )
                s1 = settings.model_copy(update={"org": f"r{run}n{count}j1"})
                t_push1, _ = clock(partial(push_all, s1, built, 1))
                if count == max(counts):
                    t_again, again = clock(partial(push_all, s4, built, 4))
                    rerelease["seconds"].append(t_again)
                    rerelease["uploads"].append(sum(r.record.uploaded_blobs or 0 for r in again if r.record))
                release = t_build + t_push4 + t_lock
                total.append(release)
                outside.append((release - sum(spent)) / release)
                push1.append(t_push1)
                push4.append(t_push4)
        release_rows.append(
            {
                "packs": count,
                "total": Stat(total),
                "outside": Stat(outside),
                "push1": Stat(push1),
                "push4": Stat(push4),
                "speedup": Stat([a / b for a, b in zip(push1, push4, strict=True)]),
            }
        )
        if count == max(counts):
            # Where the push time goes: how many cores the client and the registry keep busy, and how
            # --jobs pays off once each request waits on the network (slow_host adds latency).
            busy: dict[int, list[tuple[float, float, float]]] = {1: [], 4: []}
            slow: dict[int, list[float]] = {1: [], 4: []}
            for run in range(runs):
                for jobs in (1, 4):
                    target = settings.model_copy(update={"org": f"busy{run}j{jobs}"})
                    busy[jobs].append(cpu_split(partial(push_all, target, built, jobs), registry_pid))
            for run in range(min(runs, 3)):
                for jobs in (1, 4):
                    target = settings.model_copy(update={"registry": slow_host, "org": f"slow{run}j{jobs}"})
                    slow[jobs].append(clock(partial(push_all, target, built, jobs))[0])
            dry_cpu = {
                **{
                    f"{what}{jobs}": Stat([sample[i] for sample in busy[jobs]])
                    for jobs in (1, 4)
                    for i, what in enumerate(("wall", "client", "registry"))
                },
                "slow1": Stat(slow[1]),
                "slow4": Stat(slow[4]),
                "slow_speedup": Stat([a / b for a, b in zip(slow[1], slow[4], strict=True)]),
            }
            per_pack = []
            for _run in range(runs):
                dry_values: dict[str, Any] = {
                    "oci_org": "dry",
                    "dry_run": True,
                    "pack_version": "1.0.0",
                    "packc": str(builder_dir / "greentic-pack"),
                    "oci_registry": host,
                }
                with timed_builder() as spent:
                    t_dry, _ = clock(partial(dry_run, project, dry_values))
                per_pack.append((t_dry - sum(spent)) / count)
            dry = {"packs": count, "per_pack": Stat(per_pack), **dry_cpu}
    return {"releases": release_rows, "rerelease": rerelease, "dry": dry}


def quiet_run(settings: Any) -> Any:
    """A run of the pipeline that prints nothing."""
    from pack_publisher.run import Run

    class QuietRun(Run):
        def say(self, line: str) -> None:
            return None

        def warn(self, line: str) -> None:
            return None

    return QuietRun(settings, {}, echo=False, echo_format="")


def build_all(settings: Any) -> Any:
    from pack_publisher import builder, pipeline

    run = quiet_run(settings)
    found = builder.find_builder(settings.builder_override, settings.publish.search_path)
    return pipeline.build(run, pipeline.select_packs(run, None), found)


def push_all(settings: Any, built: list[Any], jobs: int) -> Any:
    from pack_publisher import publish
    from pack_publisher.transports import Transports

    settings = settings.model_copy(update={"publish": settings.publish.model_copy(update={"jobs": jobs})})
    run = quiet_run(settings)
    with Transports(settings.registry, settings.publish, run.redact, run.commands) as transports:
        return publish.push(run, built, transports, latest=False, force=False)


def dry_run(project: Path, values: dict[str, Any]) -> None:
    from pack_publisher import pipeline
    from pack_publisher.settings import resolve_settings

    settings = resolve_settings(project, values)  # inside the timing: settings are part of the tool's cost
    run = quiet_run(settings)
    built = build_all(settings)
    pipeline.dry_run(run, built)
    pipeline.lock(run, pipeline.select_packs(run, None))


def bench_startup(runs: int) -> dict[str, Stat]:
    commands = {"invoke --list": ["--list"], "invoke release --help": ["release", "--help"]}
    out = {}
    for label, args in commands.items():
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, check=True)
            samples.append(time.perf_counter() - started)
        out[label] = Stat(samples)
    return out


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def report(
    path: Path,
    command: str,
    runs: int,
    publish_rows: list[dict[str, Any]],
    scale: dict[str, Any],
    startup: dict[str, Stat],
    oras: str | None,
) -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        f"Machine: {machine()}.",
        f"Each figure: median of {runs} run(s), with (min..max). The registry is Debian's `docker-registry`",
        "on loopback, started by the command; packs are built by the test stand-in builder.",
        "",
        "## 1. Publishing one pack",
        "",
        "`project`: the publisher's built-in client doing what `invoke push` does for one pack (resolve the tag,",
        "upload blobs, put the manifest, resolve and verify what landed). `baseline`: the simplest client",
        "(POST, PUT, PUT with plain `requests`, no checks). Peak RSS is the whole publishing process.",
        "",
    ]
    header = "| size | baseline | project | ratio project/baseline | project peak RSS |"
    sep = "|---|---|---|---|---|"
    if oras:
        header += " oras | oras peak RSS |"
        sep += "---|---|"
    lines += [header, sep]
    for row in publish_rows:
        line = (
            f"| {row['size']} | {row['baseline'].fmt()} | {row['project'].fmt()} | "
            f"{row['ratio'].fmt('x', digits=2)} | {row['project_rss'].fmt('MB', digits=0)} |"
        )
        if oras:
            line += f" {row['oras'].fmt()} | {row['oras_rss'].fmt('MB', digits=0)} |"
        lines.append(line)
    if not oras:
        lines += ["", "oras: not measured, no `oras` binary on this machine (set `ORAS_BIN` to include it)."]
    lines += [
        "",
        "## 2. Releases (stand-in builder)",
        "",
        "Total = build + push (`--jobs 4`) + lock. Outside the builder = the share of the total not spent",
        "inside the builder process.",
        "",
        "| packs | release total | share outside the builder | push `--jobs 1` | push `--jobs 4` | speedup |",
        "|---|---|---|---|---|---|",
    ]
    for row in scale["releases"]:
        lines.append(
            f"| {row['packs']} | {row['total'].fmt()} | {row['outside'].fmt('%', 100, 0)} | "
            f"{row['push1'].fmt()} | {row['push4'].fmt()} | {row['speedup'].fmt('x', digits=2)} |"
        )
    rer = scale["rerelease"]
    dry = scale["dry"]
    biggest = scale["releases"][-1]
    lines += [
        "",
        f"Where the push time goes ({dry['packs']} packs, CPU seconds during the push phase):",
        "",
        "| push | wall | publisher CPU | registry CPU |",
        "|---|---|---|---|",
        *(
            f"| `--jobs {j}` | {dry[f'wall{j}'].fmt()} | {dry[f'client{j}'].fmt()} | {dry[f'registry{j}'].fmt()} |"
            for j in (1, 4)
        ),
        "",
        f"With {LATENCY_MS} ms added to every request by a proxy (a registry across a network): push `--jobs 1`",
        f"{dry['slow1'].fmt()}, `--jobs 4` {dry['slow4'].fmt()}, speedup {dry['slow_speedup'].fmt('x', digits=2)}.",
    ]
    lines += [
        "",
        "## 3. Re-release of unchanged packs",
        "",
        f"{biggest['packs']} packs already published: {Stat(rer['seconds']).fmt()}, "
        f"blob uploads per run: {rer['uploads']}.",
        "",
        "## 4. Dry run",
        "",
        f"{dry['packs']} packs: the tool's own time per pack (builder excluded): {dry['per_pack'].fmt('ms', 1000, 1)}.",
        "",
        "## 5. Start-up",
        "",
        "| command | wall time |",
        "|---|---|",
    ]
    for label, stat in startup.items():
        lines.append(f"| `{label}` | {stat.fmt()} |")
    sixty = next((r for r in publish_rows if r["size"] == "60 MiB"), publish_rows[-1])
    rss_max = max(max(r["project_rss"].samples) for r in publish_rows)
    lines += [
        "",
        "## Targets",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        f"| publish {sixty['size']} at most 1.15x the raw baseline | {sixty['ratio'].median:.2f}x | "
        f"{verdict(sixty['ratio'].median <= 1.15)} |",
        f"| peak RSS under 100 MB whatever the size | at most {rss_max:.0f} MB | {verdict(rss_max < 100)} |",
        f"| a re-release uploads nothing | {max(rer['uploads'])} blob(s) | {verdict(max(rer['uploads']) == 0)} |",
        f"| dry-run overhead under 50 ms per pack | {dry['per_pack'].median * 1000:.1f} ms | "
        f"{verdict(dry['per_pack'].median < 0.05)} |",
        f"| `--jobs 4` at least 2.5x faster than `--jobs 1` ({biggest['packs']} packs, push phase) | "
        f"{biggest['speedup'].median:.2f}x | {verdict(biggest['speedup'].median >= 2.5)} |",
        "",
    ]
    notes = ROOT / "benchmarks" / "NOTES.md"
    if notes.exists():
        lines += [notes.read_text().rstrip(), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def run(output: Path, runs: int, quick: bool) -> Path:
    sys.path.insert(0, str(ROOT))
    from testsupport.fault_proxy import FaultProxy, Rule
    from testsupport.registries import Registry
    from testsupport.standins import STANDINS, make_executable

    oras = os.environ.get("ORAS_BIN") or shutil.which("oras")
    sizes = [1 * MIB] if quick else [1 * MIB, 16 * MIB, 60 * MIB]
    counts = [1, 2] if quick else [1, 10, 50]
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        builder_dir = work / "bin"
        builder_dir.mkdir()
        make_executable(builder_dir / "greentic-pack", STANDINS / "greentic_pack.py")
        registry = Registry(work / "registry").start()
        slow = FaultProxy(registry.port, [Rule("*", "", "delay", times=None, stall_seconds=LATENCY_MS / 1000)])
        try:
            publish_rows = bench_publish(registry.host, sizes, runs, work, oras)
            pid = registry.process.pid if registry.process else 0
            scale = bench_releases(registry.host, counts, runs, work, builder_dir, pid, slow.host)
        finally:
            slow.close()
            registry.stop()
        startup = bench_startup(max(runs, 3))
    command = "invoke bench --quick" if quick else "invoke bench" + (f" --runs {runs}" if runs != 5 else "")
    report(output, command, runs, publish_rows, scale, startup, oras)
    return output
