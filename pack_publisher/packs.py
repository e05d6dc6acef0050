"""Pack source folders: discovery under PACKS_DIR, selection, `pack.yaml`, and the staged copy built."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from .errors import ConfigError, PublisherError
from .oci_names import MAX_REPOSITORY_LENGTH, PATH_COMPONENT_RE, is_semver

PACK_FILE = "pack.yaml"
# Folders the builder never packs; not worth copying into the staged tree either.
NOT_STAGED = {"dist", "target", ".git", "node_modules"}


class PackMeta(BaseModel):
    """The fields of `pack.yaml` the publisher relies on; everything else passes through untouched."""

    model_config = ConfigDict(extra="allow")

    pack_id: str
    version: str
    kind: Literal["application", "provider", "infrastructure", "library"]
    publisher: str
    name: str | None = None
    description: str | None = None

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if not is_semver(value):
            raise ValueError(f"{value!r} is not a semantic version (X.Y.Z)")
        return value


@dataclass(frozen=True)
class PackSource:
    name: str  # the folder name: names the OCI repository and the .gtpack file
    path: Path
    meta: PackMeta


def _yaml_error(rel: str, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}" if mark is not None else ""
    return ConfigError(f"{rel}: invalid YAML{where}: {problem}")


def load_meta(pack_file: Path, rel: str) -> PackMeta:
    try:
        text = pack_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{rel}: missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{rel}: cannot read: {exc}") from None
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(rel, exc) from None
    if data is None:
        raise ConfigError(f"{rel}: is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{rel}: must be a YAML mapping of fields, not {type(data).__name__}")
    try:
        return PackMeta.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        if err["type"] == "missing":
            raise ConfigError(f"{rel}: missing required field '{field}'") from None
        message = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{rel}: field '{field}': {message}") from None


def discover(packs_dir: Path) -> list[str]:
    """Names of the pack folders under `packs_dir` (folders holding pack.yaml), sorted."""
    if not packs_dir.is_dir():
        raise ConfigError(f"PACKS_DIR: {packs_dir} is not a directory")
    return sorted(p.name for p in packs_dir.iterdir() if p.is_dir() and (p / PACK_FILE).is_file())


def select(packs_dir: Path, wanted: list[str] | None, repository_prefix: str, display_root: Path) -> list[PackSource]:
    """The packs to work on: all of them, or those named by --pack, each checked and parsed."""
    known = discover(packs_dir)
    if not known:
        raise ConfigError(f"no packs found under {packs_dir} (a pack is a folder holding {PACK_FILE})")
    names = sorted(set(wanted)) if wanted else known
    unknown = [n for n in names if n not in known]
    for name in unknown:
        if (packs_dir / name).is_dir():
            raise ConfigError(f"pack folder {packs_dir / name} has no {PACK_FILE}")
    if unknown:
        raise ConfigError(f"unknown pack {', '.join(map(repr, unknown))}; known packs: {', '.join(known)}")
    sources = []
    for name in names:
        if not PATH_COMPONENT_RE.match(name):
            raise ConfigError(
                f"pack folder {name!r} is not a valid OCI repository name component "
                "(lowercase letters, digits and single '.', '_' or '-' separators)"
            )
        if len(f"{repository_prefix}/{name}") > MAX_REPOSITORY_LENGTH:
            raise ConfigError(f"pack {name!r}: repository {repository_prefix}/{name} is over 255 characters")
        path = packs_dir / name
        try:
            rel = (path / PACK_FILE).relative_to(display_root).as_posix()
        except ValueError:
            rel = (path / PACK_FILE).as_posix()
        sources.append(PackSource(name=name, path=path, meta=load_meta(path / PACK_FILE, rel)))
    return sources


_VERSION_LINE = re.compile(r"^version[ \t]*:[ \t]*(?P<value>[^#\n]*?)(?P<tail>[ \t]*(?:#.*)?)$", re.MULTILINE)


def with_version(text: str, version: str) -> str:
    """`pack.yaml` text with only its top-level `version` value replaced (comments and order kept)."""
    matches = list(_VERSION_LINE.finditer(text))
    if len(matches) != 1:
        raise PublisherError("pack.yaml: cannot find exactly one top-level 'version:' line to set the version")
    m = matches[0]
    updated = f"{text[: m.start('value')]}{version}{text[m.end('value') :]}"
    before, after = yaml.safe_load(text), yaml.safe_load(updated)
    if after.get("version") != version or {k: v for k, v in after.items() if k != "version"} != {
        k: v for k, v in before.items() if k != "version"
    }:
        raise PublisherError("pack.yaml: setting the version changed more than the version field")
    return updated


def _copy_tree(src: Path, dst: Path, pack_root: Path, name: str) -> None:
    """Copy a pack folder, following symlinks only when they stay inside the pack.

    Written by hand because shutil.copytree cannot refuse a link that leaves the tree.
    """
    dst.mkdir(parents=True, exist_ok=True)
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False) and (entry.name in NOT_STAGED or entry.name.startswith(".")):
            continue
        if entry.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(pack_root):
                raise ConfigError(
                    f"pack {name!r}: symlink {path.relative_to(pack_root)} points outside the pack ({target})"
                )
            if not target.exists():
                raise ConfigError(f"pack {name!r}: symlink {path.relative_to(pack_root)} is broken")
            if target.is_dir() and src.resolve().is_relative_to(target):
                raise ConfigError(f"pack {name!r}: symlink {path.relative_to(pack_root)} makes a loop")
        if path.is_dir():
            _copy_tree(path, dst / entry.name, pack_root, name)
        elif path.is_file():
            shutil.copyfile(path, dst / entry.name)
        else:
            raise ConfigError(f"pack {name!r}: {path.relative_to(pack_root)} is not a regular file or folder")


def stage(pack: PackSource, stage_dir: Path, version: str) -> Path:
    """A fresh copy of the pack under `stage_dir` whose pack.yaml carries `version`; the source is untouched."""
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    pack_root = pack.path.resolve()
    _copy_tree(pack_root, stage_dir, pack_root, pack.name)
    staged_file = stage_dir / PACK_FILE
    staged_file.write_text(with_version(staged_file.read_text(encoding="utf-8"), version), encoding="utf-8")
    return stage_dir
