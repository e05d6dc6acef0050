"""Pack source folders: discovery under PACKS_DIR, selection, `pack.yaml`, and the staged copy built."""

from __future__ import annotations

import codecs
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

import yaml

from pack_publisher.oci.names import MAX_REPOSITORY_LENGTH, is_semver, pack_name_problem
from pack_publisher.runtime.errors import ConfigError, PublisherError
from pack_publisher.runtime.frozen import frozen
from pack_publisher.runtime.values import Invalid, as_choice, as_optional_str, as_str

PACK_FILE = "pack.yaml"
# A pack.yaml is a few kilobytes; anything this big is a mistake (or an attack), not worth parsing.
MAX_PACK_FILE_BYTES = 1024 * 1024
# Folders the builder never packs; not worth copying into the staged tree either.
NOT_STAGED = {"dist", "target", ".git", "node_modules"}

Kind = Literal["application", "provider", "infrastructure", "library"]
KINDS: tuple[Kind, ...] = ("application", "provider", "infrastructure", "library")


@frozen(kw_only=True)
class PackMeta:
    """The fields of `pack.yaml` the publisher relies on; everything else passes through untouched (`extra`).
    Checked by hand in `_validate`: pydantic's import cost ~60 ms of a ~0.3 s command (issue 24)."""

    pack_id: str
    version: str
    kind: Kind
    publisher: str
    name: str | None = None
    description: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # the other fields, as parsed


def _semver(value: object) -> str:
    text = as_str(value)
    if not is_semver(text):
        raise Invalid(f"{text!r} is not a semantic version (X.Y.Z)")
    return text


# Each field's check, in the order they are checked (the first problem is the one reported).
_FIELDS: dict[str, Callable[[object], object]] = {
    "pack_id": as_str,
    "version": _semver,
    "kind": lambda value: as_choice(value, KINDS),
    "publisher": as_str,
    "name": as_optional_str,
    "description": as_optional_str,
}
_OPTIONAL = frozenset({"name", "description"})


@frozen
class PackSource:
    name: str  # the folder name: names the OCI repository and the .gtpack file
    path: Path
    meta: PackMeta
    text: str = field(default="", repr=False)  # pack.yaml as read and checked, staged from this
    fields: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # pack.yaml parsed
    warnings: tuple[str, ...] = ()  # worth telling the user, not worth stopping for


# libyaml when PyYAML has it (the wheels do): about four times faster than the pure-Python loader.
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_YAML_DEPTH = 64  # a pack.yaml nests two or three levels; libyaml's composer recurses in C without a limit


