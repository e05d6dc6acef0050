"""Smoke test of `invoke bench`: it starts a registry, measures the smallest cases, writes a report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import PROJECT


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
    assert "| 1 MiB |" in text and "| 2 |" in text
    assert "a re-release uploads nothing | 0 blob(s) | met" in text
    for section in ("## 1. Publishing one pack", "## 3. Re-release", "## 4. Dry run", "## 5. Start-up", "## Targets"):
        assert section in text
