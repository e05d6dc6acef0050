"""The steps the tasks compose: build (stage, run the builder, validate, compose), dry run, lock."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from . import archive, artifact, builder, lockfile, packs, publish, records
from .descriptor import file_digest
from .errors import ConfigError, PublisherError
from .records import BuiltPack, PublishedPack
from .redact import Redactor
from .settings import Settings

Report = Callable[[str], None]
STAGE_DIR = "stage"


def _writable_out_dir(settings: Settings) -> None:
    try:
        (settings.out_dir / STAGE_DIR).mkdir(parents=True, exist_ok=True)
        probe = settings.out_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"OUT_DIR: {settings.out_dir} is not writable ({exc.strerror})") from None


def select_packs(settings: Settings, names: list[str] | None) -> list[packs.PackSource]:
    return packs.select(settings.packs_dir, names, f"{settings.org}/{settings.repo}", settings.root)


def build_one(settings: Settings, pack: packs.PackSource, builder_path: str, redactor: Redactor) -> BuiltPack:
    """Stage, build, validate and compose one pack; the returned record is also saved to disk."""
    records.forget_published(settings.out_dir, pack.name)  # a new build invalidates the last push
    staged = packs.stage(pack, settings.out_dir / STAGE_DIR / pack.name, settings.version)
    gtpack = settings.out_dir / f"{pack.name}.gtpack"
    builder.build_gtpack(builder_path, pack.name, staged, gtpack, redactor)
    facts = archive.inspect_gtpack(gtpack)
    if facts.version != settings.version:
        raise PublisherError(
            f"pack {pack.name!r}: the archive says version {facts.version!r}, expected {settings.version!r}"
        )
    composed = artifact.compose(
        facts.layer,
        gtpack.name,  # the layer title: the bare file name, never a runner's path
        artifact.pack_annotations(
            created=settings.created,
            version=settings.version,
            revision=settings.git_sha,
            source=settings.source_url,
            title=pack.meta.name,
            description=pack.meta.description,
        ),
    )
    manifest_path = settings.out_dir / f"{pack.name}.manifest.json"
    records.write_atomic(manifest_path, composed.manifest)
    built = BuiltPack(
        name=pack.name,
        pack_id=facts.pack_id,
        version=facts.version,
        git_sha=settings.git_sha,
        gtpack=gtpack,
        layer=composed.layer,
        manifest=manifest_path,
        manifest_descriptor=composed.descriptor,
        reference=settings.reference(pack.name),
    )
    records.save(settings.out_dir, built)
    return built


def build(settings: Settings, names: list[str] | None, redactor: Redactor, report: Report) -> list[BuiltPack]:
    selected = select_packs(settings, names)
    builder_path = builder.find_builder(settings.builder_override)
    packs.check_out_dir(settings.out_dir, settings.packs_dir)
    lockfile.check_writable_target(settings.lock_file, settings.packs_dir)  # before any build or push
    _writable_out_dir(settings)
    built = []
    for pack in selected:
        one = build_one(settings, pack, builder_path, redactor)
        report(
            f"built {one.name}: pack_id={one.pack_id} version={one.version} size={one.layer.size} "
            f"{one.layer.digest} -> {settings.relative(one.gtpack)}"
        )
        built.append(one)
    return built


def load_built(settings: Settings, names: list[str] | None) -> list[BuiltPack]:
    """The build records of the selected packs, refusing missing or stale ones."""
    lockfile.check_writable_target(settings.lock_file, settings.packs_dir)
    built = []
    for pack in select_packs(settings, names):
        record = records.load(settings.out_dir, pack.name, BuiltPack)
        if record is None:
            raise ConfigError(f"pack {pack.name!r} has not been built into {settings.out_dir}; run `invoke build`")
        if record.version != settings.version or record.git_sha != settings.git_sha:
            raise ConfigError(
                f"pack {pack.name!r}: the build in {settings.relative(settings.out_dir)} is of version "
                f"{record.version} at {record.git_sha[:12]}, not {settings.version} at {settings.git_sha[:12]}; "
                "run `invoke build` again"
            )
        if not record.gtpack.is_file() or file_digest(record.gtpack) != record.layer.digest:
            raise ConfigError(f"pack {pack.name!r}: {record.gtpack} changed since it was built; rebuild it")
        built.append(record)
    return built


def dry_run(settings: Settings, built: list[BuiltPack], report: Report) -> list[PublishedPack]:
    """What a push would publish, with the digest it will have; touches no registry."""
    planned = []
    for one in built:
        report(f"would push {one.reference} (manifest digest {one.manifest_descriptor.digest})")
        record = PublishedPack.of(
            one,
            digest=lockfile.DRY_RUN_DIGEST,
            pinned_reference=None,
            tags=[settings.version],
            transport="none (dry run)",
            dry_run=True,
        )
        records.save(settings.out_dir, record)
        planned.append(record)
    return planned


def lock(settings: Settings, names: list[str] | None, report: Report) -> Path:
    """Write the lockfile from the last push (or dry run) of the selected packs."""
    published = []
    for pack in select_packs(settings, names):
        record = records.load(settings.out_dir, pack.name, PublishedPack)
        if record is None or record.version != settings.version or record.git_sha != settings.git_sha:
            raise ConfigError(
                f"pack {pack.name!r} has no push of version {settings.version} at {settings.git_sha[:12]} "
                "to record; run `invoke push` (or `invoke release --dry-run`) first"
            )
        published.append(record)
    lockfile.write(settings, published)
    report(f"wrote {settings.relative(settings.lock_file)} ({len(published)} pack(s))")
    return settings.lock_file


def push(settings: Settings, built: list[BuiltPack], redactor: Redactor, report: Report, force: bool) -> None:
    """Publish the built packs; report every pack, then fail if any did not make it."""
    options = settings.publish
    results = publish.push(
        settings, built, latest=options.latest, force=force, jobs=options.jobs, redactor=redactor, report=report
    )
    write_step_summary(settings, results)
    failed = [r.name for r in results if r.record is None]
    done = len(results) - len(failed)
    report(f"{done} of {len(results)} pack(s) published or already published at version {settings.version}")
    if failed:
        raise PublisherError(
            f"{len(failed)} pack(s) not published: {', '.join(failed)}; {settings.relative(settings.lock_file)} "
            "was not updated. Fix the cause and re-run: published packs are skipped"
        )


def write_step_summary(settings: Settings, results: list[publish.PackResult]) -> None:
    """Append a Markdown table of the packs to GITHUB_STEP_SUMMARY when running in GitHub Actions."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    rows = ["| pack | reference | digest | size | status |", "|---|---|---|---|---|"]
    for r in results:
        digest = f"`{r.record.digest}`" if r.record else "-"
        size = f"{r.record.layer.size:,} B" if r.record else "-"
        status = r.status if r.record else f"failed: {r.error}"
        rows.append(f"| {r.name} | `{r.reference}` | {digest} | {size} | {status.replace('|', '/')} |")
    try:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(f"### Greentic packs {settings.version}\n\n" + "\n".join(rows) + "\n\n")
    except OSError as exc:
        raise PublisherError(f"GITHUB_STEP_SUMMARY: cannot append to {target} ({exc.strerror})") from None
