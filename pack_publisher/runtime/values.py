"""Checking loose values (environment variables, task flags, YAML, JSON records) against a field's type.

Hand-written instead of pydantic: importing pydantic cost ~60 ms of a ~0.3 s command (issue 24), and
the models here are a few dozen plain fields. What each check accepts, and the words it refuses with,
are pydantic's (lax mode), since users and tests know those lines: `'abc': input should be a valid
integer, unable to parse string as an integer`.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any, TypeVar

T = TypeVar("T")

TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


class Invalid(ValueError):
    """A value refused. `parsing`: the value could not be read as the type or is out of bounds, a message
    that reads best after the value (`'abc': input should be ...`); otherwise a sentence of its own."""

    def __init__(self, message: str, value: object = None, *, parsing: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.value = value
        self.parsing = parsing


def as_str(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):  # YAML's !!binary: taken when it is UTF-8 text, as pydantic took it
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid("Input should be a valid string, unable to parse raw data as a unicode string") from None
    raise Invalid("Input should be a valid string")


def as_optional_str(value: object) -> str | None:
    return None if value is None else as_str(value)


def as_bool(value: object) -> bool:
    """True/False, 1/0 (and 1.0/0.0), or one of the words in TRUE and FALSE, in any case."""
    if isinstance(value, bool):
        return value
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        word = value.lower()
        if word in TRUE or word in FALSE:
            return word in TRUE
    elif isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    elif not isinstance(value, int):
        raise Invalid("Input should be a valid boolean")
    raise Invalid("Input should be a valid boolean, unable to interpret input", value, parsing=True)


def _number_text(value: str) -> str | None:
    """The text of a number with the white space around it removed; None for digits outside ASCII."""
    text = value.strip()
    return text if text.isascii() else None


def as_int(value: object, *, ge: int | None = None, le: int | None = None) -> int:
    """An integer (an integral float or decimal text too: ' 4', '+4', '1_000', '4.00'), within ge..le."""
    number: int
    if isinstance(value, bool | int):
        number = int(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise Invalid("Input should be a finite number")
        if not value.is_integer():
            raise Invalid("Input should be a valid integer, got a number with a fractional part")
        number = int(value)
    elif isinstance(value, str | bytes):
        text = _number_text(value.decode("utf-8", "replace") if isinstance(value, bytes) else value)
        whole, dot, fraction = (text or "").partition(".")
        if dot and fraction and not fraction.strip("0"):
            text = whole  # '4.00' is 4; '4.' and '4.5' are not integers
        try:
            if text is None:
                raise ValueError
            number = int(text, 10)
        except ValueError:
            raise Invalid(
                "Input should be a valid integer, unable to parse string as an integer", value, parsing=True
            ) from None
    else:
        raise Invalid("Input should be a valid integer")
    return _within(number, value, ge=ge, le=le)


def as_float(value: object, *, gt: float | None = None, le: float | None = None) -> float:
    """A number (or its text: ' 2', '1e2', '.5', 'inf'), greater than gt and at most le."""
    number: float
    if isinstance(value, bool | int | float):
        number = float(value)
    elif isinstance(value, str | bytes):
        text = _number_text(value.decode("utf-8", "replace") if isinstance(value, bytes) else value)
        try:
            if not text:
                raise ValueError
            number = float(text)
        except ValueError:
            raise Invalid(
                "Input should be a valid number, unable to parse string as a number", value, parsing=True
            ) from None
    else:
        raise Invalid("Input should be a valid number")
    return _within(number, value, gt=gt, le=le)


def _within(
    number: T, given: object, *, ge: float | None = None, gt: float | None = None, le: float | None = None
) -> T:
    """`number` if inside the bounds; checked upper bound first, as pydantic does (NaN fails that one)."""
    value: Any = number
    if le is not None and not value <= le:
        raise Invalid(f"Input should be less than or equal to {le}", given, parsing=True)
    if ge is not None and not value >= ge:
        raise Invalid(f"Input should be greater than or equal to {ge}", given, parsing=True)
    if gt is not None and not value > gt:
        raise Invalid(f"Input should be greater than {gt}", given, parsing=True)
    return number


def as_choice(value: object, choices: Collection[str]) -> str:
    """One of `choices`, exactly as written (no case folding, no white space)."""
    if isinstance(value, str) and value in choices:
        return value
    quoted = [repr(c) for c in choices]
    listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    raise Invalid(f"Input should be {listed}", value, parsing=True)
