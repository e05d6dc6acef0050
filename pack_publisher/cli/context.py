"""Glue between Invoke tasks and the commands: `open_run` (one run object per invocation), clean exits,
flags that parse without tracebacks."""

from __future__ import annotations

import functools
import gc
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from invoke.context import Context
from invoke.exceptions import Exit

from pack_publisher.cli.task_flags import install as mend_invoke_flags
from pack_publisher.runtime.errors import PublisherError
from pack_publisher.runtime.printer import Printer
from pack_publisher.runtime.processes import INVOKE_ECHO_FORMAT, Commands
from pack_publisher.runtime.redact import Redactor, secret_env_values

if TYPE_CHECKING:
    from pack_publisher.config.run import Run


P = ParamSpec("P")
R = TypeVar("R")
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM
_CONFIG_KEY = "pack_publisher_settings"
mend_invoke_flags()  # before Invoke parses the task flags: `--pack` without its value is refused


class _LooksLikeInt(type):
    """Invoke names a flag's value from its type (`--jobs=INT`) by looking it up beside `int`."""

    def __eq__(cls, other: object) -> bool:
        return other is int or type.__eq__(cls, other) is True

    def __hash__(cls) -> int:
        return hash(int)


class WholeNumber(int, metaclass=_LooksLikeInt):
    """The type of integer task flags: `--jobs abc` is one `error:` line and exit 2.

    Invoke converts a flag's value with the type of its default and lets the ValueError of `int("abc")`
    escape as a traceback; converting here turns it into Invoke's own clean `Exit`.
    """

    def __new__(cls, value: str | int = 0) -> WholeNumber:
        try:
            return super().__new__(cls, value)
        except (TypeError, ValueError):
            raise Exit(f"error: {str(value)[:40]!r} is not a whole number", 2) from None


def _echo(c: Context, in_ci: bool) -> tuple[bool, str]:
    """Show external commands when Invoke is asked to echo (`invoke --echo`, `run.echo`) and always in CI."""
    run_config = c.config.get("run", {})
    wanted = bool(run_config.get("echo")) or in_ci
    return wanted, str(run_config.get("echo_format") or INVOKE_ECHO_FORMAT)


def open_run(
    c: Context,
    root: Path,
    *,
    settings: bool = True,
    dev_version: bool = False,
    stdout_is_data: bool = False,
    **flags: Any,
) -> Run:
    """The one way a task starts: the environment read once (flags override it), settings resolved when the
    task needs them (`settings=False`: no git, version or org, for verify, lock --merge and tools), kept on
    the context.

    Tasks run in one invocation (`invoke build push --latest`) share the run; a later task's flags are
    added to the earlier ones, re-resolving only when they change something.
    """
    # imported late: `invoke --list` and `--help` need not pay for the settings and the registry layer
    from pack_publisher.config.environment import child_environment, in_ci, read_environment
    from pack_publisher.config.run import Run
    from pack_publisher.config.settings import resolve_settings
    from pack_publisher.registry.connect import secret_values

    given = {k: v for k, v in flags.items() if v is not None}
    existing = c.config.get(_CONFIG_KEY)
    if isinstance(existing, Run):
        # settings resolved leniently (a build or lock: dev version, `local` org) never serve a task that
        # writes to a registry: `invoke build push` without a tag stops at push instead of pushing 0.0.0-dev
        lenient_enough = dev_version or not existing.lenient
        enough = existing.has_settings or not settings
        if enough and lenient_enough and all(existing.flags.get(k) == v for k, v in given.items()):
            return existing
        given = {**existing.flags, **given}
    env = read_environment(given)
    echo, echo_format = _echo(c, in_ci(env))
    resolved = None
    if settings:
        early = Printer(secret_values(env.oci_password, env.github_token, env.pack_signing_key))  # git commands
        show = early.note if stdout_is_data else early.say
        commands = Commands(child_environment(), show, echo=echo, echo_format=echo_format)
        resolved = resolve_settings(root, given, commands, dev_version=dev_version, env=env)
    current = Run(
        env, root, given, echo=echo, echo_format=echo_format, stdout_is_data=stdout_is_data, settings=resolved
    )
    current.lenient = dev_version
    if isinstance(existing, Run):
        current.out_dir_lock = existing.out_dir_lock  # chained tasks keep the one lock on OUT_DIR
    if resolved is not None and not (isinstance(existing, Run) and existing.has_settings):
        for notice in resolved.notices:
            current.warn(notice)
    c.config[_CONFIG_KEY] = current  # type: ignore[assignment]  # invoke types config values as str
    return current


def clean_exit(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a PublisherError into `error: <message>` on stderr and its exit code, without a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _terminated)  # a cancelled CI job: leave as cleanly as on Ctrl-C
        from pack_publisher.runtime import cleanup

        gc.freeze()  # what start-up made (Invoke, its config) lives to the end: no collection walks it again
        try:
            return func(*args, **kwargs)
        except PublisherError as exc:
            _tidy_up(args)
            redact = _redactor_of(args)
            raise Exit(redact(f"error: {exc.message}"), exc.exit_code) from None
        except KeyboardInterrupt:
            cleanup.run_all()  # os._exit skips `finally`: remove scratch folders, stop child processes
            # Leave at once: a push thread may sit in a stalled request, and waiting for it would make
            # Ctrl-C take up to the retry budget. Records and the lockfile are written atomically and
            # only after verification, so nothing half-written is left behind.
            sys.stdout.flush()
            print("error: interrupted; nothing more was recorded", file=sys.stderr, flush=True)
            os._exit(EXIT_TERMINATED if _terminated_by_signal.is_set() else EXIT_INTERRUPTED)
        finally:
            cleanup.run_all()  # a scratch folder (one may hold credentials) never outlives its task
            # and what the task made is left to the process's end too: the interpreter's last collection
            # at exit would walk every object for nothing (about 15 ms of a push here, docs/benchmarks.md)
            gc.freeze()

    return wrapper


_terminated_by_signal = threading.Event()


def _terminated(signum: int, frame: object) -> None:
    _terminated_by_signal.set()
    raise KeyboardInterrupt


def _tidy_up(args: tuple[Any, ...]) -> None:
    """A run that stops on an error leaves nothing it made only for itself (the OUT_DIR lock, empty folders)."""
    existing = args[0].config.get(_CONFIG_KEY) if args and isinstance(args[0], Context) else None
    for tidy in getattr(existing, "on_failure", ()):  # a Run (imported late, see open_run)
        tidy()


def _redactor_of(args: tuple[Any, ...]) -> Redactor:
    if args and isinstance(args[0], Context):
        existing = args[0].config.get(_CONFIG_KEY)
        if isinstance(existing, Printer):
            return existing.redact
    # settings could not be resolved: still hide what the environment holds
    return Redactor(secret_env_values())
