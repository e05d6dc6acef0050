"""The steps the tasks compose: preflight, build (stage, run the builder, validate, compose), push,
dry run, lock. Each takes the run (`pack_publisher.run.Run`): settings, printer and command runner.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import archive, artifact, builder, lockfile, packs, publish, records
from .descriptor import file_digest
from .errors import ConfigError, PublisherError
from .gitinfo import Git
from .records import BuiltPack, PublishedPack
from .run import Run
from .transports import Transports, chosen_oras
from .transports.retry import RetryPolicy

LOCK_NAME = ".publisher.lock"
DIRTY_SUFFIX = "-dirty"  # added to the revision annotation of a pack built from uncommitted changes
SHOWN_CHANGES = 5
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


def hold_out_dir(run: Run) -> None:
    """Take OUT_DIR for this run (a file lock the OS releases on any exit); a second run fails at once.

    Held until the process ends, so chained tasks (`invoke build push lock`) keep it throughout.
    """
    if run.out_dir_lock is not None:
        return
    _writable_out_dir(run)
    path = run.settings.out_dir / LOCK_NAME
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
    os.ftruncate(fd, 0)
    os.write(fd, run.redact(f"pid {os.getpid()} ({run.command})\n").encode())
    run.out_dir_lock = fd  # closed by the OS when the process exits, however it exits


# What every pack depends on, relative to the repository root: a change here selects every pack.
SHARED_INPUTS = ("tasks.py", "pyproject.toml", "requirements-release.txt", ".python-version", "pack_publisher/")


def changed_packs(run: Run, ref: str) -> list[str] | None:
    """The pack folders changed between `ref` and the working tree; None when every pack is affected."""
    s = run.settings
    if not s.in_git:
        raise ConfigError("--changed-since: not a git checkout (GIT_SHA stands in for one): nothing to compare")
    git = Git(run.commands, s.root)
    top = Git(run.commands, s.packs_dir).toplevel() if s.packs_dir.is_dir() else None
    if top is None or top != git.toplevel():
        raise ConfigError(
            f"--changed-since: PACKS_DIR {s.packs_dir} is not in this git checkout, so its changes cannot be "
            "told; select the packs with --pack instead"
        )
    changed = git.changed_since(ref)
    shared = [p for p in changed if any(p.is_relative_to(s.root / name) for name in SHARED_INPUTS)]
    if shared:
        run.warn(f"{s.relative(shared[0])} changed since {ref}: every pack is selected")
        return None
    known = set(packs.discover(s.packs_dir))
    # a pack is a folder: files directly in PACKS_DIR (a README) belong to no pack
    names = {p.relative_to(s.packs_dir).parts[0] for p in changed if len(_parts_under(p, s.packs_dir)) >= 2}
    for gone in sorted(n for n in names if n not in known and not (s.packs_dir / n).is_dir()):
        run.warn(f"pack {gone!r} changed since {ref} but is gone (removed or renamed): nothing to build for it")
    return sorted(n for n in names if n in known)


def _parts_under(path: Path, folder: Path) -> tuple[str, ...]:
    return path.relative_to(folder).parts if path.is_relative_to(folder) else ()


def select_packs(run: Run, names: list[str] | None, changed_since: str | None = None) -> list[packs.PackSource]:
    """The selected packs (--pack, else all), narrowed to those changed since a ref when one is given."""
    s = run.settings
    if changed_since:
        changed = changed_packs(run, changed_since)
        if changed is not None:
            wanted = {packs.wanted_name(s.packs_dir, n) for n in names} if names else None
            chosen = [n for n in changed if wanted is None or n in wanted]
            if not chosen:
                return []
            names = chosen
    selected = packs.select(s.packs_dir, names, f"{s.org}/{s.repo}", s.root, run.warn)
    for pack in selected:
        for warning in pack.warnings:
            run.warn(warning)
    return selected


def preflight(run: Run, *, building: bool, pushing: bool) -> tuple[str | None, Transports | None]:
    """Everything checkable before the first build: paths, the builder, the transport, credentials.

    Returns the builder (when building) and the opened transports (when pushing for real).
    """
    s = run.settings
    packs.check_out_dir(s.out_dir, s.packs_dir)
    packs.check_out_dir(s.stage_dir, s.packs_dir, "STAGE_DIR")
    lockfile.check_writable_target(s.lock_file, s.packs_dir, dry_run=s.dry_run)
    hold_out_dir(run)
    builder_path = builder.find_builder(s.builder_override, s.publish.search_path) if building else None
    transports = None
    if pushing and not s.dry_run:
        _warn_unused_token(run)
        transports = Transports(s.registry, s.publish, run.redact, run.commands)
    elif pushing:
        chosen_oras(s.publish)  # OCI_CLIENT=oras without oras is wrong in a dry run too
    return builder_path, transports


def _warn_unused_token(run: Run) -> None:
    """GITHUB_TOKEN is used only with GITHUB_ACTOR (GitHub sets both): alone, say so rather than go anonymous."""
    options = run.settings.publish
    if options.github_token is not None and not options.github_actor and options.oci_password is None:
        run.warn(
            "GITHUB_TOKEN is set but GITHUB_ACTOR is not, so the token is not used; set GITHUB_ACTOR to its user "
            "(or use OCI_USERNAME/OCI_PASSWORD)"
        )


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
    s = run.settings
    records.forget_published(s.out_dir, pack.name)  # a new build invalidates the last push
    gtpack = s.out_dir / f"{pack.name}.gtpack"
    with _stage_taken(run, pack.name):
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
    for pack, outcome in zip(selected, publish.each(s.publish.jobs, selected, one), strict=True):
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


def _consulting_transports(run: Run) -> Transports | str:
    """Read-only access for a dry run's plan, or why there is none (never a reason to fail a dry run)."""
    s = run.settings
    try:
        return Transports(s.registry, s.publish, run.redact, run.commands, policy=CONSULT_POLICY)
    except PublisherError as exc:
        return run.redact(exc.message)


