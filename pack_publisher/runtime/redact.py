"""Hide every secret the settings know from text the tool prints or relays."""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterable, Mapping
from urllib.parse import quote

MASK = "***"


class SecretStr:
    """A secret value that never prints: `repr` and `str` show a mask, `get_secret_value()` the value.

    Hand-written, as pydantic's was: importing pydantic cost ~60 ms of a ~0.3 s command (issue 24).
    Shown as pydantic showed it (`**********`, empty when empty), equal by value, hashable.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "**********" if self._value else ""

    def __repr__(self) -> str:
        return f"SecretStr({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __len__(self) -> int:
        return len(self._value)


# Environment variables that may hold a secret: kept from child processes, and masked even when the
# settings could not be read. Compared case-insensitively (see is_secret_env_name): the settings read
# `oci_password` as OCI_PASSWORD, so every spelling is the same secret.
SECRET_ENV_VARS = (
    "OCI_PASSWORD",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "PACK_SIGNING_KEY",
)
_SECRET_NAMES = frozenset(SECRET_ENV_VARS)
# Not secrets themselves (shown in messages), but they lead to one: kept from child processes all the same.
LEADS_TO_SECRET_ENV_VARS = frozenset({"PACK_SIGNING_KEY_FILE"})


def is_secret_env_name(name: str) -> bool:
    """True for any spelling of a secret variable's name (`Github_Token` as well as `GITHUB_TOKEN`)."""
    return name.upper() in _SECRET_NAMES


def withheld_from_children(name: str) -> bool:
    """True for the variables no child process (builder, oras, git, credential helper) is given."""
    return is_secret_env_name(name) or name.upper() in LEADS_TO_SECRET_ENV_VARS


def _pem_body_lines(secret: str) -> set[str]:
    """The base64 lines of a PEM secret (a signing key): a message quoting one line must not show it."""
    if "-----BEGIN" not in secret:
        return set()
    lines = [line.strip() for line in secret.splitlines() if line.strip() and not line.startswith("-----")]
    return {line for line in [*lines, "".join(lines)] if len(line) >= 8}  # shorter ones would mangle text


def secret_env_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of every secret variable in the environment, under whatever spelling."""
    env = os.environ if environ is None else environ
    return [value for name, value in env.items() if is_secret_env_name(name) and value]


def _base64_forms(raw: bytes) -> set[str]:
    """Standard and URL-safe base64 of `raw`, each with and without its `=` padding."""
    forms = set()
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode()
        forms |= {text, text.rstrip("=")}
    return forms


class Redactor:
    """Callable that replaces each known secret (and its base64 forms) with ***."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._needles: list[str] = []
        self._adding = threading.Lock()  # threads answering token challenges at once must not drop a token
        for secret in secrets:
            self.add(secret)

    def _extend(self, forms: set[str]) -> None:
        with self._adding:  # readers see the old list or the new one, never a half-built one
            self._needles = sorted(set(self._needles) | {f for f in forms if f}, key=len, reverse=True)

    def add(self, secret: str | None) -> None:
        if not secret or len(secret) < 4:  # too short to mask without mangling ordinary text
            return
        self._extend({secret, quote(secret, safe=""), *_base64_forms(secret.encode()), *_pem_body_lines(secret)})

    def add_credentials(self, username: str, password: str | None) -> None:
        """Mask a password and the Basic-auth forms carrying it: base64 of `username:password`.

        A registry that echoes the Authorization header in an error body would otherwise show it.
        """
        if not password or len(password) < 4:
            return
        self.add(password)
        self._extend(_base64_forms(f"{username}:{password}".encode()))

    def __call__(self, text: str) -> str:
        for needle in self._needles:
            text = text.replace(needle, MASK)
        return text
