"""Run the Greentic builder CLI (`greentic-pack`, formerly `packc`) on a staged pack folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pack_publisher.runtime.errors import ConfigError, PublisherError
from pack_publisher.runtime.processes import Commands

INSTALL_HINT = (
    "install the pinned one with `invoke tools --tool greentic-pack`, or with "
    "`cargo binstall --locked greentic-pack@1.1.3` (see README, Set up and run)"
)
STDERR_TAIL_LINES = 20
BUILD_TIMEOUT_SECONDS = 1800


def find_builder(override: str | None, search_path: str | None) -> str:
    """The builder executable: PACKC/PACKC_BIN, else `greentic-pack` on PATH, else `packc`."""
    if override:
        found = shutil.which(override, path=search_path)
        if found is None:
            raise ConfigError(f"PACKC / PACKC_BIN: {override!r} is not an executable file")
        return found
    for name in ("greentic-pack", "packc"):
        found = shutil.which(name, path=search_path)
        if found:
            return found
    raise ConfigError(f"the Greentic builder was not found (neither greentic-pack nor packc on PATH); {INSTALL_HINT}")


def build_gtpack(commands: Commands, builder: str, pack_name: str, staged_dir: Path, gtpack: Path) -> None:
    """Build `gtpack` from `staged_dir`; a failure carries the tail of the builder's stderr.

    The build ends when the builder itself exits: its output goes to a file and /dev/null, not a pipe
    a grandchild could hold open, and whatever it left running is killed then, on timeout, or on Ctrl-C.
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
    try:
        done = commands.run(command, timeout=BUILD_TIMEOUT_SECONDS, stdout=False)
    except OSError as exc:
        raise PublisherError(f"pack {pack_name!r}: cannot run the builder {builder}: {exc.strerror}") from None
    if done.expired:
        raise PublisherError(f"pack {pack_name!r}: the builder ran over {BUILD_TIMEOUT_SECONDS} s")
    if done.returncode != 0:
        tail = [line for line in done.stderr_tail.splitlines() if line.strip()][-STDERR_TAIL_LINES:]
        detail = "\n    ".join(tail) if tail else "(no output on stderr)"
        raise PublisherError(
            f"pack {pack_name!r}: builder {os.path.basename(builder)} failed (exit {done.returncode}):\n    {detail}"
        )
    if not gtpack.is_file():
        raise PublisherError(f"pack {pack_name!r}: the builder exited 0 but wrote no archive at {gtpack}")
