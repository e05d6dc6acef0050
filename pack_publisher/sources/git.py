"""Read the facts a release needs from git: HEAD, its tags, its commit time, the origin, uncommitted changes."""

from __future__ import annotations

import re
from pathlib import Path

from pack_publisher.runtime.errors import ConfigError
from pack_publisher.runtime.processes import Commands

GIT_TIMEOUT_SECONDS = 30


class Git:
    """git in one working tree, run through the run's command runner (so it is echoed like the rest)."""

    def __init__(self, commands: Commands, root: Path) -> None:
        self.commands = commands
        self.root = root
        self._head: tuple[str, str] | bool | None = False  # not read yet

    def _git(self, *args: str) -> str | None:
        """git's output; None when git fails (not a repository, no commits, no such remote)."""
        try:
            done = self.commands.run(["git", "-C", str(self.root), *args], timeout=GIT_TIMEOUT_SECONDS)
        except FileNotFoundError:
            raise ConfigError("git is not installed; it is needed to read the commit being published") from None
        if done.returncode != 0 or done.expired:
            return None
        return done.stdout.decode("utf-8", errors="replace").strip()

    def toplevel(self) -> Path | None:
        """The top folder of the checkout holding `root`, resolved; None outside git."""
        top = self._git("rev-parse", "--show-toplevel")
        return Path(top).resolve() if top else None

    def _head_commit(self) -> tuple[str, str] | None:
        """(HEAD's commit, its commit time as printed), read once with one git process; None without one."""
        if self._head is False:
            out = self._git("rev-list", "-1", "--timestamp", "HEAD^{commit}", "--")
            parts = out.split() if out else []
            self._head = (parts[1], parts[0]) if len(parts) == 2 else None
        return self._head if isinstance(self._head, tuple) else None

    def head_sha(self) -> str | None:
        """HEAD's commit, or None outside a git checkout (or in one without commits)."""
        head = self._head_commit()
        return head[0] if head else None

    def head_tags(self) -> list[str]:
        out = self._git("tag", "--points-at", "HEAD")
        return sorted(out.split()) if out else []

    def head_commit_time(self) -> int:
        head = self._head_commit()
        out = head[1] if head else None
        if not out or not out.isdigit():
            raise ConfigError("cannot read the HEAD commit time from git")
        return int(out)

    def origin_url(self) -> str | None:
        return self._git("remote", "get-url", "origin") or None

    def uncommitted(self, folder: Path) -> list[Path] | None:
        """Paths under `folder` that differ from HEAD: modified, staged, deleted or untracked (not ignored).

        None when git cannot tell (the folder is outside the checkout, git refuses it): never "clean".
        """
        argv = [
            "git",
            "-C",
            str(self.root),
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=all",
            "--",
            str(folder),
        ]
        done = self.commands.run(argv, timeout=GIT_TIMEOUT_SECONDS)
        if done.returncode != 0 or done.expired:
            return None
        top = self.toplevel()  # porcelain paths are relative to it
        if top is None:
            return None
        entries = done.stdout.decode("utf-8", errors="replace").split("\0")
        paths: set[Path] = set()
        skip_next = False
        for entry in entries:
            if skip_next or len(entry) < 4:
                skip_next = False
                continue
            paths.add(Path(top) / entry[3:])
            skip_next = entry[0] in "RC"  # a rename or copy is followed by its original path
        return sorted(paths)

    def files(self, folder: Path) -> list[Path] | None:
        """The files under `folder` git tracks or would track (ignored ones left out); None outside git."""
        argv = ["git", "-C", str(folder), "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."]
        done = self.commands.run(argv, timeout=GIT_TIMEOUT_SECONDS)
        if done.returncode != 0:
            return None
        return [folder / name for name in done.stdout.decode("utf-8", errors="replace").split("\0") if name]

    def changed_since(self, ref: str) -> list[Path]:
        """Paths that differ between `ref` and the working tree (committed, staged, unstaged, untracked).

        Deleted and renamed files are listed under their old and new paths, so a removed pack shows too.
        """
        if not self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"):
            raise ConfigError(
                f"--changed-since: {ref!r} is not a commit in this checkout (fetch it first, e.g. "
                "`git fetch origin main`; CI needs `fetch-depth: 0`)"
            )
        top = self.toplevel()
        if top is None:
            raise ConfigError(f"--changed-since: git cannot list the changes in {self.root}")
        names: set[str] = set()
        for args in (
            ["diff", "--name-only", "-z", "--no-renames", ref, "--"],
            ["ls-files", "--others", "--exclude-standard", "-z", "--full-name"],
        ):
            done = self.commands.run(["git", "-C", str(top), *args], timeout=GIT_TIMEOUT_SECONDS)
            if done.returncode != 0:
                raise ConfigError(f"--changed-since: git {args[0]} failed: {done.stderr_tail.strip()[:200]}")
            names |= {n for n in done.stdout.decode("utf-8", errors="replace").split("\0") if n}
        return sorted(Path(top) / name for name in names)


# compiled on first use (the `re` module's cache): most runs name the source in the environment
_REMOTE_RE = (
    r"^(?:(?:https?|ssh|git)://(?:[^@/]+@)?(?P<host>[^/:]+)(?::\d+)?/|(?:[^@/]+@)?(?P<scp_host>[^/:]+):)"
    r"(?P<owner>[^/]+)/(?P<path>.+?)(?:\.git)?/?$"
)


def remote_slug(url: str | None) -> tuple[str, str, str] | None:
    """(host, owner, repository path) of a git remote URL, whatever its form; credentials in it are dropped.

    Any git host: the owner is the first path component (a GitLab group, a Gitea user).
    """
    if not url:
        return None
    match = re.match(_REMOTE_RE, url.strip())
    if not match:
        return None
    host = (match.group("host") or match.group("scp_host")).lower()
    return host, match.group("owner"), match.group("path")


def describe_origin(url: str) -> str:
    """An origin remote that names no host and owner, in words: `'../clone' (a local path, not a GitHub remote)`.

    Credentials in a URL are dropped from what is shown.
    """
    shown = "".join(c if c.isprintable() else "?" for c in re.sub(r"//[^/@]*@", "//", url.strip()))[:120]
    local = shown.startswith(("/", ".", "~", "file:")) or ":" not in shown or re.match(r"^[A-Za-z]:[\\/]", shown)
    what = "a local path" if local else "not a URL naming a host, an owner and a repository"
    return f"the origin remote {shown!r} ({what}, not a GitHub remote)"
