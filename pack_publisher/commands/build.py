"""Build packs: stage each pack folder, run the Greentic builder, validate the archive, compose its
manifest, and record the build; then find those records again for a push.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pack_publisher.commands import consumers, preflight
from pack_publisher.commands.select import select_packs
from pack_publisher.config.run import Run
from pack_publisher.oci import manifest as artifact
from pack_publisher.oci.descriptor import file_digest
from pack_publisher.runtime.errors import ConfigError, PublisherError
from pack_publisher.runtime.parallel import each
from pack_publisher.sources import packs
from pack_publisher.sources.git import Git
from pack_publisher.state import records
from pack_publisher.state.records import BuiltPack

DIRTY_SUFFIX = "-dirty"  # added to the revision annotation of a pack built from uncommitted changes


SHOWN_CHANGES = 5


def uncommitted_changes(run: Run, *, strict: bool) -> list[Path]:
    """Uncommitted changes under PACKS_DIR; when git cannot tell, an error if `strict` (a real release)."""
    s = run.settings
    if not s.in_git:
        run.warn("not a git checkout: uncommitted changes cannot be detected; the revision is GIT_SHA's")
        return []
    changes = Git(run.commands, s.root).uncommitted(s.packs_dir)
    if changes is not None:
        return changes
    why = f"git cannot tell whether {s.relative(s.packs_dir)} has uncommitted changes (is PACKS_DIR in this checkout?)"
    if strict:
        raise ConfigError(f"PACKS_DIR: {why}; move the packs into the repository, or pass --allow-dirty")
    run.warn(f"{why}; the revision annotation may not match what is built")
    return []


def _listing(paths: list[Path], run: Run) -> str:
    shown = [run.settings.relative(p) for p in paths[:SHOWN_CHANGES]]
    more = f" and {len(paths) - SHOWN_CHANGES} more" if len(paths) > SHOWN_CHANGES else ""
    return ", ".join(shown) + more


def check_tree(run: Run, *, release: bool) -> list[Path]:
    """Uncommitted changes under PACKS_DIR: refused for a real release (unless --allow-dirty), else a warning."""
    s = run.settings
    changes = uncommitted_changes(run, strict=release and not s.dry_run and not s.allow_dirty)
    if not changes:
        return []
    where = f"uncommitted changes under {s.relative(s.packs_dir)}: {_listing(changes, run)}"
    if release and not s.dry_run and not s.allow_dirty:
        raise ConfigError(
            f"{where}; commit them, or pass --allow-dirty (ALLOW_DIRTY=1) to publish them marked "
            f"as {s.git_sha[:12]}{DIRTY_SUFFIX}"
        )
    run.warn(f"{where}; packs built from them are marked {s.git_sha[:12]}{DIRTY_SUFFIX}, not the committed revision")
    return changes


@contextmanager
def _stage_taken(run: Run, name: str) -> Iterator[None]:
    """The pack's folder in STAGE_DIR for this build alone: shards with their own OUT_DIR share STAGE_DIR."""
    stage_dir = run.settings.stage_dir
    try:
        stage_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(stage_dir / f".{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(f"STAGE_DIR: {stage_dir} is not writable ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PublisherError(
                f"pack {name!r}: another run is building it in {run.settings.relative(stage_dir)} right now"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def build_one(run: Run, pack: packs.PackSource, builder_path: str, dirty: bool) -> BuiltPack:
    """Stage, build, validate and compose one pack; the returned record is also saved to disk."""
    from pack_publisher.sources import archive, builder  # imported where a build needs them: a push never does

    s = run.settings
    records.forget_published(s.out_dir, pack.name)  # a new build invalidates the last push
    gtpack = s.out_dir / f"{pack.name}.gtpack"
    run.say(f"building {pack.name}…")
    with _stage_taken(run, pack.name), run.heartbeat.alive(f"building {pack.name}"):
        staged = packs.stage(pack, s.stage_dir / pack.name, s.version)
        builder.build_gtpack(run.commands, builder_path, pack.name, staged, gtpack)
    facts = archive.inspect_gtpack(gtpack)
    if facts.version != s.version:
        raise PublisherError(f"pack {pack.name!r}: the archive says version {facts.version!r}, expected {s.version!r}")
    composed = artifact.compose(
        facts.layer,
        gtpack.name,  # the layer title: the bare file name, never a runner's path
        artifact.pack_annotations(
            created=s.created,
            version=s.version,
            revision=s.git_sha + (DIRTY_SUFFIX if dirty else ""),
            source=s.source_url,
            title=pack.meta.name,
            description=pack.meta.description,
        ),
    )
    manifest_path = s.out_dir / f"{pack.name}.manifest.json"
    try:
        records.write_file(manifest_path, composed.manifest)
    except records.WriteFailed as exc:
        raise PublisherError(f"{exc.message}; nothing was published: free space and re-run") from None
    prepared = consumers.prepare(run, pack.name, gtpack, facts, composed)
    built = BuiltPack(
        name=pack.name,
        pack_id=facts.pack_id,
        version=facts.version,
        git_sha=s.git_sha,
        gtpack=gtpack,
        layer=composed.layer,
        manifest=manifest_path,
        manifest_descriptor=composed.descriptor,
        reference=s.reference(pack.name),
        dirty=dirty,
        gtpack_mtime_ns=gtpack.stat().st_mtime_ns,
        sbom=prepared[0] if prepared else None,
        sbom_referrer=prepared[1].descriptor if prepared else None,
    )
    records.save(s.out_dir, built)
    return built


def build(run: Run, selected: list[packs.PackSource], builder_path: str, *, release: bool = False) -> list[BuiltPack]:
    """Build the packs, up to `jobs` builders at once; lines in pack order; every failure is reported.

    One failing pack fails the run with its own error; several are each reported on a `FAILED` line.
    """
    s = run.settings
    changes = check_tree(run, release=release)

    def one(pack: packs.PackSource) -> BuiltPack | PublisherError:
        try:
            return build_one(run, pack, builder_path, any(p.is_relative_to(pack.path) for p in changes))
        except PublisherError as exc:
            return exc

    built, failed = [], []
    for pack, outcome in zip(selected, each(s.jobs, selected, one), strict=True):
        if isinstance(outcome, PublisherError):
            failed.append((pack.name, outcome))
            if len(selected) > 1:
                run.say(f"FAILED {pack.name}: {outcome.message}")
            continue
        marked = f" (uncommitted changes: revision {s.git_sha[:12]}{DIRTY_SUFFIX})" if outcome.dirty else ""
        run.say(
            f"built {outcome.name}: pack_id={outcome.pack_id} version={outcome.version} "
            f"size={outcome.layer.size} {outcome.layer.digest} -> {s.relative(outcome.gtpack)}{marked}"
        )
        built.append(outcome)
    if len(failed) == 1:
        raise failed[0][1]
    if failed:
        names = ", ".join(name for name, _ in failed)
        raise PublisherError(f"{len(failed)} of {len(selected)} pack(s) failed to build: {names}")
    return built


def build_packs(run: Run, names: list[str] | None, changed_since: str) -> list[BuiltPack]:
    """`invoke build`: preflight, select, build; nothing touches a registry."""
    builder_path = preflight.check(run, building=True, pushing=False)
    selected = select_packs(run, names, changed_since)
    if not selected:
        run.say(f"no pack changed since {changed_since}: nothing to build")
        return []
    return build(run, selected, builder_path or "")


def load_built(run: Run, selected: list[packs.PackSource]) -> list[BuiltPack]:
    """The build records of the selected packs, refusing missing, stale or other-target ones."""
    s = run.settings
    built = []
    for pack in selected:
        record = records.load(s.out_dir, pack.name, BuiltPack)
        if record is None:
            raise ConfigError(f"pack {pack.name!r} has not been built into {s.relative(s.out_dir)}; run `invoke build`")
        if record.version != s.version or record.git_sha != s.git_sha:
            raise ConfigError(
                f"pack {pack.name!r}: the build in {s.relative(s.out_dir)} is of version "
                f"{record.version} at {record.git_sha[:12]}, not {s.version} at {s.git_sha[:12]}; "
                "run `invoke build` again"
            )
        if record.reference != s.reference(pack.name):
            raise ConfigError(
                f"pack {pack.name!r}: the build in {s.relative(s.out_dir)} is for {record.reference}, not "
                f"{s.reference(pack.name)} (its annotations and lockfile entry name that target); "
                "run `invoke build` again with these settings"
            )
        if not archive_unchanged(record, hash_now=s.dry_run):
            raise ConfigError(f"pack {pack.name!r}: {record.gtpack} changed since it was built; rebuild it")
        if record.dirty and not s.dry_run and not s.allow_dirty:
            raise ConfigError(
                f"pack {pack.name!r} was built from uncommitted changes (revision {s.git_sha[:12]}{DIRTY_SUFFIX}); "
                "commit them and build again, or pass --allow-dirty to publish it so marked"
            )
        built.append(record)
    return built


def archive_unchanged(record: BuiltPack, *, hash_now: bool) -> bool:
    """Whether the archive still looks like the one built: its size and modification time, else its digest.

    A push hashes every archive again anyway, side by side with its upload (`publish.push`), and records
    nothing for one that changed; this early look only spares a push from writing anything for an
    archive plainly edited since. `hash_now` hashes in any case (a dry run has no upload to overlap).
    """
    try:
        found = record.gtpack.stat()
    except OSError:
        return False
    if not stat.S_ISREG(found.st_mode) or found.st_size != record.layer.size:
        return False
    if not hash_now and record.gtpack_mtime_ns is not None and found.st_mtime_ns == record.gtpack_mtime_ns:
        return True
    return file_digest(record.gtpack) == record.layer.digest
