"""Read the facts a release needs from git: HEAD, its tags, its commit time and the origin remote."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .errors import ConfigError


def _git(root: Path, *args: str) -> str | None:
    """Run git in `root`; None when git fails (not a repository, no commits, no such remote)."""
    try:
        result = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False, timeout=30
        )
    except FileNotFoundError as exc:
        raise ConfigError("git is not installed; it is needed to read the commit being published") from exc
    if result.returncode != 0:
        return None
    return result.stdout.strip()


def head_sha(root: Path) -> str:
    sha = _git(root, "rev-parse", "--verify", "HEAD^{commit}")
    if not sha:
        raise ConfigError(f"{root} is not a git repository with a commit; the release annotations need HEAD")
    return sha


def head_tags(root: Path) -> list[str]:
    out = _git(root, "tag", "--points-at", "HEAD")
    return sorted(out.split()) if out else []


def head_commit_time(root: Path) -> int:
    out = _git(root, "show", "-s", "--format=%ct", "HEAD")
    if not out or not out.isdigit():
        raise ConfigError("cannot read the HEAD commit time from git")
    return int(out)


def origin_url(root: Path) -> str | None:
    return _git(root, "remote", "get-url", "origin") or None


_GITHUB_REMOTE_RE = re.compile(
    r"^(?:https?://(?:[^@/]+@)?github\.com/|ssh://git@github\.com/|git@github\.com:)"
    r"(?P<owner>[^/]+)/(?P<repo>[^/]+?)(?:\.git)?/?$"
)


def github_slug(url: str | None) -> tuple[str, str] | None:
    """(owner, repository) of a GitHub remote URL, whatever its form; credentials in it are dropped."""
    if not url:
        return None
    match = _GITHUB_REMOTE_RE.match(url.strip())
    return (match.group("owner"), match.group("repo")) if match else None
