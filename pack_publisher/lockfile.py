"""`packs.lock.json`: the published packs with the manifest digests consumers pin."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .oci_names import pack_name_problem
from .records import PublishedPack, write_atomic
from .settings import Settings

DRY_RUN_DIGEST = "DRY_RUN"
TOP_KEYS = ("version", "generated_at", "git_sha", "registry", "org", "repo", "packs")
PACK_KEYS = ("name", "file", "oci_ref", "digest")


def render(settings: Settings, published: list[PublishedPack]) -> dict[str, Any]:
    """The lockfile content, keys in a fixed order and packs sorted by name."""
    return {
        "version": settings.version,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_sha": settings.git_sha,
        "registry": settings.registry,
        "org": settings.org,
        "repo": settings.repo,
        "dry_run": any(p.dry_run for p in published),
        "dirty": any(p.dirty for p in published),  # some pack was built from uncommitted changes
        "packs": [
            {
                "name": p.name,
                "file": settings.relative(p.gtpack),
                "oci_ref": p.reference,
                "digest": p.digest,
                "pinned_ref": p.pinned_reference,
                "expected_digest": p.expected_digest,
                "pack_id": p.pack_id,
                "media_type": p.layer.media_type,
                "size": p.layer.size,
                "gtpack_sha256": p.layer.digest,
                "tags": p.tags,  # the tags serving this digest after the push
                "replaced": p.replaced,  # tag -> the digest this push moved it from
                "revision": p.git_sha + ("-dirty" if p.dirty else ""),
            }
            for p in sorted(published, key=lambda p: p.name)
        ],
    }


def write(settings: Settings, published: list[PublishedPack]) -> None:
    check_writable_target(settings.lock_file, settings.packs_dir)
    content = render(settings, published)
    try:
        write_atomic(settings.lock_file, (json.dumps(content, indent=2, ensure_ascii=False) + "\n").encode())
    except OSError as exc:
        raise ConfigError(f"LOCK_FILE: cannot write {settings.lock_file} ({exc.strerror})") from None


def read(path_text: str, data: bytes) -> dict[str, Any]:
    """Parse a lockfile and check its shape; one clear line when it is not one."""
    try:
        content = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path_text}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{path_text}: not a packs.lock.json (JSON nested too deeply)") from None
    if not isinstance(content, dict) or any(k not in content for k in TOP_KEYS):
        raise ConfigError(f"{path_text}: not a packs.lock.json (expected keys {', '.join(TOP_KEYS)})")
    packs = content["packs"]
    if not isinstance(packs, list) or not all(isinstance(p, dict) and all(k in p for k in PACK_KEYS) for p in packs):
        raise ConfigError(f"{path_text}: every entry of 'packs' needs {', '.join(PACK_KEYS)}")
    for entry in packs:
        _check_pack_name(path_text, entry["name"])
    return content


def _check_pack_name(path_text: str, name: object) -> None:
    """A pack name from a lockfile names files (`<name>.gtpack`): it must be a pack folder name, never a path."""
    problem = pack_name_problem(name) if isinstance(name, str) else f"{name!r} is not a string"
    if problem:
        raise ConfigError(f"{path_text}: pack name {problem}")


MAX_LOCKFILE_BYTES = 16 * 1024 * 1024  # far above any real lockfile; what is bigger is not one of ours


def check_writable_target(path: Path, packs_dir: Path) -> None:
    """Refuse to write the lockfile over a file that is not a lockfile, or among the pack sources.

    LOCK_FILE may point anywhere; overwriting a pack's pack.yaml or tasks.py with JSON would destroy it.
    An absent or empty file is fine.
    """
    if path.resolve().is_relative_to(packs_dir.resolve()):
        raise ConfigError(f"LOCK_FILE: {path} is inside PACKS_DIR {packs_dir}; write the lockfile elsewhere")
    if path.is_dir():
        raise ConfigError(f"LOCK_FILE: {path} is a directory")
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_LOCKFILE_BYTES + 1)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"LOCK_FILE: cannot read {path} ({exc.strerror})") from None
    if not data:
        return
    refusal = f"LOCK_FILE: {path} exists and is not a packs lockfile; not overwriting it (move it or set LOCK_FILE)"
    if len(data) > MAX_LOCKFILE_BYTES:
        raise ConfigError(refusal)
    try:
        read(str(path), data)
    except ConfigError:
        raise ConfigError(refusal) from None
