"""`packs.lock.json`: the published packs with the manifest digests consumers pin."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pack_publisher.oci.names import pack_name_problem
from pack_publisher.runtime.errors import ConfigError
from pack_publisher.runtime.safe_files import check_writable_kind, read_regular
from pack_publisher.state.components import SCHEMA_VERSION, Signer, check_components, components
from pack_publisher.state.records import PublishedPack, write_atomic

DRY_RUN_DIGEST = "DRY_RUN"
TOP_KEYS = ("version", "generated_at", "git_sha", "registry", "org", "repo", "packs")
PACK_KEYS = ("name", "file", "oci_ref", "digest")


class LockTarget(Protocol):
    """What a lockfile is written for: the values it records and where it goes (the run's settings have them)."""

    @property
    def version(self) -> str: ...
    @property
    def git_sha(self) -> str: ...
    @property
    def registry(self) -> str: ...
    @property
    def org(self) -> str: ...
    @property
    def repo(self) -> str: ...
    @property
    def lock_file(self) -> Path: ...
    @property
    def packs_dir(self) -> Path: ...
    def relative(self, path: Path) -> str: ...
    def repository(self, pack_name: str) -> str: ...


def render(settings: LockTarget, published: list[PublishedPack], sign: Signer | None = None) -> dict[str, Any]:
    """The lockfile content, keys in a fixed order and packs sorted by name; `sign` signs each component."""
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
                "sbom_digest": p.sbom_digest,  # the CycloneDX SBOM's referrer manifest (None: the pack has none)
            }
            for p in sorted(published, key=lambda p: p.name)
        ],
        "schema_version": SCHEMA_VERSION,  # with `components`: what greentic-dist reads (components.py)
        "components": components(settings.registry, settings.repository, published, sign),
    }


def write(settings: LockTarget, published: list[PublishedPack], sign: Signer | None = None) -> None:
    check_writable_target(settings.lock_file, settings.packs_dir)
    content = render(settings, published, sign)
    try:
        write_atomic(settings.lock_file, (json.dumps(content, indent=2, ensure_ascii=False) + "\n").encode())
    except OSError as exc:
        done = [p.pinned_reference for p in published if p.pinned_reference]
        already = f"; already published: {', '.join(done)} (re-run `invoke lock` to complete it)" if done else ""
        raise ConfigError(f"LOCK_FILE: cannot write {settings.lock_file} ({exc.strerror}){already}") from None


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
    check_components(path_text, content)
    return content


def _check_pack_name(path_text: str, name: object) -> None:
    """A pack name from a lockfile names files (`<name>.gtpack`): it must be a pack folder name, never a path."""
    problem = pack_name_problem(name) if isinstance(name, str) else f"{name!r} is not a string"
    if problem:
        raise ConfigError(f"{path_text}: pack name {problem}")


MAX_LOCKFILE_BYTES = 16 * 1024 * 1024  # far above any real lockfile; what is bigger is not one of ours


def check_writable_target(path: Path, packs_dir: Path, *, dry_run: bool = False) -> None:
    """Refuse to write the lockfile over a file that is not a lockfile, or among the pack sources, or
    where it cannot be written; in a dry run, refuse to replace the lockfile of a real release.

    LOCK_FILE may point anywhere; overwriting a pack's pack.yaml or tasks.py with JSON would destroy it.
    An absent or empty file is fine. Checked before anything is built or pushed.
    """
    if path.resolve().is_relative_to(packs_dir.resolve()):
        raise ConfigError(f"LOCK_FILE: {path} is inside PACKS_DIR {packs_dir}; write the lockfile elsewhere")
    if path.is_dir():
        raise ConfigError(f"LOCK_FILE: {path} is a directory")
    check_writable_kind(path, "LOCK_FILE")  # a FIFO or a device is never opened, let alone replaced
    _probe_folder(path)
    refusal = f"LOCK_FILE: {path} exists and is not a packs lockfile; not overwriting it (move it or set LOCK_FILE)"
    try:
        data = read_regular(path, MAX_LOCKFILE_BYTES, "LOCK_FILE")
    except ConfigError as exc:
        raise ConfigError(refusal if "over" in exc.message else exc.message) from None
    if not data:
        return
    try:
        existing = read(str(path), data)
    except ConfigError:
        raise ConfigError(refusal) from None
    if dry_run and existing.get("dry_run") is False:
        raise ConfigError(
            f"LOCK_FILE: {path} records a real release ({existing.get('version')}); a dry run does not replace "
            "it: set LOCK_FILE for the dry run's lockfile (e.g. LOCK_FILE=dry-run.lock.json), or move it"
        )