class _PackLoader(_FAST_LOADER):  # type: ignore[misc]
    """PyYAML's safe loader, refusing duplicate keys: YAML forbids them, PyYAML silently keeps the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable: the base class says so
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)  # type: ignore[no-any-return]


def _check_events(text: str) -> None:
    """Refuse aliases and deep nesting from the parser's events, before anything is composed.

    Aliases (`*name`) make recursive structures and billion-laughs bombs that no Ctrl-C stops. The
    parser is a state machine (no recursion), so this pass is safe on any input; composing is not.
    """
    depth = 0
    for event in yaml.parse(text, Loader=_FAST_LOADER):
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None,
                None,
                "aliases (*name) are not allowed in pack.yaml",
                event.start_mark,  # type: ignore[arg-type]
            )
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise RecursionError  # reported as "nested too deeply"
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _parse(text: str) -> Any:
    _check_events(text)
    return yaml.load(text, Loader=_PackLoader)  # noqa: S506 - a SafeLoader subclass


def _yaml_error(rel: str, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}" if mark is not None else ""
    return ConfigError(f"{rel}: invalid YAML{where}: {problem}")


def _read_pack_file(pack_file: Path, rel: str) -> str:
    """The text of pack.yaml, read once and bounded in size."""
    try:
        with pack_file.open("rb") as fh:
            raw = fh.read(MAX_PACK_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{rel}: missing") from None
    except OSError as exc:
        raise ConfigError(f"{rel}: cannot read: {exc.strerror}") from None
    if len(raw) > MAX_PACK_FILE_BYTES:
        raise ConfigError(f"{rel}: is over {MAX_PACK_FILE_BYTES // 1024} KiB; a pack.yaml is a few kilobytes")
    if raw.startswith(codecs.BOM_UTF8):
        raise ConfigError(f"{rel}: starts with a byte order mark (BOM); save it as UTF-8 without one")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{rel}: is not UTF-8 text (byte {exc.start})") from None


def _load(pack_file: Path, rel: str) -> tuple[str, dict[str, Any], PackMeta]:
    """Read and parse pack.yaml once: its text, its fields and the checked metadata."""
    text = _read_pack_file(pack_file, rel)
    try:
        data: Any = _parse(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(rel, exc) from None
    except RecursionError:
        raise ConfigError(f"{rel}: invalid YAML: nested too deeply") from None
    if data is None:
        raise ConfigError(f"{rel}: is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{rel}: must be a YAML mapping of fields, not {type(data).__name__}")
    meta = _validate(data, rel)
    if len(_VERSION_LINE.findall(text)) != 1:
        raise ConfigError(
            f"{rel}: needs exactly one top-level 'version: X.Y.Z' line (block style), where the release "
            "version is written"
        )
    return text, data, meta


def load_meta(pack_file: Path, rel: str) -> PackMeta:
    return _load(pack_file, rel)[2]


def _validate(data: dict[Any, Any], rel: str) -> PackMeta:
    """`data` as a PackMeta, or the first problem in pydantic's words (`missing required field 'kind'`)."""
    for odd_key in (key for key in data if not isinstance(key, str)):
        raise ConfigError(f"{rel}: field '{odd_key}': Keys should be strings")
    checked: dict[str, Any] = {}
    for name, check in _FIELDS.items():
        if name not in data:
            if name in _OPTIONAL:
                continue
            raise ConfigError(f"{rel}: missing required field '{name}'")
        try:
            checked[name] = check(data[name])
        except Invalid as exc:
            raise ConfigError(f"{rel}: field '{name}': {exc.message}") from None
    return PackMeta(**checked, extra={k: v for k, v in data.items() if k not in _FIELDS})


def discover(packs_dir: Path) -> list[str]:
    """Names of the pack folders under `packs_dir` (folders holding pack.yaml), sorted."""
    if not packs_dir.is_dir():
        raise ConfigError(f"PACKS_DIR: {packs_dir} is not a directory")
    return sorted(p.name for p in packs_dir.iterdir() if p.is_dir() and (p / PACK_FILE).is_file())


def misnamed_pack_files(folder: Path) -> list[Path]:
    """Files that look meant as pack.yaml but are not named so (pack.yml, Pack.yaml, PACK.YAML...)."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    return sorted(
        f for f in entries if f.name != PACK_FILE and f.name.lower() in {"pack.yaml", "pack.yml"} and f.is_file()
    )


def wanted_name(packs_dir: Path, given: str) -> str:
    """A --pack value as the folder name: `name/` (tab completion) and `packs/name` mean `name`."""
    name = given.rstrip("/")
    if "/" in name:
        path = Path(name)
        if path.parent.resolve() == packs_dir.resolve() or path.parent.name == packs_dir.name:
            return path.name
    return name


def _check_folder(packs_dir: Path, name: str) -> None:
    """Refuse a pack folder that is a symlink leading out of PACKS_DIR: its files are not this repository's."""
    path = packs_dir / name
    try:
        target = path.resolve(strict=True)
        root = packs_dir.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python 3.11)
        raise ConfigError(f"pack folder {name!r} cannot be resolved ({exc})") from None
    if not target.is_relative_to(root):
        raise ConfigError(f"pack folder {name!r} is a symlink to {target}, outside PACKS_DIR {root}")


