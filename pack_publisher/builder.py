"""Run the Greentic builder CLI (`greentic-pack`, formerly `packc`) on a staged pack folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .errors import ConfigError, PublisherError
from .redact import Redactor
from .settings import child_environment

INSTALL_HINT = "install it with `cargo binstall greentic-pack` (or `cargo install greentic-pack --locked`)"
STDERR_TAIL_LINES = 20
BUILD_TIMEOUT_SECONDS = 1800


def find_builder(override: str | None) -> str:
    """The builder executable: PACKC/PACKC_BIN, else `greentic-pack` on PATH, else `packc`."""
    if override:
        found = shutil.which(override)
        if found is None:
            raise ConfigError(f"PACKC / PACKC_BIN: {override!r} is not an executable file")
        return found
    for name in ("greentic-pack", "packc"):
        found = shutil.which(name)
        if found:
            return found
    raise ConfigError(f"the Greentic builder was not found (neither greentic-pack nor packc on PATH); {INSTALL_HINT}")


def build_gtpack(builder: str, pack_name: str, staged_dir: Path, gtpack: Path, redactor: Redactor) -> None:
    """Build `gtpack` from `staged_dir`; a failure carries the tail of the builder's stderr."""
    gtpack.unlink(missing_ok=True)  # so a builder that 'succeeds' without writing is caught
    command = [
        builder,
        "build",
        "--in",
        str(staged_dir.resolve()),
        "--gtpack-out",
        str(gtpack.resolve()),
        "--no-update",
    ]
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            errors="replace",
            env=child_environment(),
            timeout=BUILD_TIMEOUT_SECONDS,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except OSError as exc:
        raise PublisherError(f"pack {pack_name!r}: cannot run the builder {builder}: {exc.strerror}") from None
    except subprocess.TimeoutExpired:
        raise PublisherError(f"pack {pack_name!r}: the builder ran over {BUILD_TIMEOUT_SECONDS} s") from None
    if result.returncode != 0:
        tail = [line for line in result.stderr.splitlines() if line.strip()][-STDERR_TAIL_LINES:]
        detail = redactor("\n    ".join(tail)) if tail else "(no output on stderr)"
        raise PublisherError(
            f"pack {pack_name!r}: builder {os.path.basename(builder)} failed (exit {result.returncode}):\n    {detail}"
        )
    if not gtpack.is_file():
        raise PublisherError(f"pack {pack_name!r}: the builder exited 0 but wrote no archive at {gtpack}")
