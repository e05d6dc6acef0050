"""What differs between the manifest a version tag already holds and the one a new build would push,
in words, with the way out: so a refusal says *why* the digests differ.

The usual case is a byte-identical archive built from a later commit: only the `revision` and `created`
annotations moved, and the way out is to release that version from the commit it was published from
(or to publish a new version). A changed archive (another layer) can only go out as a new version.
"""

from __future__ import annotations

import json
from typing import Any

from pack_publisher.oci.manifest import CREATED, REVISION, SOURCE
from pack_publisher.runtime.frozen import frozen

ANNOTATION_PREFIX = "org.opencontainers.image."
NEW_VERSION = "publish a new version"
SHOWN_VALUE = 40  # characters of an annotation value shown; a revision is shown as 12
SHOWN_KEYS = 6  # annotations (or manifest fields) named before "and N more"
DIGEST_LENGTH = 71  # sha256:<64 hex>


@frozen
class Changes:
    what: str  # "the archive is byte-identical; the annotations differ: revision (a -> b)"
    remedy: str  # "release 1.2.3 from the commit it was published from (a), or publish a new version"


def _json(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _layer(manifest: dict[str, Any]) -> dict[str, Any]:
    layers = manifest.get("layers")
    first = layers[0] if isinstance(layers, list) and layers else None
    return first if isinstance(first, dict) else {}


def _annotations(manifest: dict[str, Any]) -> dict[str, str]:
    found = manifest.get("annotations")
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def _printable(text: str) -> str:
    """A registry's text as one safe line: no control characters (a hostile manifest may hold any)."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _shown(key: str, value: object, limit: int = SHOWN_VALUE) -> str:
    if value is None:
        return "none"
    text = _printable(str(value))
    limit = 12 if key == REVISION else limit
    return text if len(text) <= limit else text[:limit] + "…"


def _listed(items: list[str]) -> str:
    more = f" and {len(items) - SHOWN_KEYS} more" if len(items) > SHOWN_KEYS else ""
    return ", ".join(items[:SHOWN_KEYS]) + more


def compare(published: bytes, ours: bytes, version: str) -> Changes:
    """The differences between the published manifest and ours, most telling first, and the way out."""
    old, new = _json(published), _json(ours)
    if old is None or new is None:
        return Changes("the published manifest is not a JSON object (not one this publisher wrote)", NEW_VERSION)
    old_layer, new_layer = _layer(old), _layer(new)
    parts = []
    layer_changed = old_layer.get("digest") != new_layer.get("digest")
    if layer_changed:
        old_digest = _shown("", old_layer.get("digest"), DIGEST_LENGTH)
        new_digest = _shown("", new_layer.get("digest"), DIGEST_LENGTH)
        parts.append(f"the archive changed (layer {old_digest} -> {new_digest})")
    else:
        parts.append("the archive is byte-identical")
    old_notes, new_notes = _annotations(old), _annotations(new)
    moved = sorted(k for k in old_notes.keys() | new_notes.keys() if old_notes.get(k) != new_notes.get(k))
    if moved:
        listed = _listed(
            [
                f"{_shown('', k.removeprefix(ANNOTATION_PREFIX))} "
                f"({_shown(k, old_notes.get(k))} -> {_shown(k, new_notes.get(k))})"
                for k in moved
            ]
        )
        parts.append(f"the annotations differ: {listed}")
    rest = sorted(k for k in old.keys() | new.keys() if k not in {"layers", "annotations"} and old.get(k) != new.get(k))
    if rest or (not layer_changed and old_layer != new_layer):
        parts.append(f"the manifest differs in {_listed([_shown('', k) for k in rest]) or 'the layer descriptor'}")
    remedy = NEW_VERSION
    old_revision = old_notes.get(REVISION)
    if not layer_changed and not rest and set(moved) <= {REVISION, CREATED, SOURCE} and old_revision:
        commit = _shown(REVISION, old_revision.removesuffix("-dirty")).removesuffix("…")
        source = (
            f" with the source {_shown(SOURCE, old_notes[SOURCE], 200)} (GITHUB_REPOSITORY)"
            if SOURCE in moved and SOURCE in old_notes
            else ""
        )
        remedy = (
            f"release {version} from the commit it was published from ({commit}, e.g. `git checkout v{version}`)"
            f"{source}, or {NEW_VERSION}"
        )
    return Changes("; ".join(parts), remedy)