def select(
    packs_dir: Path,
    wanted: list[str] | None,
    repository_prefix: str,
    display_root: Path,
    warn: Callable[[str], None] | None = None,
) -> list[PackSource]:
    """The packs to work on: all of them, or those named by --pack, each checked and parsed.

    A pack whose `pack_id` differs from its folder name carries a line in `warnings` for the caller to
    show; a folder left out for a misnamed pack.yaml is told to `warn`.
    """
    known = discover(packs_dir)
    if not wanted and warn is not None:
        for folder in sorted(p for p in packs_dir.iterdir() if p.is_dir() and p.name not in known):
            for found in misnamed_pack_files(folder):
                warn(f"{_shown(found, display_root)}: left out; rename it to {PACK_FILE} to make {folder.name} a pack")
    if not known:
        raise ConfigError(f"no packs found under {packs_dir} (a pack is a folder holding {PACK_FILE})")
    names = sorted({wanted_name(packs_dir, n) for n in wanted}) if wanted else known
    for given, name in zip(wanted or [], [wanted_name(packs_dir, n) for n in wanted or []], strict=True):
        if not name.strip():  # `--pack /`: nothing left of it once the slash is taken off
            raise ConfigError(f"--pack: {given!r} names no pack; give a pack folder name, or leave --pack out for all")
    for name in names:
        if "/" in name or name in {".", ".."}:
            raise ConfigError(f"--pack: {name!r} is not a pack folder name under PACKS_DIR {packs_dir}")
    unknown = [n for n in names if n not in known]
    for name in unknown:
        if name.lower() in known:
            raise ConfigError(f"unknown pack {name!r}; did you mean {name.lower()!r}?")
    for name in unknown:
        if (packs_dir / name).is_dir():
            misnamed = misnamed_pack_files(packs_dir / name)
            if misnamed:
                shown = _shown(misnamed[0], display_root)
                raise ConfigError(f"pack folder {packs_dir / name} has no {PACK_FILE}: rename {shown} to {PACK_FILE}")
            raise ConfigError(f"pack folder {packs_dir / name} has no {PACK_FILE}")
    if unknown:
        raise ConfigError(f"unknown pack {', '.join(map(repr, unknown))}; known packs: {', '.join(known)}")
    sources = []
    for name in names:
        problem = pack_name_problem(name)
        if problem:
            raise ConfigError(f"pack folder {problem}")
        if len(f"{repository_prefix}/{name}") > MAX_REPOSITORY_LENGTH:
            raise ConfigError(f"pack {name!r}: repository {repository_prefix}/{name} is over 255 characters")
        _check_folder(packs_dir, name)
        path = packs_dir / name
        rel = _shown(path / PACK_FILE, display_root)
        text, data, meta = _load(path / PACK_FILE, rel)
        warnings: tuple[str, ...] = ()
        if meta.pack_id != name:
            warnings = (
                f"{rel}: pack_id {meta.pack_id!r} differs from the folder name {name!r}, which names the "
                f"OCI repository and {name}.gtpack",
            )
        sources.append(PackSource(name=name, path=path, meta=meta, text=text, fields=data, warnings=warnings))
    return sources


def _shown(path: Path, display_root: Path) -> str:
    try:
        return path.relative_to(display_root).as_posix()
    except ValueError:
        return path.as_posix()


def check_out_dir(out_dir: Path, packs_dir: Path, name: str = "OUT_DIR") -> None:
    """Refuse an OUT_DIR (or STAGE_DIR) among the pack sources: a build would copy a pack into itself, or delete it.

    Call before anything is written there.
    """
    out, packs_root = out_dir.resolve(), packs_dir.resolve()
    if out.is_relative_to(packs_root):
        raise ConfigError(
            f"{name}: {out} is inside PACKS_DIR {packs_root}; build output must not land among the pack sources"
        )
    if packs_root.is_relative_to(out):
        raise ConfigError(f"{name}: {out} holds PACKS_DIR {packs_root}; builds would overwrite the pack sources")


_VERSION_LINE = re.compile(r"^version[ \t]*:[ \t]*(?P<value>[^#\n]*?)(?P<tail>[ \t]*(?:#.*)?)$", re.MULTILINE)


