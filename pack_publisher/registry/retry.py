"""Retrying, as a policy value both transports share: what is transient, how long to wait, when to stop.

The built-in client raises `Transient` for a failed request; the oras transport for a failed oras
command. `retrying` runs an attempt under the policy and turns exhaustion into one line naming the
registry, the operation, the attempts and the cause. The clock is a parameter so tests drive it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import field
from typing import Protocol, TypeVar

from pack_publisher.runtime.errors import AccessError
from pack_publisher.runtime.frozen import frozen

T = TypeVar("T")
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class RealClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@frozen
class RetryPolicy:
    """Bounds for one operation.

    A retry starts only while less than `total_seconds` have passed, so with the defaults an operation
    that keeps failing ends within `total_seconds` plus one attempt's timeouts (under a minute), and one
    stall on each request of an upload (POST, then PUT: 2 x 15 s) is still survived.
    """

    attempts: int = 5
    total_seconds: float = 40.0
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 20.0  # a Retry-After longer than this is cut to it (the budget still applies)
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    clock: Clock = field(default_factory=RealClock, compare=False)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): Retry-After, else backoff with jitter."""
        if retry_after is not None:
            return max(0.0, min(retry_after, self.max_retry_after))
        backoff = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return float(backoff * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not cryptography


class Transient(Exception):
    """A failure worth retrying: connection trouble, a timeout, 408/429/5xx, an answer cut short."""

    def __init__(self, cause: str, retry_after: float | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.retry_after = retry_after


def retrying(
    policy: RetryPolicy,
    registry: str,
    operation: str,
    attempt: Callable[[], T],
    attempt_seconds: float = 0.0,
    attempts: int | None = None,
) -> T:
    """Run `attempt` until it succeeds, raises a final error, or the policy's bounds run out.

    `attempt_seconds` is how long one attempt may take at most (an oras command's deadline): a retry
    that could not end within the budget plus one connect timeout is not started. `attempts` replaces
    the policy's count (an oras command is many requests: the time budget bounds it instead).
    """
    limit = attempts or policy.attempts
    clock = policy.clock
    started = clock.monotonic()
    number = 0
    while True:
        number += 1
        try:
            return attempt()
        except Transient as exc:
            elapsed = clock.monotonic() - started
            delay = policy.delay(number, exc.retry_after)
            late = elapsed + delay + attempt_seconds > policy.total_seconds + (
                policy.connect_timeout if attempt_seconds else 0.0
            )
            if number >= limit or late:
                raise AccessError(
                    f"{registry}: {operation} failed after {number} attempt(s) in {elapsed:.0f} s: {exc.cause}"
                ) from None
            clock.sleep(delay)
