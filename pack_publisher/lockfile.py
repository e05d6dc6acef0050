"""`packs.lock.json`: the published packs with the manifest digests consumers pin."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from .artifact import GTPACK_MEDIA_TYPE
from .errors import ConfigError
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
        "packs": [
            {
                "name": p.name,
                "file": settings.relative(p.gtpack),
                "oci_ref": p.reference,
                "digest": p.digest,
                "pinned_ref": p.pinned_reference,
                "expected_digest": p.expected_digest,
                "pack_id": p.pack_id,
                "media_type": GTPACK_MEDIA_TYPE,
                "size": p.size,
                "gtpack_sha256": f"sha256:{p.sha256}",
            }
            for p in sorted(published, key=lambda p: p.name)
        ],
    }


def write(settings: Settings, published: list[PublishedPack]) -> None:
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
    if not isinstance(content, dict) or any(k not in content for k in TOP_KEYS):
        raise ConfigError(f"{path_text}: not a packs.lock.json (expected keys {', '.join(TOP_KEYS)})")
    packs = content["packs"]
    if not isinstance(packs, list) or not all(isinstance(p, dict) and all(k in p for k in PACK_KEYS) for p in packs):
        raise ConfigError(f"{path_text}: every entry of 'packs' needs {', '.join(PACK_KEYS)}")
    return content