def _probe_folder(path: Path) -> None:
    """The lockfile's folder exists (or can be made) and takes a new file: found now, not after a push."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"LOCK_FILE: cannot write in {path.parent} ({exc.strerror})") from None


def merge(fragments_dir: Path, expected: list[str] | None, target: Path, packs_dir: Path) -> dict[str, Any]:
    """Join the lock fragments of a sharded release (every `*.json` in `fragments_dir`) into `target`.

    The fragments must agree on version, git sha, registry, org and repo, be all dry runs or all real,
    and hold each pack once; with `expected`, every expected pack must be there and no other. The
    result has the shape and order of a single run's lockfile.
    """
    if not fragments_dir.is_dir():
        raise ConfigError(f"--merge: {fragments_dir} is not a directory")
    files = sorted(fragments_dir.glob("*.json"))
    if target.resolve().parent == fragments_dir.resolve():
        raise ConfigError(f"LOCK_FILE: {target} is among the fragments in {fragments_dir}; write it elsewhere")
    if not files:
        raise ConfigError(f"--merge: no lock fragments (*.json) in {fragments_dir}")
    fragments = [(path, _read_fragment(path)) for path in files]
    first = {**fragments[0][1], "file": fragments[0][0].name}
    owners: dict[str, str] = {}
    entries: list[dict[str, Any]] = []
    signed: list[dict[str, Any]] = []  # the fragments' components
    dirty = False
    for path, fragment in fragments:
        dirty = dirty or fragment.get("dirty") is True
        for key in ("version", "git_sha", "registry", "org", "repo", "dry_run"):
            if fragment.get(key) != first.get(key):
                what = "dry run and real release" if key == "dry_run" else key
                raise ConfigError(
                    f"--merge: the fragments disagree on {what}: {first['file']} has {first.get(key)!r}, "
                    f"{path.name} has {fragment.get(key)!r}"
                )
        for entry in fragment["packs"]:
            name = str(entry["name"])
            if name in owners:
                raise ConfigError(f"--merge: pack {name!r} is in both {owners[name]} and {path.name}")
            owners[name] = path.name
            entries.append(entry)
        signed.extend(check_components(str(path), fragment))
    check_writable_target(target, packs_dir, dry_run=bool(first.get("dry_run")))
    if expected is not None:
        missing = sorted(set(expected) - set(owners))
        if missing:
            raise ConfigError(
                f"--merge: no fragment holds {', '.join(missing)} (a shard failed or its fragment was not "
                "collected; re-run that shard, then merge again)"
            )
        unexpected = sorted(set(owners) - set(expected))
        if unexpected:
            listed = ", ".join(f"{name} (in {owners[name]})" for name in unexpected)
            raise ConfigError(f"--merge: not expected: {listed}")
    merged = {
        "version": first["version"],
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_sha": first["git_sha"],
        "registry": first["registry"],
        "org": first["org"],
        "repo": first["repo"],
        "dry_run": bool(first.get("dry_run")),
        "dirty": dirty,
        "packs": sorted(entries, key=lambda e: str(e["name"])),
        "schema_version": SCHEMA_VERSION,
        "components": sorted(signed, key=lambda e: str(e["name"])),
    }
    try:
        write_atomic(target, (json.dumps(merged, indent=2, ensure_ascii=False) + "\n").encode())
    except OSError as exc:
        raise ConfigError(f"LOCK_FILE: cannot write {target} ({exc.strerror})") from None
    return merged


def _read_fragment(path: Path) -> dict[str, Any]:
    data = read_regular(path, MAX_LOCKFILE_BYTES, "--merge")  # a link to /dev/zero must not fill the memory
    if data is None:
        raise ConfigError(f"{path}: the lock fragment vanished while merging")
    return read(str(path), data)
