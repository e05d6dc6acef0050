"""Records that cross task boundaries (and processes): what a build made and what a push published.

They live as small JSON files beside the archives so `invoke push` and `invoke lock` can run as
separate commands after `invoke build`. Plain dataclasses, read and written by hand in the JSON shape
pydantic gave them (paths as strings, descriptors as objects): importing pydantic cost ~60 ms of a
~0.3 s command (issue 24). A record of the wrong shape or types is refused, never half-read.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import MISSING, asdict, field, fields
from pathlib import Path
from typing import Any, TypeVar

from pack_publisher.oci.descriptor import Descriptor
from pack_publisher.runtime.errors import PublisherError
from pack_publisher.runtime.frozen import frozen

RECORDS_DIR = "records"


@frozen(kw_only=True)
class BuiltPack:
    """One validated `.gtpack` and the artifact composed for it."""

    name: str
    pack_id: str
    version: str
    git_sha: str
    gtpack: Path
    layer: Descriptor  # the .gtpack as the OCI layer
    manifest: Path  # the exact manifest bytes to push
    manifest_descriptor: Descriptor  # its digest is the one consumers pin
    reference: str  # <registry>/<org>/<repo>/<pack>:<version>: the build is for this target only
    dirty: bool = False  # built from uncommitted changes in the pack's folder
    gtpack_mtime_ns: int | None = None  # with layer.size: a push refuses a plainly edited archive up front
    sbom: Descriptor | None = None  # OUT_DIR/<pack>.cdx.json (None: the archive holds no sbom.cbor)
    sbom_referrer: Descriptor | None = None  # the manifest attaching it to `manifest_descriptor`


@frozen(kw_only=True)
class PublishedPack:
    """A push that the registry confirmed (or, in a dry run, what would be pushed)."""

    name: str
    pack_id: str
    version: str
    git_sha: str
    reference: str
    digest: str  # the OCI manifest digest the registry serves, or "DRY_RUN"
    expected_digest: str
    pinned_reference: str | None
    tags: list[str]  # the tags serving this digest after the push (written by it or found there)
    replaced: dict[str, str] = field(
        default_factory=dict
    )  # tag -> the digest it held before this push moved or overwrote it
    dirty: bool = False
    gtpack: Path
    layer: Descriptor
    transport: str
    uploaded_blobs: int | None = 0  # None when the transport (oras) does not say
    already_published: bool = False
    dry_run: bool = False
    sbom_digest: str | None = None  # the SBOM referrer's manifest digest (attached, or predicted in a dry run)

    @classmethod
    def of(
        cls,
        built: BuiltPack,
        *,
        digest: str,
        pinned_reference: str | None,
        tags: list[str],
        replaced: dict[str, str] | None = None,
        transport: str,
        uploaded_blobs: int | None = 0,
        already_published: bool = False,
        dry_run: bool = False,
        sbom_digest: str | None = None,
    ) -> PublishedPack:
        """The record of publishing (or planning to publish) `built`: its identity, plus the outcome."""
        return cls(
            name=built.name,
            pack_id=built.pack_id,
            version=built.version,
            git_sha=built.git_sha,
            reference=built.reference,
            expected_digest=built.manifest_descriptor.digest,
            gtpack=built.gtpack,
            layer=built.layer,
            digest=digest,
            pinned_reference=pinned_reference,
            tags=tags,
            replaced=replaced or {},
            dirty=built.dirty,
            transport=transport,
            uploaded_blobs=uploaded_blobs,
            already_published=already_published,
            dry_run=dry_run,
            sbom_digest=sbom_digest,
        )


def write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same folder and rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class WriteFailed(PublisherError):
    """A record or manifest could not be written (a full disk, a read-only folder): the path and why."""

    def __init__(self, path: Path, exc: OSError) -> None:
        super().__init__(f"cannot write {path} ({exc.strerror or exc})")
        self.path = path


def write_file(path: Path, data: bytes) -> None:
    """`write_atomic`, failing as `WriteFailed` (one line naming the path) instead of an OSError."""
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise WriteFailed(path, exc) from None


Record = TypeVar("Record", BuiltPack, PublishedPack)


class Malformed(ValueError):
    """A record file's content is not a record of its kind."""


def _typed(kind: type) -> Callable[[object], Any]:
    """The check of a JSON value of exactly this type: `"size": true` or `"size": "12"` is no size."""

    def check(value: object) -> object:
        if type(value) is not kind:
            raise Malformed
        return value

    return check


def _optional(check: Callable[[object], Any]) -> Callable[[object], Any]:
    return lambda value: None if value is None else check(value)


def _descriptor(value: object) -> Descriptor:
    if not isinstance(value, dict):
        raise Malformed
    try:
        return Descriptor(_STR(value["media_type"]), _STR(value["digest"]), _INT(value["size"]))
    except KeyError:
        raise Malformed from None


def _str_list(value: object) -> list[str]:
    return [_STR(item) for item in _typed(list)(value)]


def _str_dict(value: object) -> dict[str, str]:
    return {_STR(k): _STR(v) for k, v in _typed(dict)(value).items()}


_STR = _typed(str)
_INT = _typed(int)
# How a record field is read back from JSON, by its annotation (a record holds only these types).
_READERS: dict[str, Callable[[object], Any]] = {
    "str": _STR,
    "str | None": _optional(_STR),
    "bool": _typed(bool),
    "int | None": _optional(_INT),
    "Path": lambda value: Path(_STR(value)),
    "Descriptor": _descriptor,
    "Descriptor | None": _optional(_descriptor),
    "list[str]": _str_list,
    "dict[str, str]": _str_dict,
}


def to_json(record: BuiltPack | PublishedPack) -> str:
    """The record as JSON, fields in order: paths as strings, descriptors as objects."""
    data = {f.name: _plain(getattr(record, f.name)) for f in fields(record)}
    return json.dumps(data, indent=2, ensure_ascii=False)


def _plain(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Descriptor):
        return asdict(value)
    return value


def from_json(model: type[Record], text: str) -> Record:
    """The record `text` holds; `Malformed` (a ValueError) when it is not one. Unknown fields are ignored."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise Malformed
    values: dict[str, Any] = {}
    for f in fields(model):
        if f.name in data:
            values[f.name] = _READERS[str(f.type)](data[f.name])
        elif f.default is MISSING and f.default_factory is MISSING:
            raise Malformed
    return model(**values)


def record_path(out_dir: Path, name: str, kind: str) -> Path:
    return out_dir / RECORDS_DIR / f"{name}.{kind}.json"


def save(out_dir: Path, record: BuiltPack | PublishedPack) -> Path:
    """Write a record; a disk that refuses it raises `WriteFailed`."""
    kind = "built" if isinstance(record, BuiltPack) else "published"
    path = record_path(out_dir, record.name, kind)
    write_file(path, (to_json(record) + "\n").encode())
    return path


def load(out_dir: Path, name: str, model: type[Record]) -> Record | None:
    kind = "built" if model is BuiltPack else "published"
    path = record_path(out_dir, name, kind)
    try:
        return from_json(model, path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, OSError):
        raise PublisherError(f"{path}: unreadable record; run `invoke build` again") from None


def forget_published(out_dir: Path, name: str) -> None:
    record_path(out_dir, name, "published").unlink(missing_ok=True)
