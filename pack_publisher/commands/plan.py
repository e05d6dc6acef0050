"""Plan before writing: what the registry holds under each tag a push would write, and what the push
will do about it (`oci.plan` decides); a dry run stops here.
"""

from __future__ import annotations

import json

from pack_publisher.commands import consumers
from pack_publisher.config.run import Run
from pack_publisher.oci.descriptor import describe
from pack_publisher.oci.manifest import VERSION, Artifact
from pack_publisher.oci.manifest_changes import Changes, compare
from pack_publisher.oci.plan import LATEST, Held, PackPlan, Seen, is_prerelease, plan_pack
from pack_publisher.oci.referrers import Referrer
from pack_publisher.registry.verified import VerifiedRegistry
from pack_publisher.runtime.errors import PublisherError
from pack_publisher.runtime.frozen import frozen
from pack_publisher.runtime.parallel import each
from pack_publisher.state import lockfile, records
from pack_publisher.state.records import BuiltPack, PublishedPack

CONSULT_JOBS = 16  # packs planned at once, whatever --jobs is (see plan_all)


@frozen
class Planned:
    built: BuiltPack
    artifact: Artifact
    plan: PackPlan
    sbom: Referrer | None = None  # the SBOM's referrer manifest, attached after the pack is proven


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


def consult(
    registry: VerifiedRegistry, repository: str, version: str, digest: str, latest: bool, ours: bytes | None = None
) -> Seen:
    """What the registry holds under the tags a push of `version` may write.

    When the version tag holds another manifest, it is read and compared with `ours` (this build's manifest
    bytes), so a refusal can say what differs.
    """
    held = registry.resolve(repository, version)
    changes = None
    if held is not None and held.digest != digest and ours is not None:
        changes = _changes(registry, repository, held.digest, ours, version)
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
    return Seen(True, Held(held.digest, changes=changes) if held else None, latest_held)


def _changes(registry: VerifiedRegistry, repository: str, held: str, ours: bytes, version: str) -> Changes | None:
    """How the published manifest differs from ours; None when it cannot be read (the plan still holds)."""
    try:
        return compare(registry.manifest(repository, held), ours, version)
    except PublisherError:
        return None


def plan_line(run: Run, built: BuiltPack, plan: PackPlan, *, dry_run: bool = False) -> list[str]:
    """The plan of one pack as shown: one line per tag (in a dry run's words: `would publish`, ...)."""
    return [
        f"plan {run.settings.target(built.name, a.tag)}: {a.would() if dry_run else a.describe()}" for a in plan.actions
    ]


def plan_all(
    run: Run, built: list[BuiltPack], registry: VerifiedRegistry, *, latest: bool, force: bool
) -> list[Planned]:
    """Consult the registry for every pack and print the plan; raise (nothing written) if any pack cannot go."""
    settings = run.settings

    def one(pack: BuiltPack) -> Planned | str:
        try:
            artifact = load_artifact(pack)
            seen = consult(
                registry,
                settings.repository(pack.name),
                settings.version,
                artifact.descriptor.digest,
                latest,
                artifact.manifest,
            )
            return Planned(
                pack,
                artifact,
                plan_pack(settings.version, artifact.descriptor.digest, seen, latest=latest, force=force),
                consumers.load_referrer(pack, artifact),
            )
        except PublisherError as exc:
            return f"FAILED {pack.name}: {run.redact(exc.message)}"

    # Planning only reads (one request per tag; nothing is written until every pack is planned), so it asks
    # about CONSULT_JOBS packs at once even below --jobs, which bounds the pushes (and the builds).
    outcomes = list(each(max(settings.jobs, CONSULT_JOBS), built, one))
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


def dry_run_plans(
    run: Run, built: list[BuiltPack], access: VerifiedRegistry | str, *, latest: bool, force: bool
) -> list[PackPlan]:
    """The plans a push would follow, from the registry when `access` reaches it (else why not); writes nothing."""
    settings = run.settings
    digests = [b.manifest_descriptor.digest for b in built]
    seen: list[Seen] | None = None
    reason = access if isinstance(access, str) else ""
    if isinstance(access, VerifiedRegistry):
        try:
            seen = [
                consult(access, settings.repository(b.name), settings.version, d, latest, _manifest_bytes(b))
                for b, d in zip(built, digests, strict=True)
            ]
        except PublisherError as exc:
            reason = run.redact(exc.message)
    if seen is None:
        run.say(f"registry not consulted ({reason}): the plan assumes every tag is new")
        seen = [Seen(consulted=False)] * len(built)
    plans = [plan_pack(settings.version, d, s, latest=latest, force=force) for d, s in zip(digests, seen, strict=True)]
    for one, plan in zip(built, plans, strict=True):
        for line in plan_line(run, one, plan, dry_run=True):
            run.say(line)
    return plans


def _manifest_bytes(built: BuiltPack) -> bytes | None:
    """The composed manifest of a build, to compare with a published one; None if it cannot be read."""
    try:
        return built.manifest.read_bytes()
    except OSError:
        return None


def dry_run(
    run: Run, built: list[BuiltPack], access: VerifiedRegistry | str, *, force: bool = False
) -> list[PublishedPack]:
    """What a push would publish, with the digest it will have; reads the registry if it can, writes nothing."""
    s = run.settings
    plans = dry_run_plans(run, built, access, latest=s.latest, force=force)
    for one, plan in zip(built, plans, strict=True):
        held = f"holds {plan.version.old}; " if plan.version.old else ""
        run.say(f"{plan.verdict()} {one.reference} ({held}manifest digest {one.manifest_descriptor.digest})")
        if one.sbom_referrer is not None and not plan.refused:
            run.say(f"would attach the SBOM {one.name}.cdx.json to it (referrer digest {one.sbom_referrer.digest})")
    refused = [one.name for one, plan in zip(built, plans, strict=True) if plan.refused]
    if refused:
        raise PublisherError(f"a push would be refused for {', '.join(refused)} (see the plan above)")
    planned = []
    for one, plan in zip(built, plans, strict=True):
        record = PublishedPack.of(
            one,
            digest=lockfile.DRY_RUN_DIGEST,
            pinned_reference=None,
            tags=plan.tags,
            replaced=plan.replaced,
            transport="none (dry run)",
            dry_run=True,
            sbom_digest=one.sbom_referrer.digest if one.sbom_referrer else None,
        )
        records.save(s.out_dir, record)
        planned.append(record)
    return planned
