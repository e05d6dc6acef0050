"""`packs.lock.json` from the records of the last push (or dry run), or joined from the fragments of
a sharded release (`invoke lock --merge`).
"""

from __future__ import annotations

from pathlib import Path

from pack_publisher.commands import preflight
from pack_publisher.commands.select import select_packs
from pack_publisher.config.run import Run
from pack_publisher.runtime.errors import ConfigError
from pack_publisher.sources import packs
from pack_publisher.state import lockfile, records
from pack_publisher.state.records import PublishedPack


def lock_packs(run: Run, names: list[str] | None) -> Path:
    """`invoke lock`: the lockfile of the selected packs' last push (or dry run)."""
    return lock(run, select_packs(run, names))


def lock(run: Run, selected: list[packs.PackSource]) -> Path:
    """Write the lockfile from the last push (or dry run) of the selected packs."""
    s = run.settings
    if run.out_dir_lock is None:
        preflight.leave_no_litter(run)
    lockfile.check_writable_target(s.lock_file, s.packs_dir, dry_run=s.dry_run)
    preflight.hold_out_dir(run)  # records are read while no other run rewrites them
    published = []
    for pack in selected:
        record = records.load(s.out_dir, pack.name, PublishedPack)
        if record is None or record.version != s.version or record.git_sha != s.git_sha:
            raise ConfigError(
                f"pack {pack.name!r} has no push of version {s.version} at {s.git_sha[:12]} "
                "to record; run `invoke push` (or `invoke release --dry-run`) first"
            )
        if record.reference != s.reference(pack.name):
            raise ConfigError(
                f"pack {pack.name!r}: the last push was to {record.reference}, not {s.reference(pack.name)}; "
                "a lockfile names one registry, org and repo: set them as for that push"
            )
        published.append(record)
    if len({p.dry_run for p in published}) > 1:
        dry = ", ".join(p.name for p in published if p.dry_run)
        raise ConfigError(f"{dry}: only dry-run, while other packs were pushed; push them too, or lock them apart")
    sign = preflight.lock_signer(run, releasing=not any(p.dry_run for p in published))  # a dry run signs nothing
    lockfile.write(s, published, sign)
    signed = f", signed by key {sign.key_id}" if sign is not None else ""
    run.say(f"wrote {s.relative(s.lock_file)} ({len(published)} pack(s){signed})")
    return s.lock_file


def merge_fragments(run: Run, folder: Path, names: list[str] | None) -> None:
    """`invoke lock --merge DIR`: every fragment in DIR into LOCK_FILE; needs no git, version or org."""
    root = run.root
    packs_dir = run.path(run.env.packs_dir)
    lock_file = run.path(run.env.lock_file)
    known = packs.discover(packs_dir)
    expected = sorted({packs.wanted_name(packs_dir, n) for n in names}) if names else known
    unknown = [n for n in expected if n not in known]
    if unknown:
        raise ConfigError(f"--pack: unknown pack {', '.join(map(repr, unknown))}; known packs: {', '.join(known)}")
    merged = lockfile.merge((root / folder).resolve(), expected, lock_file, packs_dir)
    shown = lock_file.relative_to(root) if lock_file.is_relative_to(root) else lock_file
    run.say(f"wrote {shown} ({len(merged['packs'])} pack(s) from {folder})")
