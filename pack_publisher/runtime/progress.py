"""Long work shows it is alive: a build or an upload still running prints a line every ~10 s.

A real Greentic build takes minutes and a large upload as long; without a sign of life a user (or a CI
log) cannot tell progress from a hang. Each line is a whole plain line through the run's printer
(`still building <pack>: 20 s elapsed`, `still uploading <pack>: 30 s elapsed, 12.0 MiB of 60.0 MiB
sent`), so it reads the same on a terminal, in a file and in a CI log, and never breaks another line.
The clock and the wait are injected, so tests drive time instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

INTERVAL_SECONDS = 10.0
# Waits up to `timeout` seconds for `done`; True when it was set (the work ended).
Wait = Callable[[threading.Event, float], bool]


def _wait(done: threading.Event, timeout: float) -> bool:
    return done.wait(timeout)


def duration(seconds: float) -> str:
    """`45 s`, `2 min 05 s`: elapsed time as shown."""
    whole = int(seconds)
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60:02d} s"


def size(count: int) -> str:
    """`512 B`, `12.3 KiB`, `60.0 MiB`."""
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count / (1024 * 1024):.1f} MiB"


class Heartbeat:
    """Prints `still <what>: <elapsed>[, <detail>]` every `interval` seconds while a piece of work runs."""

    def __init__(
        self,
        say: Callable[[str], None],
        interval: float = INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wait: Wait = _wait,
    ) -> None:
        self.say = say
        self.interval = interval
        self.clock = clock
        self.wait = wait

    @contextmanager
    def alive(self, what: str, detail: Callable[[], str] | None = None) -> Iterator[None]:
        """While the body runs, a line every interval; nothing at all for work shorter than one interval."""
        started = self.clock()
        done = threading.Event()

        def beat() -> None:
            while not self.wait(done, self.interval):
                extra = detail() if detail is not None else ""
                self.say(f"still {what}: {duration(self.clock() - started)} elapsed" + (f", {extra}" if extra else ""))

        thread = threading.Thread(target=beat, name=f"heartbeat {what}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


class SentBytes:
    """How much of an archive the current upload attempt has read (a retry starts again from 0)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.count: int | None = None  # None until a transport reports (oras does not)

    def update(self, count: int) -> None:
        self.count = count

    def describe(self) -> str:
        if self.count is None:
            return f"{size(self.total)} to send"
        return f"{size(self.count)} of {size(self.total)} sent"
