"""Lines for users: every known secret masked, one whole line per write whatever the threads do."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from pack_publisher.runtime.redact import Redactor

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
