"""`invoke bench`: whole commands, side by side in one run, against the seed's shell loop.

Measured, each figure the median of several runs with min and max (see `report` for the tables):

1. through a proxy adding 20 ms to every request (a registry across a network): 1, 20 and 50 small
   packs, fresh (an empty registry) and re-run (all published), the seed's loop (`oras push` +
   `oras manifest fetch --descriptor` per pack, real oras) against `invoke push --jobs 1` and
   `--jobs 4` on both transports; every `invoke push` output is checked for one whole line per pack;
2. oras processes per fresh and per already-published pack (a counting shim as ORAS_BIN), and whether
   the layout `oras cp` reads holds the archive as a hard link;
3. on loopback: one 60 MiB pack, whole `invoke push` against `oras push`; peak RSS;
4. on loopback: `invoke push` of one small pack, whole process, with the floor (`import invoke`,
   `invoke --list`) and an import profile;
5. peak RSS;
6. what the SBOM referrer, the anonymous-pull check and the lockfile's signatures cost per pack.

Nothing here is asserted: `report` states each target and whether this run met it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.harness import (
    ROOT,
    FreshRegistry,
    Sample,
    base_env,
    build,
    counting_oras,
    invoke_push,
    machine,
    make_project,
    measure,
    oras_calls,
    oras_push_one,
    seed_loop,
    timed_lines,
    whole_lines,
)

LATENCY_MS = 20
MODES = ["seed loop", "built-in --jobs 1", "built-in --jobs 4", "oras --jobs 1", "oras --jobs 4"]


class Bench:
    def __init__(self, work: Path, runs: int, quick: bool, oras: str | None) -> None:
        from testsupport.standins import STANDINS, make_executable

        self.work = work
        self.runs = runs
        self.quick = quick
        self.oras = oras
        builder_dir = work / "bin"
        builder_dir.mkdir()
        make_executable(builder_dir / "greentic-pack", STANDINS / "greentic_pack.py")
        self.builder_dir = builder_dir
        self.env = base_env(work, builder_dir)
        if oras:
            self.env["ORAS_BIN"] = oras
        self.registry = FreshRegistry(work / "registry")
        self.results: dict[str, Any] = {"lines": [], "rss": defaultdict(list), "registry_cpu": defaultdict(list)}

    def real_oras(self) -> str:
        if self.oras is None:
            raise RuntimeError("internal: an oras measurement without oras")
        return self.oras

    def modes(self) -> list[str]:
        return MODES if self.oras else [m for m in MODES if m.startswith("built-in")]

    def run_mode(self, mode: str, project: Path, host: str, out_dir: str, packs: int) -> Sample:
        if mode == "seed loop":
            return seed_loop(project, self.env, host, out_dir, self.real_oras())
        client, jobs = ("python" if mode.startswith("built-in") else "oras"), int(mode[-1])
        sample = invoke_push(project, self.env, host, out_dir, client, jobs)
        self.results["lines"].append(whole_lines(sample.stdout, packs))
        self.results["rss"][packs].append(sample.rss_mb)
        return sample

    # --- 1. the matrix through the proxy ----------------------------------------------------------

    def matrix(self, proxy_host: str, counts: list[int]) -> dict[tuple[int, str, str], list[Sample]]:
        found: dict[tuple[int, str, str], list[Sample]] = defaultdict(list)
        runs = min(self.runs, 3)  # 50 packs x 5 modes x 2 phases is a minute a run
        for count in counts:
            project = make_project(self.work / f"proxy-{count}", count, 1, self.builder_dir)
            build(project, self.env, proxy_host, "dist/proxy")
            for run in range(runs):
                for mode in self.modes() if run % 2 == 0 else list(reversed(self.modes())):
                    self.registry.restart()
                    for phase in ("fresh", "re-run"):
                        before = self.registry.cpu()
                        sample = self.run_mode(mode, project, proxy_host, "dist/proxy", count)
                        found[(count, mode, phase)].append(sample)
                        self.results["registry_cpu"][(count, mode, phase)].append(self.registry.cpu() - before)
            self.results["project"] = project  # the last (largest) one, reused for the process count
        return found

    # --- 2. oras processes per pack ----------------------------------------------------------------

    def processes(self, proxy_host: str, count: int) -> dict[str, Any]:
        project = self.results["project"]
        self.registry.restart()
        with counting_oras(self.work, self.real_oras()) as (shim, log):
            env = {**self.env, "ORAS_BIN": shim}
            counted: dict[str, Any] = {}
            for phase in ("fresh", "re-run"):
                invoke_push(project, env, proxy_host, "dist/proxy", "oras", 4)
                calls, blobs = oras_calls(log)
                counted[phase] = len(calls) / count
                counted[f"{phase} calls"] = sorted(set(calls))
                counted[f"{phase} layout blobs"] = blobs
        return counted

    # --- 3. one large pack, loopback ---------------------------------------------------------------

    def large(self, mib: int) -> dict[str, list[Sample]]:
        project = make_project(self.work / "large", 1, mib, self.builder_dir)
        [name] = build(project, self.env, self.registry.host, "dist/loop")
        labels = (["oras push"] if self.oras else []) + ["built-in", *(["oras"] if self.oras else [])]
        found: dict[str, list[Sample]] = defaultdict(list)
        for run in range(self.runs):
            for label in labels if run % 2 == 0 else list(reversed(labels)):
                self.registry.restart()
                os.sync()  # the last run's writes are on disk: each run starts with clean pages
                if label == "oras push":
                    oras = self.real_oras()
                    sample = oras_push_one(project, self.env, self.registry.host, "dist/loop", oras, name)
                else:
                    sample = invoke_push(project, self.env, self.registry.host, "dist/loop", _client(label), 1)
                    self.results["rss"][f"{mib} MiB"].append(sample.rss_mb)
                found[label].append(sample)
        return found

    # --- 4. start-up of one small pack, loopback ---------------------------------------------------

    def startup(self) -> dict[str, Any]:
        project = make_project(self.work / "small", 1, 1, self.builder_dir)
        build(project, self.env, self.registry.host, "dist/loop")
        labels = ["built-in", *(["oras"] if self.oras else [])]
        found: dict[str, Any] = defaultdict(list)
        floor = {"python -c 'import invoke'": ["-c", "import invoke"], "invoke --list": ["-m", "invoke", "--list"]}
        for run in range(max(self.runs, 3)):
            for label in labels if run % 2 == 0 else list(reversed(labels)):
                self.registry.restart()
                found[label].append(invoke_push(project, self.env, self.registry.host, "dist/loop", _client(label), 1))
            for label, args in floor.items():
                found[label].append(measure([sys.executable, *args], self.env, project))
        for label in labels:  # where the start-up goes: one import profile per transport
            self.registry.restart()
            env = {**self.env, "PYTHONPROFILEIMPORTTIME": "1"}
            sample = invoke_push(project, env, self.registry.host, "dist/loop", _client(label), 1)
            found[f"imports {label}"] = {"wall": sample.wall, "groups": report.import_groups(sample.stderr)}
        self.registry.restart()  # and what the built-in push does besides importing: a cProfile of its main thread
        profile = self.work / "push.prof"
        argv = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "invoke", "push", "--jobs", "1"]
        measure(
            argv,
            {**self.env, "OCI_REGISTRY": self.registry.host, "OUT_DIR": "dist/loop", "OCI_CLIENT": "python"},
            project,
        )
        found["profile"] = report.profile_rows(profile)
        return found

    # --- 6. what issue 24's wave adds, per pack ----------------------------------------------------

    def additions(self, proxy_host: str, count: int) -> dict[str, Any]:
        """Per pack: the SBOM referrer (the same packs built with and without an SBOM, pushed fresh), the
        anonymous-pull check (from the summary line to the check's line) and the lockfile's signatures
        (`invoke lock` with and without PACK_SIGNING_KEY), through the proxy, `--jobs 4`."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        projects = {"with SBOM": make_project(self.work / "with-sbom", count, 1, self.builder_dir)}
        projects["without SBOM"] = make_project(self.work / "without-sbom", count, 1, self.builder_dir)
        build(projects["with SBOM"], self.env, proxy_host, "dist/proxy")
        build(projects["without SBOM"], {**self.env, "FAKE_GREENTIC_PACK_MODE": "no-sbom"}, proxy_host, "dist/proxy")
        found: dict[str, list[float]] = defaultdict(list)
        clients = ["built-in", *(["oras"] if self.oras else [])]
        for run in range(min(self.runs, 3)):
            for label in clients if run % 2 == 0 else list(reversed(clients)):
                for kind, project in projects.items():
                    self.registry.restart()
                    env = {
                        **self.env,
                        "OCI_REGISTRY": proxy_host,
                        "OUT_DIR": "dist/proxy",
                        "OCI_CLIENT": _client(label),
                    }
                    wall, lines = timed_lines([sys.executable, "-m", "invoke", "push", "--jobs", "4"], env, project)
                    found[f"{label} {kind}"].append(wall)
                    if kind == "with SBOM":
                        summary = next(t for t, line in lines if " pack(s) published or already published " in line)
                        checked = next(t for t, line in lines if "can be pulled anonymously" in line)
                        found[f"{label} check"].append(checked - summary)
            env = {**self.env, "OCI_REGISTRY": proxy_host, "OUT_DIR": "dist/proxy"}
            for signed in (False, True):
                given = {**env, "PACK_SIGNING_KEY": key.decode()} if signed else env
                lock = measure([sys.executable, "-m", "invoke", "lock"], given, projects["with SBOM"])
                found["lock signed" if signed else "lock unsigned"].append(lock.wall)
        return {"count": count, "walls": found}

    def run(self) -> dict[str, Any]:
        from testsupport.fault_proxy import LatencyProxy

        counts = [1, 2] if self.quick else [1, 20, 50]
        proxy = LatencyProxy(self.registry.port, LATENCY_MS / 1000)
        try:
            self.results["matrix"] = self.matrix(proxy.host, counts)
            if self.oras:
                self.results["processes"] = self.processes(proxy.host, counts[-1])
            self.results["large_mib"] = 4 if self.quick else 60
            self.results["large"] = self.large(self.results["large_mib"])
            self.results["startup"] = self.startup()
            self.results["additions"] = self.additions(proxy.host, counts[1] if len(counts) > 2 else counts[-1])
        finally:
            proxy.close()
            self.registry.stop()
        self.results.update(counts=counts, proxy_runs=min(self.runs, 3), runs=self.runs, latency_ms=LATENCY_MS)
        return self.results


def _client(label: str) -> str:
    return "python" if label == "built-in" else "oras"


def run(output: Path, runs: int, quick: bool) -> Path:
    sys.path.insert(0, str(ROOT))
    from testsupport.oras import real_oras

    oras = real_oras()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        results = Bench(Path(tmp), runs, quick, oras).run()
        shutil.rmtree(Path(tmp) / "registry", ignore_errors=True)
    command = "invoke bench --quick" if quick else "invoke bench" + (f" --runs {runs}" if runs != 5 else "")
    report.write(output, command, machine(), oras, results)
    return output