def dry_run(run: Run, built: list[BuiltPack], *, force: bool = False) -> list[PublishedPack]:
    """What a push would publish, with the digest it will have; reads the registry if it can, writes nothing."""
    s = run.settings
    access = _consulting_transports(run)
    try:
        plans = publish.dry_run_plans(run, built, access, latest=s.publish.latest, force=force)
    finally:
        if isinstance(access, Transports):
            access.close()
    refused = [one.name for one, plan in zip(built, plans, strict=True) if plan.refused]
    if refused:
        raise PublisherError(f"a push would be refused for {', '.join(refused)} (see the plan above)")
    planned = []
    for one, plan in zip(built, plans, strict=True):
        run.say(f"would push {one.reference} (manifest digest {one.manifest_descriptor.digest})")
        record = PublishedPack.of(
            one,
            digest=lockfile.DRY_RUN_DIGEST,
            pinned_reference=None,
            tags=plan.tags,
            replaced=plan.replaced,
            transport="none (dry run)",
            dry_run=True,
        )
        records.save(s.out_dir, record)
        planned.append(record)
    return planned


def lock(run: Run, selected: list[packs.PackSource]) -> Path:
    """Write the lockfile from the last push (or dry run) of the selected packs."""
    s = run.settings
    lockfile.check_writable_target(s.lock_file, s.packs_dir, dry_run=s.dry_run)
    hold_out_dir(run)  # records are read while no other run rewrites them
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
    lockfile.write(s, published)
    run.say(f"wrote {s.relative(s.lock_file)} ({len(published)} pack(s))")
    return s.lock_file


def push(run: Run, built: list[BuiltPack], transports: Transports | None, *, force: bool) -> None:
    """Publish the built packs (or plan them, in a dry run); report every pack, then fail if any did not make it."""
    s = run.settings
    if s.dry_run:
        dry_run(run, built, force=force)
        return
    if transports is None:
        raise PublisherError("internal: a real push needs the transports opened by preflight")
    try:
        results = publish.push(run, built, transports, latest=s.publish.latest, force=force)
    finally:
        transports.close()
    write_step_summary(run, results)
    failed = [r.name for r in results if r.record is None]
    done = len(results) - len(failed)
    run.say(f"{done} of {len(results)} pack(s) published or already published at version {s.version}")
    if failed:
        raise PublisherError(
            f"{len(failed)} pack(s) not published: {', '.join(failed)}; {s.relative(s.lock_file)} "
            "was not updated. Fix the cause and re-run: published packs are skipped"
        )


def write_step_summary(run: Run, results: list[publish.PackResult]) -> None:
    """Append a Markdown table of the packs to GITHUB_STEP_SUMMARY; failing to is a warning, not a failed release."""
    target = run.settings.step_summary
    if target is None:
        return
    rows = ["| pack | reference | digest | tags | size | status |", "|---|---|---|---|---|---|"]
    for r in results:
        digest = f"`{r.record.digest}`" if r.record else "-"
        tags = ", ".join(r.record.tags) if r.record else "-"
        size = f"{r.record.layer.size:,} B" if r.record else "-"
        status = r.status if r.record else f"failed: {r.error}"
        rows.append(f"| {r.name} | `{r.reference}` | {digest} | {tags} | {size} | {status.replace('|', '/')} |")
    text = f"### Greentic packs {run.settings.version}\n\n" + "\n".join(rows) + "\n\n"
    try:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(run.redact(text))
    except OSError as exc:
        run.warn(f"GITHUB_STEP_SUMMARY: cannot append to {target} ({exc.strerror}); the summary is left out")
