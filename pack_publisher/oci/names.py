"""The OCI naming grammar (distribution spec) for repositories, tags and media types, and semver."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import replace

from pack_publisher.runtime.frozen import frozen

PATH_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
# Every pattern ends with \Z, not $: `$` also matches before a final newline, so "name\n" would pass.
REPOSITORY_PATH_RE = re.compile(rf"^{PATH_COMPONENT}(?:/{PATH_COMPONENT})*\Z")
PATH_COMPONENT_RE = re.compile(rf"^{PATH_COMPONENT}\Z")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}\Z")
# host or IPv4 with an optional port; IPv6 literals in brackets
REGISTRY_RE = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:]+\])(?::[0-9]{1,5})?\Z"
)
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}\Z")
# https://semver.org/#is-there-a-suggested-regular-expression-regex-to-check-a-semver-string
SEMVER_RE = re.compile(
    r"^(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<prerelease>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+(?P<buildmetadata>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?\Z"
)
# distribution refuses repository names longer than this
MAX_REPOSITORY_LENGTH = 255
# A pack name also names files (`<pack>.gtpack`, `.<pack>.published.json.<random>` temp files); file
# names stop at 255 bytes, so a longer pack name would fail half-way through a build.
MAX_PACK_NAME_LENGTH = 128


def pack_name_problem(name: str) -> str | None:
    """Why `name` cannot be a pack name (an OCI path component that also names files), or None."""
    if not PATH_COMPONENT_RE.match(name):
        hint = f"; rename it to {name.lower()!r}" if PATH_COMPONENT_RE.match(name.lower()) else ""
        return (
            f"{name!r} is not a valid OCI repository name component "
            f"(lowercase letters, digits and single '.', '_' or '-' separators){hint}"
        )
    if len(name) > MAX_PACK_NAME_LENGTH:
        return f"{name[:40]!r}... is {len(name)} characters, over the {MAX_PACK_NAME_LENGTH}-character limit"
    return None


def is_semver(value: str) -> bool:
    return SEMVER_RE.match(value) is not None


def semver_problem(value: str) -> str | None:
    """Why `value` cannot be a published pack version (semver usable as an OCI tag), or None."""
    match = SEMVER_RE.match(value)
    if match is None:
        hint = "; drop the leading 'v'" if value.startswith("v") and is_semver(value[1:]) else ""
        return f"{value!r} is not a semantic version (X.Y.Z[-pre-release]){hint}"
    build = match.group("buildmetadata")
    if build is not None:
        core = value.split("+", 1)[0]
        suggestion = f"{core}-{build}" if "-" not in core else f"{core}.{build}"
        return (
            f"{value!r} carries build metadata ('+{build}'), which no OCI tag can hold ('+' is not allowed "
            f"in tags); use a pre-release instead, e.g. {suggestion!r}"
        )
    if not TAG_RE.match(value):
        return f"{value!r} is longer than an OCI tag may be (128 characters)"
    return None


@frozen
class Reference:
    """Where an artifact lives: `<registry>/<repository>[:<tag>][@<digest>]`, built in one place.

    `str()` is the form oras and the lockfile's `oci_ref`/`pinned_ref` use; `uri` the `oci://` form that
    Greentic's consumers (greentic-dist, greentic-bundle) accept.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.registry}/{self.repository}{tag}{digest}"

    def pinned(self, digest: str) -> Reference:
        """The same repository pinned by a manifest digest (no tag: what a consumer should pull)."""
        return replace(self, tag=None, digest=digest)

    @property
    def uri(self) -> str:
        return f"oci://{self}"


def is_loopback(host: str) -> bool:
    """True for this machine: `localhost` or a loopback address (127.0.0.0/8, ::1), brackets allowed."""
    name = host.strip("[]").lower()
    if name == "localhost":  # only the name itself: a subdomain of it resolves however DNS says
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
