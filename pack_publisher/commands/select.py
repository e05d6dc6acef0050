"""Which packs a task works on: --pack names, else every pack, narrowed by --changed-since."""

from __future__ import annotations

from pathlib import Path

from pack_publisher.config.run import Run
from pack_publisher.runtime.errors import ConfigError
from pack_publisher.sources import packs
from pack_publisher.sources.git import Git

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
