"""Run the Greentic builder CLI (`greentic-pack`, formerly `packc`) on a staged pack folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO

from . import cleanup
from .errors import ConfigError, PublisherError
from .redact import Redactor
from .settings import child_environment

INSTALL_HINT = "install it with `cargo binstall greentic-pack` (or `cargo install greentic-pack --locked`)"
STDERR_TAIL_LINES = 20
BUILD_TIMEOUT_SECONDS = 1800
TAIL_BYTES = 64 * 1024  # enough for the last lines; a builder may write megabytes before failing


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


def _tail(stream: IO[bytes]) -> list[str]:
    """The last non-blank lines of the builder's stderr, reading at most TAIL_BYTES of it."""
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - TAIL_BYTES))
    text = stream.read().decode("utf-8", errors="replace")
    return [line for line in text.splitlines() if line.strip()][-STDERR_TAIL_LINES:]


def build_gtpack(builder: str, pack_name: str, staged_dir: Path, gtpack: Path, redactor: Redactor) -> None:
    """Build `gtpack` from `staged_dir`; a failure carries the tail of the builder's stderr.

    The builder runs in its own session with its output going to a file, not a pipe: the build ends
    when the builder itself exits (a grandchild keeping stderr open cannot hold it), and whatever it
    left running is killed then, on timeout, or on Ctrl-C.
    """
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
    with tempfile.TemporaryFile() as stderr:
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=child_environment(),
                start_new_session=True,
            )
        except OSError as exc:
            raise PublisherError(f"pack {pack_name!r}: cannot run the builder {builder}: {exc.strerror}") from None
        cleanup.track(process)
        try:
            returncode = process.wait(timeout=BUILD_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise PublisherError(f"pack {pack_name!r}: the builder ran over {BUILD_TIMEOUT_SECONDS} s") from None
        finally:
            cleanup.kill_group(process)  # whatever the builder left running ends with it
            process.wait()
            cleanup.untrack(process)
        tail = _tail(stderr) if returncode != 0 else []
    if returncode != 0:
        detail = redactor("\n    ".join(tail)) if tail else "(no output on stderr)"
        raise PublisherError(
            f"pack {pack_name!r}: builder {os.path.basename(builder)} failed (exit {returncode}):\n    {detail}"
        )
    if not gtpack.is_file():
        raise PublisherError(f"pack {pack_name!r}: the builder exited 0 but wrote no archive at {gtpack}")
