"""`@frozen`: the frozen dataclasses of this code, made at import for a fraction of `dataclass`'s cost.

Python 3.11's `dataclass(frozen=True)` writes six methods of each class as source and compiles each with
its own `exec` (`__init__`, `__repr__`, `__eq__`, `__hash__`, `__setattr__`, `__delattr__`): about 0.1 ms
apiece here, 13 ms of a one-pack push for the 25 classes on its path (docs/benchmarks.md, start-up).
`@frozen` has `dataclass` write `__init__` alone and gives every class the five shared functions below,
which read the fields when called. They answer as dataclass's own do: equality (same class only) over the
fields with `compare`, hash over those with `hash` (else `compare`), the repr of the fields with `repr`,
and `FrozenInstanceError` for any assignment after `__init__` or any deletion; a class's own `__eq__`,
`__hash__` or `__repr__` is kept. `dataclasses.fields`, `replace` and `asdict` work unchanged. What it
does not support is refused when the class is made: a dataclass among the bases, `ClassVar` or
`InitVar` annotations, a class's own `__setattr__` or `__delattr__`.
(Python 3.13 compiles a class's methods in one `exec`; there this can become `dataclass(frozen=True)`.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import FrozenInstanceError, field, fields
from typing import Any, TypeVar, dataclass_transform, overload

C = TypeVar("C", bound=type)


def _compared(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, f.name) for f in fields(self) if f.compare)


def _hashed(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, f.name) for f in fields(self) if (f.compare if f.hash is None else f.hash))


def _eq(self: Any, other: object) -> Any:  # a bool, or NotImplemented for another class
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _compared(self) == _compared(other)


def _hash(self: Any) -> int:
    return hash(_hashed(self))


def _repr(self: Any) -> str:
    shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
    return f"{self.__class__.__qualname__}({shown})"


def _setattr(self: Any, name: str, value: object) -> None:
    if name in self.__dict__ or name not in self.__dataclass_fields__:  # set once, by __init__, and no more
        raise FrozenInstanceError(f"cannot assign to field {name!r}")
    object.__setattr__(self, name, value)


def _delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _make(cls: C, kw_only: bool) -> C:
    """What `dataclass` would refuse or treat its own way is refused here, so no class gets other answers."""
    if any(dataclasses.is_dataclass(base) for base in cls.__mro__[1:]):
        raise TypeError(f"@frozen {cls.__qualname__}: no dataclass may be a base (their methods would mix)")
    if {"__setattr__", "__delattr__"} & set(vars(cls)):
        raise TypeError(f"@frozen {cls.__qualname__}: defines __setattr__ or __delattr__, which @frozen owns")
    made: Any = dataclasses.dataclass(eq=False, repr=False, kw_only=kw_only)(cls)
    if len(fields(made)) != len(made.__dataclass_fields__):
        raise TypeError(f"@frozen {cls.__qualname__}: ClassVar and InitVar annotations are not supported")
    for name, shared in (("__eq__", _eq), ("__hash__", _hash), ("__repr__", _repr)):
        if name not in vars(cls):  # a class's own method stays, as dataclass keeps it
            setattr(made, name, shared)
    made.__setattr__, made.__delattr__ = _setattr, _delattr
    return made  # type: ignore[no-any-return]


@overload
def frozen(cls: C, /) -> C: ...


@overload
def frozen(*, kw_only: bool = False) -> Callable[[C], C]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def frozen(cls: C | None = None, /, *, kw_only: bool = False) -> C | Callable[[C], C]:
    """`@frozen` or `@frozen(kw_only=True)` on a class, as `@dataclass(frozen=True)` would be."""
    if cls is None:
        return lambda later: _make(later, kw_only)
    return _make(cls, kw_only)
