"""Hide every secret the settings know from text the tool prints or relays."""

from __future__ import annotations

import base64
from collections.abc import Iterable

MASK = "***"
# Environment variables that may hold a secret: kept from child processes, and masked even when the
# settings could not be read.
SECRET_ENV_VARS = (
    "OCI_PASSWORD",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
)


class Redactor:
    """Callable that replaces each known secret (and its base64 forms) with ***."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._needles: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if not secret or len(secret) < 4:  # too short to mask without mangling ordinary text
            return
        forms = {secret, base64.b64encode(secret.encode()).decode()}
        self._needles = sorted(set(self._needles) | forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for needle in self._needles:
            text = text.replace(needle, MASK)
        return text
