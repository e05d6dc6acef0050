"""What the benchmark is made of: whole commands timed as users run them, registries that start empty,
projects of built packs, the seed's shell loop, and a counting oras shim.

Every command is a child process with its own environment (passed as `env=`, the benchmark never
changes its own); wall time, CPU time and peak RSS come from the kernel (`wait4`) for the command and
everything it started and waited for.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from testsupport.registries import Registry

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
VERSION = "1.0.0"
ORG = "bench"
REPO = "greentic-packs"
MEDIA_TYPE = "application/vnd.greentic.gtpack.v1+zip"
TEMPLATE = ROOT / "packs" / "messaging-provider-bundle"


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds
    cpu: float  # user + system seconds of the command and its children
    rss_mb: float  # the largest peak RSS of any one process of the command
    stdout: str
    stderr: str


@dataclass
class Stat:
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def fmt(self, unit: str = "s", digits: int = 2) -> str:
        med, lo, hi = self.median, min(self.samples), max(self.samples)
        if len(self.samples) == 1:
            return f"{med:.{digits}f} {unit}"
        return f"{med:.{digits}f} {unit} ({lo:.{digits}f}..{hi:.{digits}f})"


def measure(argv: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float = 900) -> Sample:
    """Run one whole command to its end; raise with its output when it fails."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdout=out, stderr=err)
        try:
            _, status, usage = _wait4(process.pid, started + timeout)
        except TimeoutError:
            process.kill()
            process.wait()
            raise RuntimeError(f"{' '.join(argv)} ran over {timeout:.0f} s") from None
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(argv)}` failed ({process.returncode}) in {cwd}:\n{stdout[-3000:]}{stderr[-3000:]}"
        )
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stdout, stderr)


def timed_lines(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> tuple[float, list[tuple[float, str]]]:
    """Run one whole command; its wall time and each stdout line with the second it arrived (lines are flushed)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        list(argv), cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines = []
    out, err = process.stdout, process.stderr
    if out is None or err is None:
        raise RuntimeError("internal: no pipes")
    for line in out:
        lines.append((time.perf_counter() - started, line.rstrip("\n")))
    stderr = err.read()
    process.wait()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed ({process.returncode}) in {cwd}:\n{stderr[-3000:]}")
    return wall, lines


def _wait4(pid: int, deadline: float) -> tuple[int, int, resource.struct_rusage]:
    while True:
        found, status, usage = os.wait4(pid, os.WNOHANG)
        if found:
            return found, status, usage
        if time.perf_counter() > deadline:
            raise TimeoutError
        time.sleep(0.002)


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
        f"Python {platform.python_version()}; {registry or 'docker-registry'}"
    )


def base_env(work: Path, builder_dir: Path) -> dict[str, str]:
    """A user's shell, minimal: no CI variables (they switch on command echo), bytecode caching on."""
    home = work / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": f"{builder_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(ROOT),  # the checkout being measured, whatever the virtual environment points at
        "PACK_VERSION": VERSION,
        "OCI_ORG": ORG,
        "OCI_REPO": REPO,
        "GITHUB_REPOSITORY": "greentic/bench",
    }


# --- registries that start empty ------------------------------------------------------------------


class FreshRegistry:
    """docker-registry on one fixed loopback port, restarted on empty storage for every fresh run."""

    def __init__(self, folder: Path) -> None:
        from testsupport.registries import free_port

        self.folder = folder
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.runs = 0
        self.current: Registry | None = None

    def restart(self) -> None:
        from testsupport.registries import Registry

        self.stop()
        self.runs += 1
        storage = self.folder / f"r{self.runs}"
        shutil.rmtree(storage, ignore_errors=True)  # empty, whatever an earlier benchmark left
        self.current = Registry(storage, port=self.port).start()
        previous = self.folder / f"r{self.runs - 1}"
        shutil.rmtree(previous, ignore_errors=True)

    def cpu(self) -> float:
        """CPU seconds the running registry has used so far (user + system, from /proc)."""
        if self.current is None or self.current.process is None:
            return 0.0
        fields = Path(f"/proc/{self.current.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


# --- projects of built packs ----------------------------------------------------------------------


def make_project(folder: Path, count: int, asset_mib: int, builder_dir: Path) -> Path:
    """A committed checkout with `count` packs of about `asset_mib` MiB each (incompressible assets)."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "packs").mkdir(parents=True)
    shutil.copy2(ROOT / "tasks.py", folder / "tasks.py")
    for i in range(count):
        name = f"pack-{i:03d}"
        pack = folder / "packs" / name
        shutil.copytree(TEMPLATE, pack)
        (pack / "pack.yaml").write_text((TEMPLATE / "pack.yaml").read_text().replace(TEMPLATE.name, name))
        assets = pack / "assets"
        assets.mkdir()
        left, part = asset_mib * MIB, 0
        while left > 0:  # the archive reader refuses entries over 16 MiB
            size = min(left, 15 * MIB)
            (assets / f"data-{part}.bin").write_bytes(os.urandom(size))
            left, part = left - size, part + 1
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b"}
    env["GIT_COMMITTER_EMAIL"] = "b@b"
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", "-C", str(folder), *args], check=True, env=env, capture_output=True)
    return folder


def build(project: Path, env: Mapping[str, str], registry: str, out_dir: str) -> list[str]:
    """Build every pack of `project` for `registry` into `out_dir`; the pack names."""
    measure(
        [sys.executable, "-m", "invoke", "build"],
        {**env, "OCI_REGISTRY": registry, "OUT_DIR": out_dir, "PUBLISH_JOBS": "4"},
        project,
    )
    return sorted(p.name[: -len(".gtpack")] for p in (project / out_dir).glob("*.gtpack"))


def invoke_push(project: Path, env: Mapping[str, str], registry: str, out_dir: str, client: str, jobs: int) -> Sample:
    argv = [sys.executable, "-m", "invoke", "push", "--jobs", str(jobs)]
    return measure(argv, {**env, "OCI_REGISTRY": registry, "OUT_DIR": out_dir, "OCI_CLIENT": client}, project)


# --- the seed's loop: oras push, then oras manifest fetch --descriptor, per pack ----------------------

SEED_LOOP = """#!/bin/sh
# The seed's publishing loop: one `oras push` and one `oras manifest fetch --descriptor` per pack.
set -eu
cd "$OUT_DIR"
for file in *.gtpack; do
  name="${file%.gtpack}"
  "$ORAS" push --plain-http "$TARGET/$name:$PACK_VERSION" "$file:$MEDIA_TYPE" --artifact-type "$MEDIA_TYPE" \\
    --annotation "org.opencontainers.image.version=$PACK_VERSION" \\
    --annotation "org.opencontainers.image.created=$CREATED" \\
    --annotation "org.opencontainers.image.revision=$REVISION" --format json > /dev/null
  "$ORAS" manifest fetch --descriptor --plain-http "$TARGET/$name:$PACK_VERSION" > /dev/null
done
"""


def seed_loop(project: Path, env: Mapping[str, str], registry: str, out_dir: str, oras: str) -> Sample:
    script = project / "seed-loop.sh"
    if not script.exists():
        script.write_text(SEED_LOOP)
    any_manifest = next((project / out_dir).glob("*.manifest.json"))
    annotations = json.loads(any_manifest.read_text()).get("annotations", {})
    loop_env = {
        **env,
        "ORAS": oras,
        "OUT_DIR": str(project / out_dir),
        "TARGET": f"{registry}/{ORG}/{REPO}",
        "MEDIA_TYPE": MEDIA_TYPE,
        "CREATED": annotations.get("org.opencontainers.image.created", ""),
        "REVISION": annotations.get("org.opencontainers.image.revision", ""),
    }
    return measure(["/bin/sh", str(script)], loop_env, project)


def oras_push_one(project: Path, env: Mapping[str, str], registry: str, out_dir: str, oras: str, name: str) -> Sample:
    """The plain `oras push` of one archive, as the seed ran it, from the archive's folder."""
    argv = [oras, "push", "--plain-http", f"{registry}/{ORG}/{REPO}/{name}:{VERSION}", f"{name}.gtpack:{MEDIA_TYPE}"]
    argv += ["--artifact-type", MEDIA_TYPE, "--format", "json"]
    return measure(argv, env, project / out_dir)


# --- counting oras processes ----------------------------------------------------------------------

COUNTING_SHIM = """#!/bin/sh
# Logs each oras call (its subcommand), and for `cp` the link count of every blob of the layout it copies.
printf '%s\\n' "$1${2:+ $2}" >> "{log}"
if [ "$1" = cp ]; then
  for arg in "$@"; do
    case "$arg" in */layout:*) stat -c 'layout-blob %h %s' "${arg%:*}"/blobs/sha256/* >> "{log}" ;; esac
  done
fi
exec "{oras}" "$@"
"""


@contextlib.contextmanager
def counting_oras(folder: Path, oras: str) -> Iterator[tuple[str, Path]]:
    """A shim to use as ORAS_BIN: it logs every call, then runs the real oras."""
    log = folder / "oras-calls.log"
    shim = folder / "oras-counting"
    shim.write_text(COUNTING_SHIM.replace("{log}", str(log)).replace("{oras}", oras))
    shim.chmod(0o755)
    log.write_text("")
    yield str(shim), log


def oras_calls(log: Path) -> tuple[list[str], list[tuple[int, int]]]:
    """(the subcommands run, (link count, size) of each layout blob `cp` read)."""
    calls, blobs = [], []
    for line in log.read_text().splitlines():
        if line.startswith("layout-blob "):  # not "blob fetch", a subcommand
            _, links, size = line.split()
            blobs.append((int(links), int(size)))
        elif line:
            calls.append(line)
    log.write_text("")
    return calls, blobs


# --- output: one whole line per pack --------------------------------------------------------------

_LINE = re.compile(
    r"^(plan \S+: .+|published \S+ digest=sha256:[0-9a-f]{64} tags=\S+ \(via .+\)|"
    r"already published \S+ digest=sha256:[0-9a-f]{64} tags=\S+ \(via .+\)|\d+ of \d+ pack\(s\) .+|"
    r"all \d+ pack\(s\) can be pulled anonymously from \S+|"
    r"still uploading \S+: .+ elapsed, .+|"  # a long upload's heartbeat (runtime/progress.py)
    r"sbom \S+: (already )?attached sha256:[0-9a-f]{64})$"  # the SBOM referrer's line after each result
)


def whole_lines(stdout: str, packs: int) -> bool:
    """Every line is one known line, with one plan line, one result line and one SBOM line per pack (none merged)."""
    lines = stdout.splitlines()
    plans = sum(1 for line in lines if line.startswith("plan "))
    results = sum(1 for line in lines if line.startswith(("published ", "already published ")))
    sboms = sum(1 for line in lines if line.startswith("sbom "))
    return plans == packs and results == packs and sboms == packs and all(_LINE.match(line) for line in lines)