def with_version(text: str, version: str, parsed: dict[str, Any] | None = None) -> str:
    """`pack.yaml` text with only its top-level `version` value replaced (comments and order kept).

    `parsed` is `text` already parsed (PackSource.fields), so a big file is not parsed again.
    """
    matches = list(_VERSION_LINE.finditer(text))
    if len(matches) != 1:
        raise PublisherError("pack.yaml: cannot find exactly one top-level 'version:' line to set the version")
    m = matches[0]
    updated = f"{text[: m.start('value')]}{version}{text[m.end('value') :]}"
    try:
        before = parsed if parsed else _parse(text)
        after = _parse(updated)
    except (yaml.YAMLError, RecursionError):
        raise PublisherError("pack.yaml: setting the version made it invalid YAML") from None
    if (
        not isinstance(after, dict)
        or after.get("version") != version
        or {k: v for k, v in after.items() if k != "version"} != {k: v for k, v in before.items() if k != "version"}
    ):
        raise PublisherError("pack.yaml: setting the version changed more than the version field")
    return updated


def _link_target(path: Path, pack_root: Path, name: str) -> Path:
    """Where a symlink inside the pack leads; refused when it leaves the pack, is broken or loops."""
    shown = path.relative_to(pack_root)
    try:
        target = path.resolve(strict=True)
    except FileNotFoundError:
        target = path.resolve()
        if not target.is_relative_to(pack_root):
            raise ConfigError(f"pack {name!r}: symlink {shown} points outside the pack ({target})") from None
        raise ConfigError(f"pack {name!r}: symlink {shown} is broken") from None
    except (OSError, RuntimeError):  # ELOOP; Python 3.11 raises RuntimeError for a symlink loop
        raise ConfigError(f"pack {name!r}: symlink {shown} makes a loop") from None
    if not target.is_relative_to(pack_root):
        raise ConfigError(f"pack {name!r}: symlink {shown} points outside the pack ({target})")
    return target


def _copy_tree(src: Path, dst: Path, pack_root: Path, name: str, ancestors: frozenset[Path] = frozenset()) -> None:
    """Copy a pack folder, following symlinks only when they stay inside the pack.

    Written by hand because shutil.copytree cannot refuse a link that leaves the tree. `ancestors` are
    the real folders being copied above this one: a link back to one of them is a loop.
    """
    ancestors = ancestors | {src.resolve()}
    dst.mkdir(parents=True, exist_ok=True)
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False) and (entry.name in NOT_STAGED or entry.name.startswith(".")):
            continue
        if entry.is_symlink():
            target = _link_target(path, pack_root, name)
            if target.is_dir() and target in ancestors:
                raise ConfigError(f"pack {name!r}: symlink {path.relative_to(pack_root)} makes a loop")
        if path.is_dir():
            _copy_tree(path, dst / entry.name, pack_root, name, ancestors)
        elif path.is_file():
            shutil.copyfile(path, dst / entry.name)
        else:
            raise ConfigError(f"pack {name!r}: {path.relative_to(pack_root)} is not a regular file or folder")


def stage(pack: PackSource, stage_dir: Path, version: str) -> Path:
    """A fresh copy of the pack under `stage_dir` whose pack.yaml carries `version`; the source is untouched."""
    pack_root = pack.path.resolve()
    target = stage_dir.resolve()
    if target.is_relative_to(pack_root) or pack_root.is_relative_to(target):
        raise ConfigError(
            f"OUT_DIR: the staging folder {target} overlaps the folder of pack {pack.name!r} ({pack_root}); "
            "set OUT_DIR outside PACKS_DIR"
        )
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    _copy_tree(pack_root, stage_dir, pack_root, pack.name)
    if pack.text:  # the text that was checked, not whatever the file holds by now
        text, parsed = pack.text, pack.fields
    else:
        text, parsed = _read_pack_file(pack_root / PACK_FILE, PACK_FILE), None
    (stage_dir / PACK_FILE).write_text(with_version(text, version, parsed), encoding="utf-8")
    return stage_dir
