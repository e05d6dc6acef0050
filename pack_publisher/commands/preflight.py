"""Before the first build: paths checked, OUT_DIR held for the run, the builder found, the registry
opened once for the whole run.

One run per OUT_DIR (a file lock), and no litter when the run is refused: a run refused by its preflight
(a missing builder, half a credential pair, an unknown pack) leaves the checkout as it found it, with no
`OUT_DIR/.publisher.lock` and no empty `dist/packs/` it created.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pack_publisher.config.run import Run
from pack_publisher.registry.connect import chosen_oras, connect
from pack_publisher.registry.retry import RetryPolicy
from pack_publisher.registry.verified import VerifiedRegistry
from pack_publisher.runtime.errors import ConfigError, PublisherError
from pack_publisher.sources import packs
from pack_publisher.state import lockfile

if TYPE_CHECKING:
    from pack_publisher.oci.signing import LockSigner

LOCK_NAME = ".publisher.lock"


# A dry run asks the registry once, briefly: an unreachable registry must not hold a PR check.
CONSULT_POLICY = RetryPolicy(attempts=1, connect_timeout=3.0, read_timeout=10.0)


def _writable_out_dir(run: Run) -> None:
    out_dir = run.settings.out_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"OUT_DIR: {out_dir} is not writable ({exc.strerror})") from None


def _missing_folders(path: Path) -> list[Path]:
    """`path` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path.parent != path:
        missing.append(path)
        path = path.parent
    return missing


def leave_no_litter(run: Run) -> None:
    """Should this run stop on an error, remove the folders it created (OUT_DIR, STAGE_DIR, the lockfile's)
    that are still empty, and its OUT_DIR lock. Call before anything is made."""
    s = run.settings
    made = sorted({p for f in (s.out_dir, s.stage_dir, s.lock_file.parent) for p in _missing_folders(f)}, reverse=True)

    def tidy() -> None:
        _release(run)
        for folder in made:  # deepest first; a folder holding anything stays
            with contextlib.suppress(OSError):
                folder.rmdir()

    run.on_failure.append(tidy)


def _release(run: Run) -> None:
    """Remove the lock file while still holding its lock (a run taking it re-checks it is the file on disk)."""
    if run.out_dir_lock is not None:
        with contextlib.suppress(OSError):
            (run.settings.out_dir / LOCK_NAME).unlink()


def hold_out_dir(run: Run) -> None:
    """Take OUT_DIR for this run (a file lock the OS releases on any exit); a second run fails at once.

    Held until the process ends, so chained tasks (`invoke build push lock`) keep it throughout; the
    lock file is removed as the process ends (or the run fails), so no run leaves it behind.
    """
    if run.out_dir_lock is not None:
        return
    _writable_out_dir(run)
    path = run.settings.out_dir / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 300).decode("utf-8", "replace").strip() or "another run"
            os.close(fd)
            raise ConfigError(
                f"OUT_DIR: {run.settings.relative(run.settings.out_dir)} is in use by {holder}; "
                "wait for it to finish, or give this run its own OUT_DIR"
            ) from None
        if _is_on_disk(fd, path):
            break
        os.close(fd)  # its holder removed it as it ended, after this run opened it: take the new one
    os.ftruncate(fd, 0)
    os.write(fd, run.redact(f"pid {os.getpid()} ({run.command})\n").encode())
    run.out_dir_lock = fd  # closed by the OS when the process exits, however it exits
    atexit.register(_release, run)


def _is_on_disk(fd: int, path: Path) -> bool:
    try:
        found = path.stat()
    except OSError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (found.st_dev, found.st_ino)


def check(run: Run, *, building: bool, pushing: bool) -> str | None:
    """Everything checkable before the first build but the registry (see `registry_access`): paths, OUT_DIR
    held for the run, the builder (its path is returned when building), the oras choice.
    """
    s = run.settings
    leave_no_litter(run)
    packs.check_out_dir(s.out_dir, s.packs_dir)
    packs.check_out_dir(s.stage_dir, s.packs_dir, "STAGE_DIR")
    lockfile.check_writable_target(s.lock_file, s.packs_dir, dry_run=s.dry_run)
    lock_signer(run, releasing=pushing and not s.dry_run)  # REQUIRE_SIGNATURE and a bad key: before any build
    hold_out_dir(run)
    builder_path = None
    if building:
        from pack_publisher.sources import builder  # a push never builds: not imported on its path

        builder_path = builder.find_builder(s.builder_override, s.publish.search_path)
    if pushing:
        chosen_oras(s.publish)  # OCI_CLIENT=oras without oras is wrong in a dry run too
    return builder_path


def _warn_unused_token(run: Run) -> None:
    """GITHUB_TOKEN is used only with GITHUB_ACTOR (GitHub sets both): alone, say so rather than go anonymous."""
    options = run.settings.publish
    if options.github_token is not None and not options.github_actor and options.oci_password is None:
        run.warn(
            "GITHUB_TOKEN is set but GITHUB_ACTOR is not, so the token is not used; set GITHUB_ACTOR to its user "
            "(or use OCI_USERNAME/OCI_PASSWORD)"
        )


@contextmanager
def registry_access(run: Run) -> Iterator[VerifiedRegistry | str]:
    """The run's registry, opened once and owned until the block ends (every thread of the run uses it).

    A real push must reach it: a configuration problem is an error before anything is built. A dry run
    only consults it, briefly: if it cannot, the reason comes instead, never a failure.
    """
    s = run.settings
    if not s.dry_run:
        _warn_unused_token(run)
        with connect(s.registry, s.publish, run.redact, run.commands) as registry:
            yield registry
        return
    if s.org_is_placeholder:  # `local` is a real namespace on ghcr.io: asking would plan against a stranger's packs
        yield f"the org {s.org!r} is a placeholder: no registry was contacted; set OCI_ORG to ask {s.registry}"
        return
    try:
        consulted = connect(s.registry, s.publish, run.redact, run.commands, policy=CONSULT_POLICY)
    except PublisherError as exc:
        yield run.redact(exc.message)
        return
    with consulted:
        yield consulted


def lock_signer(run: Run, *, releasing: bool) -> LockSigner | None:
    """The signer of the lock entries (PACK_SIGNING_KEY), or None; REQUIRE_SIGNATURE without a key is an error."""
    s = run.settings
    if s.signing_key is None and not (s.require_signature and releasing):
        return None
    from pack_publisher.oci import signing  # imported here: `cryptography` only for runs that sign

    key = signing.release_key(
        s.signing_key.get_secret_value() if s.signing_key else None, s.require_signature, releasing
    )
    return signing.LockSigner(key, s.created) if key is not None and releasing else None
