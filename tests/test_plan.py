"""The push plan, exhaustively and in-process: every combination of what the registry holds and the flags."""

from __future__ import annotations

import itertools

import pytest

from pack_publisher.oci.plan import LATEST, NOT_CONSULTED, Held, Kind, Seen, plan_pack

NEW = "sha256:" + "1" * 64
OLD = "sha256:" + "0" * 64
OTHER = "sha256:" + "2" * 64


def kinds(version: str, seen: Seen, *, latest: bool = True, force: bool = False) -> tuple[Kind, Kind | None]:
    plan = plan_pack(version, NEW, seen, latest=latest, force=force)
    return plan.version.kind, plan.latest.kind if plan.latest else None


def test_a_new_version_is_published_and_latest_created() -> None:
    plan = plan_pack("1.2.3", NEW, Seen(True), latest=True, force=False)
    assert (plan.version.kind, plan.latest and plan.latest.kind) == (Kind.PUBLISH, Kind.MOVE)
    assert plan.writes == ["1.2.3", LATEST] and plan.tags == ["1.2.3", LATEST] and plan.replaced == {}
    assert plan.version.describe() == f"publish {NEW} (new tag)"
    assert plan.latest is not None and plan.latest.describe() == f"move nothing -> {NEW} (new tag, at 1.2.3)"


def test_without_latest_the_tag_is_not_touched() -> None:
    plan = plan_pack("1.2.3", NEW, Seen(True, latest=Held(OLD, "9.0.0")), latest=False, force=True)
    assert plan.latest is None and plan.writes == ["1.2.3"] and plan.tags == ["1.2.3"]


def test_the_same_build_again_writes_nothing() -> None:
    plan = plan_pack("1.2.3", NEW, Seen(True, Held(NEW), Held(NEW, "1.2.3")), latest=True, force=False)
    assert kinds("1.2.3", Seen(True, Held(NEW), Held(NEW, "1.2.3"))) == (Kind.KEEP, Kind.KEEP)
    assert plan.writes == [] and plan.tags == ["1.2.3", LATEST]
    assert plan.version.describe() == f"already holds {NEW}"


@pytest.mark.parametrize("latest", [True, False])
def test_another_digest_under_the_version_is_refused_and_latest_left(latest: bool) -> None:
    seen = Seen(True, Held(OLD), Held(OTHER, "1.0.0"))
    plan = plan_pack("1.2.3", NEW, seen, latest=latest, force=False)
    assert plan.refused and plan.writes == [] and plan.tags == []
    assert plan.version.describe().startswith(f"REFUSED: holds {OLD} -> {NEW} (release tags are immutable")
    if latest:
        assert plan.latest is not None and plan.latest.kind is Kind.LEAVE
        assert plan.latest.describe() == f"leave at {OTHER} (the version tag was refused)"


def test_force_overwrites_naming_both_digests() -> None:
    plan = plan_pack("1.2.3", NEW, Seen(True, Held(OLD)), latest=False, force=True)
    assert plan.version.kind is Kind.OVERWRITE and plan.replaced == {"1.2.3": OLD}
    assert plan.version.describe() == f"overwrite {OLD} -> {NEW} (--force)"


@pytest.mark.parametrize(
    ("held", "version", "force", "expected", "why"),
    [
        ("1.2.2", "1.2.3", False, Kind.MOVE, "1.2.2 -> 1.2.3"),
        ("1.9.9", "2.0.0", False, Kind.MOVE, "1.9.9 -> 2.0.0"),
        ("1.2.3", "1.2.3", False, Kind.MOVE, "1.2.3 -> 1.2.3"),  # this version's earlier build, overwritten
        ("2.0.0-rc.1", "1.9.0", False, Kind.LEAVE, "it holds 2.0.0-rc.1, newer than 1.9.0; --force moves it back"),
        ("1.2.4", "1.2.3", False, Kind.LEAVE, "it holds 1.2.4, newer than 1.2.3; --force moves it back"),
        ("1.10.0", "1.9.0", False, Kind.LEAVE, "it holds 1.10.0, newer than 1.9.0; --force moves it back"),
        ("1.2.4", "1.2.3", True, Kind.MOVE, "backwards 1.2.4 -> 1.2.3, --force"),
        (None, "1.2.3", False, Kind.LEAVE, "it holds a manifest of unknown version; --force moves it"),
        ("not-a-version", "1.2.3", False, Kind.LEAVE, "it holds a manifest of unknown version; --force moves it"),
        (None, "1.2.3", True, Kind.MOVE, "from a manifest of unknown version, --force"),
    ],
)
def test_latest_moves_forward_in_semver_order_only(
    held: str | None, version: str, force: bool, expected: Kind, why: str
) -> None:
    plan = plan_pack(version, NEW, Seen(True, None, Held(OLD, held)), latest=True, force=force)
    assert plan.latest is not None and plan.latest.kind is expected and plan.latest.why == why
    assert (LATEST in plan.writes) == (expected is Kind.MOVE)
    assert (plan.replaced.get(LATEST) == OLD) == (expected is Kind.MOVE)


@pytest.mark.parametrize("force", [True, False])
@pytest.mark.parametrize("seen", [NOT_CONSULTED, Seen(True), Seen(True, None, Held(OLD, "0.1.0"))])
def test_a_prerelease_never_moves_latest(force: bool, seen: Seen) -> None:
    plan = plan_pack("2.0.0-rc.1", NEW, seen, latest=True, force=force)
    assert plan.latest is not None and plan.latest.kind is Kind.LEAVE
    assert plan.latest.why == "2.0.0-rc.1 is a pre-release; a pre-release never moves latest"
    assert LATEST not in plan.writes and LATEST not in plan.tags


def test_without_the_registry_every_tag_is_planned_as_written() -> None:
    plan = plan_pack("1.2.3", NEW, NOT_CONSULTED, latest=True, force=False)
    assert not plan.consulted and plan.writes == ["1.2.3", LATEST]
    assert plan.version.describe() == f"publish {NEW} (registry not consulted)"


def test_every_combination_is_consistent() -> None:
    """Invariants over every input: nothing is written under a refusal, every write and its old digest named."""
    helds = [None, Held(NEW, "1.2.3"), Held(OLD, "1.2.2"), Held(OLD, "1.2.4"), Held(OLD, None)]
    for version, tag, latest_held, latest, force, consulted in itertools.product(
        ["1.2.3", "1.2.3-beta.1"], helds, helds, [True, False], [True, False], [True, False]
    ):
        seen = Seen(consulted, tag, latest_held) if consulted else NOT_CONSULTED
        plan = plan_pack(version, NEW, seen, latest=latest, force=force)
        if plan.refused:
            assert plan.writes == [] and not force and tag is not None and tag.digest != NEW
        if tag is not None and tag.digest != NEW and consulted:
            assert plan.refused != force
        for action in plan.actions:
            if action.writes and action.old is not None:
                assert plan.replaced[action.tag] == action.old and action.old in action.describe()
            assert action.new == NEW
        if "-" in version and plan.latest is not None:
            assert plan.latest.kind is Kind.LEAVE
        if consulted and latest_held is not None and latest_held.version == "1.2.4" and not force and plan.latest:
            assert plan.latest.kind is not Kind.MOVE  # never backwards without --force
