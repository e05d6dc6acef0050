"""The lockfile's `schema_version` and `components`: the part Greentic's own tools read.

greentic-dist (`pull --lock`, src/dist.rs `parse_lockfile`) reads only `components`: each entry's
`reference` (an `oci://` ref pinned by the manifest digest, the form greentic-bundle fetches), its
`digest` (which must equal the manifest digest it resolves to) and, when the release was signed, its
`signature` (see `signing`). The `packs` list beside it keeps serving this tool and people
(docs/lockfile.md says which field serves whom).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pack_publisher.oci.names import Reference
from pack_publisher.runtime.errors import ConfigError
from pack_publisher.state.records import PublishedPack

SCHEMA_VERSION = 1
COMPONENT_KEYS = ("name", "reference", "digest")
OCI_SCHEME = "oci://"
# name, reference, digest -> the entry's `signature`
Signer = Callable[[str, str, str], str]


def oci_reference(registry: str, repository: str, digest: str) -> str:
    """`oci://<registry>/<org>/<repo>/<pack>@sha256:<hex>`: what greentic-dist and greentic-bundle pull."""
    return Reference(registry, repository).pinned(digest).uri


def components(
    registry: str, repository_of: Callable[[str], str], published: Iterable[PublishedPack], sign: Signer | None
) -> list[dict[str, Any]]:
    """One entry per pack, in pack order; none for a dry run (its digests are not published)."""
    packs = sorted(published, key=lambda p: p.name)
    if any(p.dry_run for p in packs):
        return []
    entries = []
    for pack in packs:
        reference = oci_reference(registry, repository_of(pack.name), pack.digest)
        entry: dict[str, Any] = {"name": pack.name, "reference": reference, "digest": pack.digest}
        if sign is not None:
            entry["signature"] = sign(pack.name, reference, pack.digest)
        entries.append(entry)
    return entries


def check_components(path_text: str, content: dict[str, Any]) -> list[dict[str, Any]]:
    """The `components` of a lockfile, checked for shape; an older lockfile without them has none."""
    found = content.get("components", [])
    if not isinstance(found, list):
        raise ConfigError(f"{path_text}: 'components' is not a list")
    for entry in found:
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in COMPONENT_KEYS):
            raise ConfigError(f"{path_text}: every entry of 'components' needs {', '.join(COMPONENT_KEYS)} (strings)")
        if "signature" in entry and not isinstance(entry["signature"], str):
            raise ConfigError(f"{path_text}: component {str(entry['name'])[:80]!r}: 'signature' is not a string")
    return found
