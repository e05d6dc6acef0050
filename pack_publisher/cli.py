"""Glue between Invoke tasks and the pipeline: one settings object per run, clean exits, redacted output."""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from invoke.context import Context
from invoke.exceptions import Exit

from .errors import PublisherError
from .redact import Redactor, secret_env_values

if TYPE_CHECKING:
    from .settings import PublishOptions, Settings


P = ParamSpec("P")
R = TypeVar("R")
EXIT_INTERRUPTED = 130
_CONFIG_KEY = "pack_publisher_settings"


class Printer:
    """Prints lines for users with every known secret masked."""

    def __init__(self, secrets: list[str]) -> None:
        self.redact = Redactor(secrets)

    def say(self, line: str) -> None:
        print(self.redact(line), flush=True)

    def warn(self, line: str) -> None:
        print(self.redact(f"warning: {line}"), file=sys.stderr, flush=True)


class Session(Printer):
    """The resolved settings of one `invoke` run and the printer that redacts them."""

    def __init__(self, settings: Settings, flags: dict[str, Any]) -> None:
        super().__init__(settings.secrets)
        self.settings = settings
        self.flags = flags  # the task flags these settings were resolved with


def verify_inputs(c: Context, root: Path, lock: str | None) -> tuple[PublishOptions, str, Path, Printer]:
    """What `verify` needs: publishing options, the configured registry, the lockfile; no git, version or org."""
    from .settings import options_of, read_environment

    env = read_environment()
    options = options_of(env)
    printer = Printer(options.secrets)
    c.config[_CONFIG_KEY] = printer  # type: ignore[assignment]  # invoke types config values as str
    return options, env.oci_registry, (root / (lock or env.lock_file)).resolve(), printer


def session(c: Context, root: Path, **flags: Any) -> Session:
    """Resolve settings once per invocation (flags override the environment) and keep them on the context.

    Tasks run in one invocation (`invoke build push --latest`) share them; a later task's flags are
    added to the earlier ones, re-resolving only when they change something.
    """
    from .settings import resolve_settings  # imported late: `invoke --list` need not pay for pydantic

    given = {k: v for k, v in flags.items() if v is not None}
    existing = c.config.get(_CONFIG_KEY)
    if isinstance(existing, Session):
        if all(existing.flags.get(k) == v for k, v in given.items()):
            return existing
        given = {**existing.flags, **given}
    current = Session(resolve_settings(root, given), given)
    if not isinstance(existing, Session):
        for notice in current.settings.notices:
            current.warn(notice)
    c.config[_CONFIG_KEY] = current  # type: ignore[assignment]  # invoke types config values as str
    return current


def clean_exit(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a PublisherError into `error: <message>` on stderr and its exit code, without a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _terminated)  # a cancelled CI job: leave as cleanly as on Ctrl-C
        try:
            return func(*args, **kwargs)
        except PublisherError as exc:
            redact = _redactor_of(args)
            raise Exit(redact(f"error: {exc.message}"), exc.exit_code) from None
        except KeyboardInterrupt:
            from . import cleanup

            cleanup.run_all()  # os._exit skips `finally`: remove scratch folders, stop child processes
            # Leave at once: a push thread may sit in a stalled request, and waiting for it would make
            # Ctrl-C take up to the retry budget. Records and the lockfile are written atomically and
            # only after verification, so nothing half-written is left behind.
            sys.stdout.flush()
            print("error: interrupted; nothing more was recorded", file=sys.stderr, flush=True)
            os._exit(EXIT_INTERRUPTED)

    return wrapper


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _redactor_of(args: tuple[Any, ...]) -> Redactor:
    if args and isinstance(args[0], Context):
        existing = args[0].config.get(_CONFIG_KEY)
        if isinstance(existing, Printer):
            return existing.redact
    # settings could not be resolved: still hide what the environment holds
    return Redactor(secret_env_values())
