"""One run of the tasks: its settings, its printer (secrets masked, whole lines) and its command runner.

Tasks hand this one object to the commands instead of settings, redactor and printer separately.
`cli.context.open_run` makes it, the one way every task starts.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pack_publisher.config.environment import EnvSettings, child_environment, options_of
from pack_publisher.config.settings import Settings
from pack_publisher.registry.connect import PublishOptions, secret_values
from pack_publisher.runtime.errors import PublisherError
from pack_publisher.runtime.printer import Printer
from pack_publisher.runtime.processes import Commands
from pack_publisher.runtime.progress import Heartbeat


class Run(Printer):
    """The environment of one `invoke` run, its settings when the task needs them, printer and command runner.

    Tasks that need no git, version or org (`verify`, `lock --merge`, `tools`) get a run without
    settings: its `env`, `options` and paths, with the same masking and echo.
    """

    def __init__(
        self,
        env: EnvSettings,
        root: Path,
        flags: dict[str, Any],
        *,
        echo: bool,
        echo_format: str,
        stdout_is_data: bool = False,
        settings: Settings | None = None,
    ) -> None:
        self.options: PublishOptions = settings.publish if settings is not None else options_of(env)
        super().__init__(
            settings.secrets if settings is not None else [*self.options.secrets, *secret_values(env.pack_signing_key)]
        )
        self.env = env
        self.root = root
        self._settings = settings
        self.flags = flags  # the task flags these settings were resolved with
        self.echo = echo
        self.echo_format = echo_format
        show = self.note if stdout_is_data else self.say  # echoed commands never mix into data on stdout
        env_for_children = self.options.child_env if settings is not None else child_environment()
        self.commands = Commands(env_for_children, show, echo=echo, echo_format=echo_format)
        self.command = " ".join(["invoke", *sys.argv[1:]])  # shown to a second run finding OUT_DIR taken
        self.out_dir_lock: int | None = None  # the descriptor holding OUT_DIR's lock, once taken
        self.lenient = False  # resolved with the dry run's fallbacks (version, org) for a task writing no registry
        self.heartbeat = Heartbeat(self.say)  # `still building <pack>: 20 s elapsed`, every ~10 s
        self.on_failure: list[Callable[[], None]] = []  # tidy-ups when the run stops on an error (`clean_exit`)

    @property
    def has_settings(self) -> bool:
        return self._settings is not None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            raise PublisherError("internal: this task was opened without settings")
        return self._settings

    def path(self, text: str) -> Path:
        """A path given in the environment or on the command line, relative to the repository root."""
        return (self.root / text).resolve()

    def echo_argv(self, argv: list[str]) -> None:
        """Show a command as Invoke echoes it (for commands not run through `commands`)."""
        self.say(self.echo_format.format(command=shlex.join(argv)))


__all__ = ["Printer", "Run", "secret_values"]
