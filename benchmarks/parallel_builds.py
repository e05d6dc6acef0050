"""Parallel builds: 8 packs whose builder takes 1 s each, whole `invoke build` at `--jobs 1` and `--jobs 4`.

Run: `python -m benchmarks.parallel_builds [--runs N]`. Prints the medians and the ratio (issue 14's
target: `--jobs 4` at most 0.6x `--jobs 1`). The builder is the test stand-in with
FAKE_GREENTIC_PACK_DELAY=1, standing in for a Rust/WASM build; the environment is passed, not changed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testsupport.standins import STANDINS, make_executable

PROJECT = Path(__file__).resolve().parent.parent
PACKS = 8


def make_project(work: Path) -> Path:
    repo = work / "repo"
    (repo / "packs").mkdir(parents=True)
    shutil.copy2(PROJECT / "tasks.py", repo / "tasks.py")
    template = PROJECT / "packs" / "messaging-provider-bundle"
    for i in range(PACKS):
        folder = repo / "packs" / f"pack-{i}"
        shutil.copytree(template, folder)
        pack_yaml = folder / "pack.yaml"
        pack_yaml.write_text(pack_yaml.read_text().replace("messaging-provider-bundle", f"pack-{i}"))
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b"}
    env["GIT_COMMITTER_EMAIL"] = "b@x"
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env, capture_output=True)
    return repo


def build_seconds(repo: Path, bin_dir: Path, jobs: int) -> float:
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(repo.parent),
        "OCI_ORG": "bench",
        "PACK_VERSION": "1.0.0",
        "FAKE_GREENTIC_PACK_DELAY": "1",
    }
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "build", "--jobs", str(jobs)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bin_dir = work / "bin"
        bin_dir.mkdir()
        make_executable(bin_dir / "greentic-pack", STANDINS / "greentic_pack.py")
        repo = make_project(work)
        medians = {}
        for jobs in (1, 4):
            medians[jobs] = statistics.median(build_seconds(repo, bin_dir, jobs) for _ in range(runs))
    ratio = medians[4] / medians[1]
    print(
        f"{PACKS} packs, builder 1 s each: --jobs 1 {medians[1]:.2f} s, --jobs 4 {medians[4]:.2f} s, ratio {ratio:.2f}x"
    )
    print("target --jobs 4 <= 0.6x --jobs 1:", "met" if ratio <= 0.6 else "MISSED")


if __name__ == "__main__":
    main()
