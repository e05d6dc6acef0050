"""Push built packs in two steps: plan every pack from what the registry holds (`plan`), print the
plan, then apply it and prove what landed.

Nothing is written unless every pack could be planned and none was refused. A pack's published
record is written only after the registry served back exactly the manifest that was composed under
every tag it should serve, with its blobs present, so a lockfile made from records never claims
more than the registry holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar, cast

from . import records
from .artifact import VERSION, Artifact
from .content import VerifiedRegistry
from .descriptor import describe, file_digest
from .errors import PublisherError
from .plan import LATEST, Held, Kind, PackPlan, Seen, is_prerelease, plan_pack
from .records import BuiltPack, PublishedPack
from .run import Run
from .transports import PushRequest, Transports
from .transports.base import together

T = TypeVar("T")
R = TypeVar("R")
CONSULT_JOBS = 8  # packs planned at once, whatever --jobs is (see plan_all)


@dataclass(frozen=True)
class PackResult:
    name: str
    reference: str
    status: str  # "published", "already published" or "failed"
    record: PublishedPack | None = None
    error: str | None = None


@dataclass(frozen=True)
class Planned:
    built: BuiltPack
    artifact: Artifact
    plan: PackPlan


def load_artifact(built: BuiltPack) -> Artifact:
    """The composed artifact of a build, refusing a manifest file changed since."""
    manifest = built.manifest.read_bytes()
    descriptor = describe(built.manifest_descriptor.media_type, manifest)
    if descriptor != built.manifest_descriptor:
        raise PublisherError(f"pack {built.name!r}: {built.manifest} changed since the build; rebuild it")
    return Artifact(manifest=manifest, descriptor=descriptor, layer=built.layer)


def _version_of(manifest: bytes) -> str | None:
    try:
        value = json.loads(manifest).get("annotations", {}).get(VERSION)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def consult(registry: VerifiedRegistry, repository: str, version: str, digest: str, latest: bool) -> Seen:
    """What the registry holds under the tags a push of `version` may write."""
    held = registry.resolve(repository, version)
    latest_held = None
    if latest:  # for a pre-release too: the plan says where latest stays
        found = registry.resolve(repository, LATEST)
        if found is not None:
            known: str | None = None  # a pre-release never moves latest: what it holds needs no version
            if found.digest == digest:
                known = version
            elif not is_prerelease(version):
                known = _version_of(registry.manifest(repository, found.digest))
            latest_held = Held(found.digest, known)
    return Seen(True, Held(held.digest) if held else None, latest_held)


def plan_line(run: Run, built: BuiltPack, plan: PackPlan) -> list[str]:
    """The plan of one pack as shown: one line per tag."""
    repository = run.settings.repository(built.name)
    return [f"plan {run.settings.registry}/{repository}:{a.tag}: {a.describe()}" for a in plan.actions]


def each(jobs: int, items: Iterable[T], work: Callable[[T], R]) -> Iterator[R]:
    """`work` over `items`, up to `jobs` at once, results in order as they are ready.

    Ctrl-C (or a consumer stopping early) never waits for a stalled request or build.
    """
    executor = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="work")
    try:
        yield from executor.map(work, items)
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def plan_all(run: Run, built: list[BuiltPack], transports: Transports, *, latest: bool, force: bool) -> list[Planned]:
    """Consult the registry for every pack and print the plan; raise (nothing written) if any pack cannot go."""
    settings = run.settings

    def one(pack: BuiltPack) -> Planned | str:
        try:
            artifact = load_artifact(pack)
            registry = VerifiedRegistry(transports.get(), settings.registry)
            seen = consult(
                registry, settings.repository(pack.name), settings.version, artifact.descriptor.digest, latest
            )
            return Planned(
                pack,
                artifact,
                plan_pack(settings.version, artifact.descriptor.digest, seen, latest=latest, force=force),
            )
        except PublisherError as exc:
            return f"FAILED {pack.name}: {run.redact(exc.message)}"

    # Planning only reads (one request per tag; nothing is written until every pack is planned), so it asks
    # about CONSULT_JOBS packs at once even below --jobs, which bounds the pushes (and the builds).
    outcomes = list(each(max(settings.publish.jobs, CONSULT_JOBS), built, one))
    problems = []
    for outcome in outcomes:
        if isinstance(outcome, str):
            problems.append(outcome)
            run.say(outcome)
            continue
        for line in plan_line(run, outcome.built, outcome.plan):
            run.say(line)
        if outcome.plan.refused:
            problems.append(outcome.built.name)
    if problems:
        raise PublisherError(
            f"{len(problems)} of {len(built)} pack(s) cannot be published as planned; nothing was pushed"
        )
    return [o for o in outcomes if isinstance(o, Planned)]


def write_one(registry: VerifiedRegistry, planned: Planned, repository: str) -> int | None:
    """Write what the plan says (blobs, then the manifest under each tag); the blobs uploaded, if known."""
    plan = planned.plan
    if not plan.writes:
        return 0
    written = PushRequest(
        repository=repository, tags=plan.writes, gtpack=planned.built.gtpack, artifact=planned.artifact
    )
    return registry.transport.push(written).uploaded_blobs


def prove_one(run: Run, registry: VerifiedRegistry, planned: Planned, uploaded: int | None) -> PackResult:
    """Read every tag the pack should serve back from the registry, then record it as published."""
    settings = run.settings
    built, artifact, plan = planned.built, planned.artifact, planned.plan
    repository = settings.repository(built.name)
    digest = artifact.descriptor.digest
    served = PushRequest(repository=repository, tags=plan.tags, gtpack=built.gtpack, artifact=artifact)
    registry.check_landed(served)  # every tag it should serve, read back, whether written now or before
    status = "published" if plan.writes else "already published"
    record = PublishedPack.of(
        built,
        digest=digest,
        pinned_reference=f"{settings.registry}/{repository}@{digest}",
        tags=plan.tags,
        replaced=plan.replaced,
        transport=registry.name,
        uploaded_blobs=uploaded,
        already_published=not plan.writes,
    )
    try:
        records.save(settings.out_dir, record)
    except records.WriteFailed as exc:  # the registry has it: say so, and that a re-run records it
        raise PublisherError(
            f"{exc.message}; {record.pinned_reference} is already published (tags {','.join(plan.tags)}), "
            "but not recorded: free space and re-run to complete it (nothing is pushed again)"
        ) from None
    return PackResult(built.name, built.reference, status, record=record)


def push(run: Run, built: list[BuiltPack], transports: Transports, *, latest: bool, force: bool) -> list[PackResult]:
    """Plan every pack, then apply the plans, up to `jobs` at once; one failing pack does not stop the others.

    `jobs` bounds the writes. A pack's read-back only reads, so it runs beside the next pack's writes
    (as many at once as planning) instead of holding a push slot: a whole round trip per pack at any
    latency, and an oras process. Each archive is hashed again while its pack is written, so no record
    names a file that is not the one built, even when the registry already held its blob and nothing
    was uploaded to prove it.
    """
    planned = plan_all(run, built, transports, latest=latest, force=force)
    registry_name = run.settings.registry
    proofs = ThreadPoolExecutor(max_workers=max(run.settings.publish.jobs, CONSULT_JOBS), thread_name_prefix="prove")

    def failed(item: Planned, exc: PublisherError) -> PackResult:
        return PackResult(item.built.name, item.built.reference, "failed", error=run.redact(exc.message))

    def prove(item: Planned, uploaded: int | None) -> PackResult:
        try:
            return prove_one(run, VerifiedRegistry(transports.get(), registry_name), item, uploaded)
        except PublisherError as exc:
            return failed(item, exc)

    def write(item: Planned) -> Future[PackResult] | PackResult:
        built = item.built
        try:
            registry = VerifiedRegistry(transports.get(), registry_name)
            calls: list[Callable[[], object]] = [
                partial(write_one, registry, item, run.settings.repository(built.name)),
                partial(file_digest, built.gtpack),  # overlaps the upload: no wall time at any size
            ]
            written, digest = together(calls)
            uploaded = cast(int | None, written)
            if digest != built.layer.digest:  # an upload was refused by the registry; a skipped one must be too
                raise PublisherError(f"pack {built.name!r}: {built.gtpack} changed since it was built; rebuild it")
        except OSError as exc:
            return failed(item, PublisherError(f"pack {built.name!r}: cannot read {built.gtpack}: {exc.strerror}"))
        except PublisherError as exc:
            return failed(item, exc)
        return proofs.submit(prove, item, uploaded)

    results = []
    try:
        for outcome in each(run.settings.publish.jobs, planned, write):  # in pack order, as each is proven
            result = outcome.result() if isinstance(outcome, Future) else outcome
            run.say(result_line(result))
            results.append(result)
    except BaseException:
        proofs.shutdown(wait=False, cancel_futures=True)  # Ctrl-C never waits for a stalled read-back
        raise
    proofs.shutdown(wait=True)
    return results


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


def dry_run_plans(
    run: Run, built: list[BuiltPack], access: Transports | str, *, latest: bool, force: bool
) -> list[PackPlan]:
    """The plans a push would follow, from the registry when `access` reaches it (else why not); writes nothing."""
    settings = run.settings
    digests = [b.manifest_descriptor.digest for b in built]
    seen: list[Seen] | None = None
    reason = access if isinstance(access, str) else ""
    if isinstance(access, Transports):
        try:
            registry = VerifiedRegistry(access.get(), settings.registry)
            seen = [
                consult(registry, settings.repository(b.name), settings.version, d, latest)
                for b, d in zip(built, digests, strict=True)
            ]
        except PublisherError as exc:
            reason = run.redact(exc.message)
    if seen is None:
        run.say(f"registry not consulted ({reason}): the plan assumes every tag is new")
        seen = [Seen(consulted=False)] * len(built)
    plans = [plan_pack(settings.version, d, s, latest=latest, force=force) for d, s in zip(digests, seen, strict=True)]
    for one, plan in zip(built, plans, strict=True):
        for line in plan_line(run, one, plan):
            run.say(line)
    return plans


__all__ = ["Kind", "PackResult", "consult", "dry_run_plans", "plan_all", "prove_one", "push", "write_one"]
