"""Smoke test of `invoke bench`: it starts a registry and the 20 ms proxy, runs the smallest cases as whole
commands beside the seed loop, and writes a report with every target; the figures themselves are not judged
(this machine is shared), except the ones that do not depend on its speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from testsupport.oras import real_oras

from .conftest import PROJECT


@pytest.mark.registry
@pytest.mark.subprocess
@pytest.mark.slow
def test_bench_quick(tmp_path: Path) -> None:
    report = tmp_path / "bench.md"
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "bench", "--quick", "--output", str(report)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = report.read_text()
    assert "Produced by `invoke bench --quick`" in text
    sections = (
        "## 1. Publishing through a registry 20 ms away",
        "## 3. One 4 MiB pack, loopback",
        "## 4. Start-up: `invoke push` of one small pack, loopback",
        "## 5. Peak RSS",
        "## 6. What the SBOM referrer, the anonymous-pull check and the signatures cost per pack",
        "## Targets",
    )
    for section in sections:
        assert section in text
    assert "| 1 | fresh |" in text and "| 2 | re-run |" in text
    assert "| import invoke |" in text  # the start-up profile
    assert "<= 1.6x the `invoke --list` run beside it |" in text  # issue 24's start-up ratio, with a verdict
    assert "| SBOM referrer | built-in |" in text and "| lockfile signatures | either |" in text
    # what does not depend on the machine's speed: whole output lines, flat memory, oras processes
    assert "| one whole line per pack at any `--jobs` | 16 of 16" in text or "| 8 of 8" in text
    assert "outputs | met |" in text
    assert "| peak RSS < 100 MB at any size |" in text and "MB | met |" in text
    if real_oras():
        assert "## 2. oras processes per pack" in text
        # two packs, none waiting for another's slot: each goes up with its SBOM in one `cp -r`
        assert "no copy into the layout | 1.0 and 0.0; archive link count 2 | met |" in text
        assert "| packs | run | seed loop | built-in --jobs 1 |" in text
