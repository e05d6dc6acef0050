"""Invoke's handling of repeatable flags (`--pack NAME`, `--tool NAME`), mended where it misleads users.

Invoke 3 parses a repeatable (list) flag given without its value, `invoke release --pack` or
`invoke release --pack --dry-run`, as if the flag were not given at all: the task then selects every
pack, and a forgotten name publishes everything. Its help also shows such a flag without a value name
(`-p, --pack`). `install()` mends both in Invoke's parser, for every repeatable flag of every task:

- a repeatable flag seen without a value, or with an empty one (`--pack ""`, `--pack=`), stops the
  whole invocation with one `error:` line and exit 2, before any task runs;
- help shows its value: `-p NAME, --pack=NAME`.

Installed when `tasks.py` is loaded, which Invoke does before it parses the task flags.
"""

from __future__ import annotations

from typing import Any

from invoke.exceptions import Exit, ParseError
from invoke.parser.context import ParserContext
from invoke.parser.parser import ParseMachine

from pack_publisher.runtime.errors import EXIT_USAGE

VALUE_NAME = "NAME"
# What each repeatable flag takes, and what leaving it out means, for the error line.
WANTED = {
    "pack": "a pack folder name under PACKS_DIR (leave --pack out to select every pack)",
    "tool": "a pinned tool name, oras or greentic-pack (leave --tool out for every tool)",
}


def _long_name(flag: Any) -> str:
    return f"--{str(flag.name).replace('_', '-')}"


class MissingFlagValue(ParseError, Exit):
    """A parse error (so shell completion of a half-typed `--pack` still works) that exits 2, printed once."""

    def __init__(self, text: str, context: Any) -> None:
        Exception.__init__(self, text)
        self.text = text
        self.context = context  # what shell completion falls back to
        self.message = None  # Invoke prints a parse error by its text; a message would print it twice
        self._code = EXIT_USAGE

    def __str__(self) -> str:
        return self.text


def _refuse(machine: ParseMachine, flag: Any, given: str | None) -> MissingFlagValue:
    what = WANTED.get(str(flag.name), "a value")
    how = "was given without its value" if given is None else f"was given an empty value ({given!r})"
    return MissingFlagValue(f"error: {_long_name(flag)} {how}: it takes {what}; nothing was run", machine.context)


_complete_flag = ParseMachine.complete_flag
_see_value = ParseMachine.see_value
_help_for = ParserContext.help_for


def complete_flag(self: ParseMachine) -> None:
    """A repeatable flag closed before a value arrived (next flag, next task or the end) is an error."""
    flag = self.flag
    if flag is not None and flag.kind is list and not getattr(self, "flag_got_value", True):
        raise _refuse(self, flag, None)
    _complete_flag(self)


def see_value(self: ParseMachine, value: Any) -> None:
    flag = self.flag
    if flag is not None and flag.kind is list and isinstance(value, str) and not value.strip():
        raise _refuse(self, flag, value)
    _see_value(self, value)


def help_for(self: ParserContext, flag: str) -> tuple[str, str]:
    """Invoke's flag help, with the value of a repeatable flag named: `-p NAME, --pack=NAME`."""
    names, text = _help_for(self, flag)
    if self.flags[flag].kind is list:
        spelled = [f"{n} {VALUE_NAME}" if len(n.strip("-")) == 1 else f"{n}={VALUE_NAME}" for n in self.names_for(flag)]
        names = ", ".join(sorted(spelled, key=len))
    return names, text


def install() -> None:
    """Mend Invoke's parser for this process (idempotent)."""
    ParseMachine.complete_flag = complete_flag  # type: ignore[method-assign]
    ParseMachine.see_value = see_value  # type: ignore[method-assign]
    ParserContext.help_for = help_for  # type: ignore[method-assign]
