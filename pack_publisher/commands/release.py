"""`invoke release`: the whole pipeline in one block, as the tag-triggered job runs it."""

from __future__ import annotations

from pack_publisher.commands import consumers, preflight
from pack_publisher.commands.build import build
from pack_publisher.commands.lock import lock
from pack_publisher.commands.push import publish
from pack_publisher.commands.select import select_packs
from pack_publisher.config.run import Run


def release(run: Run, names: list[str] | None, changed_since: str, *, force: bool) -> None:
    """Check everything, then build, plan, push, verify and lock every selected pack (a dry run: plan only).

    The registry is opened before the first build, so a credential problem fails the release before
    minutes of building, and the same connection serves the whole run.
    """
    builder_path = preflight.check(run, building=True, pushing=True)
    with consumers.anonymous_check(run) as check:
        with preflight.registry_access(run) as access:
            selected = select_packs(run, names, changed_since)
            if not selected:
                run.say(f"no pack changed since {changed_since}: nothing to release, no lockfile written")
                return
            built = build(run, selected, builder_path or "", release=True)
            publish(run, built, access, force=force, on_written=check.start, on_published=check.add)
        refused = check.report()
    lock(run, selected)
    consumers.enforce(run, refused, lock_written=True)
