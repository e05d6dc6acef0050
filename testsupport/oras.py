"""The real ORAS CLI for tests and benchmarks: `ORAS_BIN`, else `oras` on PATH.

`.ci/run` points ORAS_BIN at `../shared/tools/oras-1.3.3/oras`; GitHub's ci.yml installs the release.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def real_oras() -> str | None:
    """The absolute path of the real oras, or None when none is given or found."""
    given = os.environ.get("ORAS_BIN")
    found = shutil.which(given) if given else shutil.which("oras")
    return str(Path(found).resolve()) if found else None
