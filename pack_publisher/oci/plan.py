"""What a push will do, decided before anything is written: per pack and per tag, from what the
registry holds, what was built and the flags. A pure function, so every case is tested in-process.

Rules (README, "What a push does to tags"):
- the version tag is published when absent, left when it already holds this build, refused when it
  holds another digest (release tags are immutable), overwritten with `--force`, old and new named;
- `latest` (asked for with `--latest`) moves only forward in semver order; backwards, or from a
  manifest of unknown version, only with `--force`; a pre-release never moves it;
- without a registry to consult (a dry run without access), every tag is planned as written.
"""

from __future__ import annotations

from enum import Enum

from pack_publisher.oci.manifest_changes import Changes
from pack_publisher.runtime.frozen import frozen

LATEST = "latest"


class Kind(Enum):
    PUBLISH = "publish"
    KEEP = "already published"
    REFUSE = "refuse"
    OVERWRITE = "overwrite"
    MOVE = "move"
    LEAVE = "leave"


@frozen
class Held:
    """What a tag holds in the registry: a manifest digest and the version its annotations give."""

    digest: str
    version: str | None = None
    changes: Changes | None = None  # how it differs from this build, when it was compared


@frozen
class Seen:
    """What the registry was found to hold for one pack; `consulted` False when it could not be asked."""

    consulted: bool
    version_tag: Held | None = None
    latest: Held | None = None


NOT_CONSULTED = Seen(consulted=False)


@frozen
class TagAction:
    tag: str
    kind: Kind
    new: str  # the digest of this build
    old: str | None = None  # what the tag held, when known and different
    why: str = ""

    @property
    def writes(self) -> bool:
        return self.kind in (Kind.PUBLISH, Kind.OVERWRITE, Kind.MOVE)

    def describe(self) -> str:
        """`<action> <digests> (<why>)`, the words shown in the plan."""
        if self.kind is Kind.PUBLISH:
            text = f"publish {self.new}"
        elif self.kind is Kind.KEEP:
            text = f"already holds {self.new}"
        elif self.kind is Kind.LEAVE:
            text = f"leave at {self.old}" if self.old else "leave unset"
        else:
            verb = {Kind.REFUSE: "REFUSED: holds", Kind.OVERWRITE: "overwrite", Kind.MOVE: "move"}[self.kind]
            text = f"{verb} {self.old or 'nothing'} -> {self.new}"
        return f"{text} ({self.why})" if self.why else text

    def would(self) -> str:
        """The words of a dry run's plan: `would <verb> (<why>): <digests>`; never 'publish' for a skipped tag."""
        why = f" ({self.why})" if self.why else ""
        if self.kind is Kind.PUBLISH:
            return f"would publish{why}: {self.new}"
        if self.kind is Kind.KEEP:
            return f"would skip (already published): holds {self.new}"
        if self.kind is Kind.REFUSE:
            return f"would refuse{why}: holds {self.old}, this build is {self.new}"
        if self.kind is Kind.LEAVE:
            return f"would leave{why}: " + (f"at {self.old}" if self.old else "unset")
        verb = "would overwrite" if self.kind is Kind.OVERWRITE else "would move"
        return f"{verb}{why}: {self.old or 'nothing'} -> {self.new}"


@frozen
class PackPlan:
    version: TagAction
    latest: TagAction | None
    consulted: bool

    @property
    def refused(self) -> bool:
        return self.version.kind is Kind.REFUSE

    def verdict(self) -> str:
        """What a dry run says of the whole pack: would publish, skip, overwrite or refuse it."""
        if self.refused:
            return "would refuse (release tags are immutable)"
        if self.version.kind is Kind.OVERWRITE:
            return "would overwrite (--force)"
        if self.version.kind is Kind.KEEP:
            moved = [a.tag for a in self.actions if a.writes]
            return "would skip (already published)" + (f", would move {', '.join(moved)} to it" if moved else "")
        return "would publish"

    @property
    def actions(self) -> list[TagAction]:
        return [self.version, *([self.latest] if self.latest else [])]

    @property
    def writes(self) -> list[str]:
        """The tags this push writes, in order (the version tag first)."""
        return [a.tag for a in self.actions if a.writes]

    @property
    def tags(self) -> list[str]:
        """The tags serving this build once the plan is applied (recorded in the lockfile)."""
        if self.refused:
            return []
        return [a.tag for a in self.actions if a.kind is not Kind.LEAVE]

    @property
    def replaced(self) -> dict[str, str]:
        """Tag -> the digest it held before this push moved or overwrote it."""
        return {a.tag: a.old for a in self.actions if a.writes and a.old}


def is_prerelease(version: str) -> bool:
    import semver  # only where `latest` is weighed: a push without --latest never imports it

    return semver.Version.parse(version).prerelease is not None


def _newer(version: str, than: str | None) -> int | None:
    """1 when `version` is newer than `than`, 0 equal, -1 older; None when `than` is not a version."""
    import semver

    if than is None or not semver.Version.is_valid(than):
        return None
    return int(semver.Version.parse(version).compare(than))


def plan_pack(version: str, digest: str, seen: Seen, *, latest: bool, force: bool) -> PackPlan:
    """The plan for one pack at `version` whose build has manifest `digest`."""
    tag = _version_tag(version, digest, seen, force)
    move = _latest(version, digest, seen, force, tag) if latest else None
    return PackPlan(tag, move, seen.consulted)


def _version_tag(version: str, digest: str, seen: Seen, force: bool) -> TagAction:
    if not seen.consulted:
        return TagAction(version, Kind.PUBLISH, digest, why="registry not consulted")
    held = seen.version_tag
    if held is None:
        return TagAction(version, Kind.PUBLISH, digest, why="new tag")
    if held.digest == digest:
        return TagAction(version, Kind.KEEP, digest)
    what = f"; {held.changes.what}" if held.changes else ""
    if force:
        return TagAction(version, Kind.OVERWRITE, digest, held.digest, why=f"--force{what}")
    remedy = held.changes.remedy if held.changes else "publish a new version"
    return TagAction(
        version,
        Kind.REFUSE,
        digest,
        held.digest,
        why=f"release tags are immutable{what}: {remedy}, or pass --force to overwrite",
    )


def _latest(version: str, digest: str, seen: Seen, force: bool, version_tag: TagAction) -> TagAction:
    def leave(why: str) -> TagAction:
        held = seen.latest
        return TagAction(LATEST, Kind.LEAVE, digest, held.digest if held else None, why=why)

    if is_prerelease(version):
        return leave(f"{version} is a pre-release; a pre-release never moves latest")
    if version_tag.kind is Kind.REFUSE:
        return leave("the version tag was refused")
    if not seen.consulted:
        return TagAction(LATEST, Kind.MOVE, digest, why="registry not consulted")
    held = seen.latest
    if held is None:
        return TagAction(LATEST, Kind.MOVE, digest, why=f"new tag, at {version}")
    if held.digest == digest:
        return TagAction(LATEST, Kind.KEEP, digest)
    order = _newer(version, held.version)
    if order is None:
        if force:
            return TagAction(LATEST, Kind.MOVE, digest, held.digest, why="from a manifest of unknown version, --force")
        return leave("it holds a manifest of unknown version; --force moves it")
    if order >= 0:
        return TagAction(LATEST, Kind.MOVE, digest, held.digest, why=f"{held.version} -> {version}")
    if force:
        return TagAction(LATEST, Kind.MOVE, digest, held.digest, why=f"backwards {held.version} -> {version}, --force")
    return leave(f"it holds {held.version}, newer than {version}; --force moves it back")
