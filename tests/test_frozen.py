"""`@frozen` (runtime.frozen) answers as `dataclass(frozen=True)` does, and the push path's records use it."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from dataclasses import FrozenInstanceError, dataclass, field
from typing import Any, ClassVar

import pytest

from pack_publisher.runtime.frozen import frozen

from .conftest import PROJECT


@frozen
class Made:
    name: str
    tags: tuple[str, ...] = ()
    note: str = field(default="", compare=False)
    secret: str = field(default="", repr=False)


@dataclass(frozen=True)
class Stdlib:
    name: str
    tags: tuple[str, ...] = ()
    note: str = field(default="", compare=False)
    secret: str = field(default="", repr=False)


@frozen(kw_only=True)
class KeywordsOnly:
    size: int
    items: list[str] = field(default_factory=list)


def both(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    return Made(*args, **kwargs), Stdlib(*args, **kwargs)


def test_repr_equality_and_hash_are_dataclasses() -> None:
    made, stdlib = both("p", ("1.0.0",), note="n", secret="s3cr3t")
    assert repr(made) == repr(stdlib).replace("Stdlib", "Made") == "Made(name='p', tags=('1.0.0',), note='n')"
    assert made == Made("p", ("1.0.0",), note="other", secret="s3cr3t")  # `compare=False` left out, as dataclass
    assert (made == Made("p", ("2.0.0",))) is (stdlib == Stdlib("p", ("2.0.0",))) is False
    assert hash(made) == hash(Made("p", ("1.0.0",), note="other", secret="s3cr3t"))
    assert hash(made) == hash(("p", ("1.0.0",), "s3cr3t")) == hash(stdlib)  # the compared fields, in order
    assert made != stdlib and made.__eq__(stdlib) is NotImplemented  # another class is never equal
    assert {made, Made("p", ("1.0.0",), secret="s3cr3t")} == {made}


@pytest.mark.parametrize("cls", [Made, Stdlib])
def test_nothing_is_assigned_or_deleted_after_init(cls: type) -> None:
    record = cls("p")
    with pytest.raises(FrozenInstanceError, match="cannot assign to field 'name'"):
        record.name = "q"
    with pytest.raises(FrozenInstanceError, match="cannot assign to field 'other'"):
        record.other = 1
    with pytest.raises(FrozenInstanceError, match="cannot delete field 'name'"):
        del record.name
    assert record.name == "p"


def test_the_dataclass_functions_and_copies_work() -> None:
    made = Made("p", ("1",), note="n")
    assert [f.name for f in dataclasses.fields(made)] == ["name", "tags", "note", "secret"]
    assert dataclasses.replace(made, name="q") == Made("q", ("1",))
    assert dataclasses.asdict(made) == {"name": "p", "tags": ("1",), "note": "n", "secret": ""}
    assert copy.deepcopy(made) == made and copy.copy(made) == made
    assert Made.__match_args__ == ("name", "tags", "note", "secret")


def test_keyword_only_fields_and_default_factories() -> None:
    with pytest.raises(TypeError):
        KeywordsOnly(1)  # type: ignore[misc]
    one, two = KeywordsOnly(size=1), KeywordsOnly(size=1)
    assert one == two and one.items is not two.items


def test_hash_follows_the_fields_hash_setting_and_a_class_keeps_its_own_methods() -> None:
    @frozen
    class Cached:
        key: str
        memo: list[str] = field(default_factory=list, hash=False)  # compared, not hashed: a list

        def __repr__(self) -> str:
            return f"<{self.key}>"

    assert hash(Cached("k", ["a"])) == hash(("k",)) and Cached("k") != Cached("k", ["a"])
    assert repr(Cached("k")) == "<k>"


def test_what_frozen_does_not_support_is_refused_when_the_class_is_made() -> None:
    with pytest.raises(TypeError, match="ClassVar and InitVar annotations are not supported"):

        @frozen
        class Counted:
            name: str
            made: ClassVar[int] = 0

    with pytest.raises(TypeError, match="no dataclass may be a base"):

        @frozen
        class Derived(Stdlib):
            extra: int = 0

    with pytest.raises(TypeError, match="defines __setattr__ or __delattr__"):

        @frozen
        class Guarded:
            name: str

            def __setattr__(self, name: str, value: object) -> None:
                object.__setattr__(self, name, value)


PROBE = """
import dataclasses, json, sys
import tasks
from pack_publisher.commands import push
from pack_publisher.registry import http, oras
from pack_publisher.runtime import frozen
records = [
    value
    for name, module in list(sys.modules.items())
    if name.startswith("pack_publisher.")
    for value in vars(module).values()
    if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == name
]
print(json.dumps([len(records), [r.__qualname__ for r in records if r.__setattr__ is not frozen._setattr]]))
"""


def test_every_record_on_the_push_path_is_made_by_frozen() -> None:
    """Only `__init__` is compiled per class on the path a one-pack push takes (13 ms of start-up before)."""
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=PROJECT, capture_output=True, text=True, check=True)
    count, compiled = json.loads(out.stdout)
    assert count > 20
    assert compiled == [], "made by @dataclass: use @frozen (runtime.frozen) or say here why not"
