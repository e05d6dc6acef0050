"""Push built packs in two steps: plan every pack from what the registry holds (`plan`), print the
plan, then apply it and prove what landed.

Nothing is written unless every pack could be planned and none was refused. A pack's published
record is written only after the registry served back exactly the manifest that was composed under
every tag it should serve, with its blobs present, so a lockfile made from records never claims
more than the registry holds.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import cast

from pack_publisher.commands import consumers, preflight
from pack_publisher.commands.build import load_built
from pack_publisher.commands.plan import CONSULT_JOBS, Planned, dry_run, plan_all
from pack_publisher.commands.select import select_packs
from pack_publisher.config.run import Run
from pack_publisher.oci.descriptor import file_digest
from pack_publisher.oci.plan import LATEST
from pack_publisher.registry.transport import AttachRequest, LikelyPush, NotFound, PushOutcome, PushRequest
from pack_publisher.registry.verified import VerifiedRegistry
from pack_publisher.runtime.errors import PublisherError
from pack_publisher.runtime.frozen import frozen
from pack_publisher.runtime.parallel import beside, each, together
from pack_publisher.runtime.progress import SentBytes
from pack_publisher.state import records
from pack_publisher.state.records import BuiltPack, PublishedPack


@frozen
class PackResult:
    name: str
    reference: str
    status: str  # "published", "already published" or "failed"
    record: PublishedPack | None = None
    error: str | None = None
    sbom_line: str | None = None  # what became of the SBOM referrer, shown after the result line


def push_packs(run: Run, names: list[str] | None, *, force: bool) -> None:
    """`invoke push`: the built packs of the selection, planned, then published (or only planned: dry run)."""
    preflight.check(run, building=False, pushing=True)
    with consumers.anonymous_check(run) as check:
        with preflight.registry_access(run) as access:
            built = load_built(run, select_packs(run, names))
            publish(run, built, access, force=force, on_written=check.start, on_published=check.add)
        refused = check.report()
    consumers.enforce(run, refused, lock_written=False)


def publish(
    run: Run,
    built: list[BuiltPack],
    access: VerifiedRegistry | str,
    *,
    force: bool,
    on_written: Callable[[str, str], None] | None = None,
    on_published: Callable[[PublishedPack], None] | None = None,
) -> list[PackResult]:
    """Publish the built packs (or plan them, in a dry run); report every pack, then fail if any did not make it.

    Returns what each pack's push did (nothing in a dry run). `on_written` is told of each pack (name,
    manifest digest) once the registry holds its manifest, before its proof (the anonymous-pull check
    starts there, beside the proof); `on_published`, as soon as it is proven.
    """
    s = run.settings
    if s.dry_run:
        dry_run(run, built, access, force=force)
        return []
    if not isinstance(access, VerifiedRegistry):  # registry_access never gives a reason for a real push
        raise PublisherError(f"internal: a real push without its registry ({access})")
    results = push_all(
        run, built, access, latest=s.latest, force=force, on_written=on_written, on_published=on_published
    )
    write_step_summary(run, results)
    failed = [r.name for r in results if r.record is None]
    done = len(results) - len(failed)
    run.say(f"{done} of {len(results)} pack(s) published or already published at version {s.version}")
    if failed:
        raise PublisherError(
            f"{len(failed)} pack(s) not published: {', '.join(failed)}; {s.relative(s.lock_file)} "
            "was not updated. Fix the cause and re-run: published packs are skipped"
        )
    return results


def push_all(
    run: Run,
    built: list[BuiltPack],
    registry: VerifiedRegistry,
    *,
    latest: bool,
    force: bool,
    on_written: Callable[[str, str], None] | None = None,
    on_published: Callable[[PublishedPack], None] | None = None,
) -> list[PackResult]:
    """Plan every pack, then apply the plans, up to `jobs` at once; one failing pack does not stop the others.

    `jobs` bounds the packs uploading at once: what follows a pack's upload runs beside the next packs'
    uploads (as many at once as planning) instead of holding a push slot. That is a staged push's
    `commit` (the built-in client's manifests, a round trip or two of small requests; for oras, while
    other packs wait, the `oras cp -r` of everything but the archive) and the read-back, which only reads.
    Each archive is hashed again while its blobs go up, and a commit runs only if it still is the one
    built, so no tag or record names a file that is not, even when the registry already held its blob
    and nothing was uploaded to prove it. (oras moves the tags in its slot when no pack waits for it:
    there, every blob the registry receives is hashed by it, and the manifest names the build's digests.)
    """
    if len(built) == 1:  # one pack waits for every step of its push: its oras copy starts while the plan is made
        # (from this thread, which outlives the copy: `Commands.start`)
        registry.prepare(likely_push(run, built[0], latest=latest))
    planned = plan_all(run, built, registry, latest=latest, force=force)
    with beside(max(run.settings.jobs, CONSULT_JOBS), "prove") as prove_beside:
        return _apply(run, registry, planned, prove_beside, on_written, on_published)


def likely_push(run: Run, built: BuiltPack, *, latest: bool) -> LikelyPush:
    """The push of `built` if its plan is the usual one: a new version tag (and `latest`), its SBOM referrer."""
    tags = [run.settings.version, *([LATEST] if latest else [])]
    repository = run.settings.repository(built.name)
    return LikelyPush(repository, tags, built.gtpack.parent, with_referrer=built.sbom_referrer is not None)


def _apply(
    run: Run,
    registry: VerifiedRegistry,
    planned: list[Planned],
    prove_beside: Callable[..., Future[PackResult]],
    on_written: Callable[[str, str], None] | None,
    on_published: Callable[[PublishedPack], None] | None,
) -> list[PackResult]:
    """Write each pack (up to `jobs` at once), prove it beside the next writes, report in pack order."""

    writing = [item.built.name for item in planned if item.plan.writes]
    waited_for = set(writing[: max(0, len(writing) - run.settings.jobs)])  # a later pack wants their push slot

    def failed(item: Planned, exc: PublisherError) -> PackResult:
        return PackResult(item.built.name, item.built.reference, "failed", error=run.redact(exc.message))

    def prove(item: Planned, outcome: PushOutcome) -> PackResult:
        try:
            if outcome.commit is not None:  # the staged push's manifests, now that its bytes are proven
                outcome = outcome.commit()
            if on_written is not None:
                on_written(item.built.name, item.artifact.descriptor.digest)
            return prove_one(run, registry, item, outcome)
        except PublisherError as exc:
            return failed(item, exc)
        except (OSError, NotFound) as exc:  # oras' scratch layout, the SBOM's document, an index gone under oras
            return failed(item, unexpected(item, exc))

    def unexpected(item: Planned, exc: OSError | NotFound) -> PublisherError:
        if isinstance(exc, NotFound):
            return PublisherError(f"pack {item.built.name!r}: the registry no longer has {exc} (another writer?)")
        where = f" ({exc.filename})" if exc.filename else ""
        return PublisherError(f"pack {item.built.name!r}: {exc.strerror or exc}{where}")

    def write(item: Planned) -> Future[PackResult] | PackResult:
        built = item.built
        try:
            sent = SentBytes(built.layer.size)
            calls: list[Callable[[], object]] = [
                partial(
                    write_one,
                    registry,
                    item,
                    run.settings.repository(built.name),
                    sent,
                    slot_wanted=built.name in waited_for,
                ),
                partial(file_digest, built.gtpack),  # overlaps the upload: no wall time at any size
            ]
            with run.heartbeat.alive(f"uploading {built.name}", sent.describe):
                written, digest = together(calls)
            outcome = cast(PushOutcome, written)
            if digest != built.layer.digest:  # an upload was refused by the registry; a skipped one must be too
                raise PublisherError(f"pack {built.name!r}: {built.gtpack} changed since it was built; rebuild it")
        except PublisherError as exc:
            return failed(item, exc)
        except (OSError, NotFound) as exc:  # the archive, oras' scratch layout, the SBOM's document
            return failed(item, unexpected(item, exc))
        return prove_beside(prove, item, outcome)

    results = []
    for outcome in each(run.settings.jobs, planned, write):  # in pack order, as each is proven
        result = outcome.result() if isinstance(outcome, Future) else outcome
        run.say(result_line(result))
        if result.sbom_line:
            run.say(result.sbom_line)
        if result.record is not None and on_published is not None:
            on_published(result.record)
        results.append(result)
    return results


def write_one(
    registry: VerifiedRegistry,
    planned: Planned,
    repository: str,
    sent: SentBytes | None = None,
    *,
    slot_wanted: bool = False,
) -> PushOutcome:
    """Write what the plan says (blobs, then the manifest under each tag, then the SBOM referrer), staged: what
    follows the uploads may be left to the outcome's `commit`; `slot_wanted`: a later pack waits for this slot."""
    plan = planned.plan
    if not plan.writes:
        return PushOutcome(uploaded_blobs=0)
    document = consumers.document_path(planned.built)
    written = PushRequest(
        repository=repository,
        tags=plan.writes,
        gtpack=planned.built.gtpack,
        artifact=planned.artifact,
        on_sent=sent.update if sent is not None else None,
        referrer=AttachRequest(repository, planned.sbom, document) if planned.sbom is not None else None,
        staged=True,
        slot_wanted=slot_wanted,
    )
    return registry.write(written)


def prove_one(run: Run, registry: VerifiedRegistry, planned: Planned, outcome: PushOutcome) -> PackResult:
    """Read every tag the pack should serve back from the registry, then record it as published."""
    settings = run.settings
    built, artifact, plan = planned.built, planned.artifact, planned.plan
    repository = settings.repository(built.name)
    digest = artifact.descriptor.digest
    served = PushRequest(repository=repository, tags=plan.tags, gtpack=built.gtpack, artifact=artifact)
    sbom = planned.sbom
    document = consumers.document_path(built)
    # every tag it should serve, read back, whether written now or before, and beside it the SBOM's
    # referrer looked for (a read): one not listed is attached, or indexed again, once the pack is proven
    landed: Callable[[], object] = partial(registry.check_landed, served)
    attached = None
    if sbom is None:
        landed()
    else:
        listed: Callable[[], object] = partial(consumers.is_listed, registry, repository, sbom)
        if together([landed, listed])[1]:
            attached = "attached" if outcome.referrer_written else "already attached"
        else:  # written with the pack but not listed, or published before without it
            attached = consumers.attach_unlisted(registry, repository, sbom, document, outcome.referrer_written)
    status = "published" if plan.writes else "already published"
    sbom_line = f"sbom {built.reference}: {attached} {sbom.descriptor.digest}" if sbom is not None else None
    record = PublishedPack.of(
        built,
        digest=digest,
        pinned_reference=str(settings.target(built.name).pinned(digest)),
        tags=plan.tags,
        replaced=plan.replaced,
        transport=registry.name,
        uploaded_blobs=outcome.uploaded_blobs,
        already_published=not plan.writes,
        sbom_digest=sbom.descriptor.digest if sbom else None,
    )
    try:
        records.save(settings.out_dir, record)
    except records.WriteFailed as exc:  # the registry has it: say so, and that a re-run records it
        raise PublisherError(
            f"{exc.message}; {record.pinned_reference} is already published (tags {','.join(plan.tags)}), "
            "but not recorded: free space and re-run to complete it (nothing is pushed again)"
        ) from None
    return PackResult(built.name, built.reference, status, record=record, sbom_line=sbom_line)


def result_line(result: PackResult) -> str:
    if result.record is None:
        return f"FAILED {result.name}: {result.error}"
    record = result.record
    uploaded = record.uploaded_blobs
    blobs = f", {uploaded} blob(s) uploaded" if uploaded is not None else ""
    replaced = "".join(f", {tag} was {old}" for tag, old in record.replaced.items())
    tags = ",".join(record.tags)
    via = f"via {record.transport}{blobs}{replaced}"
    return f"{result.status} {result.reference} digest={record.digest} tags={tags} ({via})"


def write_step_summary(run: Run, results: list[PackResult]) -> None:
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
