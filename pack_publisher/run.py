"""One run of the tasks: its settings, its printer (secrets masked, whole lines) and its command runner.

Tasks hand this one object to the pipeline instead of settings, redactor and printer separately.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from .commands import Commands
from .progress import Heartbeat
from .redact import Redactor

if TYPE_CHECKING:
    from .settings import Settings

_output_lock = threading.Lock()


class Printer:
    """Prints lines for users with every known secret masked, one whole line per write whatever the threads do."""

    def __init__(self, secrets: list[str]) -> None:
        self.redact = Redactor(secrets)

    def _write(self, stream: TextIO, line: str) -> None:
        text = self.redact(line) + "\n"
        with _output_lock:  # text and newline in one write, under one lock: lines never merge
            try:
                stream.write(text)
            except UnicodeEncodeError:  # a stream that cannot hold `…` (PYTHONIOENCODING=ascii) still gets the line
                stream.write(text.replace("…", "...").encode("ascii", "replace").decode("ascii"))
            stream.flush()

    def say(self, line: str) -> None:
        self._write(sys.stdout, line)

    def warn(self, line: str) -> None:
        self._write(sys.stderr, f"warning: {line}")

    def note(self, line: str) -> None:
        """A line for the log, on stderr: for tasks whose stdout is data (`invoke matrix`)."""
        self._write(sys.stderr, line)


class Run(Printer):
    """The resolved settings of one `invoke` run, the printer that redacts them and the command runner."""

    def __init__(
        self,
        settings: Settings,
        flags: dict[str, Any],
        *,
        echo: bool,
        echo_format: str,
        stdout_is_data: bool = False,
    ) -> None:
        super().__init__(settings.secrets)
        self.settings = settings
        self.flags = flags  # the task flags these settings were resolved with
        show = self.note if stdout_is_data else self.say  # echoed commands never mix into data on stdout
        self.commands = Commands(settings.publish.child_env, show, echo=echo, echo_format=echo_format)
        self.command = " ".join(["invoke", *sys.argv[1:]])  # shown to a second run finding OUT_DIR taken
        self.out_dir_lock: int | None = None  # the descriptor holding OUT_DIR's lock, once taken
        self.lenient = False  # resolved with the dry run's fallbacks (version, org) for a task writing no registry
        self.heartbeat = Heartbeat(self.say)  # `still building <pack>: 20 s elapsed`, every ~10 s
        self.on_failure: list[Callable[[], None]] = []  # tidy-ups when the run stops on an error (`cli.clean_exit`)
