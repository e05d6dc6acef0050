"""Stand-ins for external programs the tests cannot run for real (the Greentic builder), and small launchers."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

STANDINS = Path(__file__).resolve().parent


def make_executable(path: Path, script: Path) -> Path:
    """A tiny launcher that runs a Python stand-in with this interpreter (so its imports resolve)."""
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path
