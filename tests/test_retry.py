"""The retry policy, on a driven clock: no test here sleeps."""

from __future__ import annotations

import pytest

from pack_publisher.registry.auth import parse_challenge
from pack_publisher.registry.retry import RetryPolicy, Transient, retrying
from pack_publisher.runtime.errors import AccessError


class FakeClock:
    """A clock the tests drive: sleeping only moves time forward."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def failing(*outcomes: Transient | str, cost: float = 0.0, clock: FakeClock | None = None):  # type: ignore[no-untyped-def]
    """An attempt that raises or returns the given outcomes in turn, each taking `cost` seconds."""
    queue = list(outcomes)

    def attempt() -> str:
        if clock is not None:
            clock.now += cost
        outcome = queue.pop(0)
        if isinstance(outcome, Transient):
            raise outcome
        return outcome

    return attempt


def test_honours_retry_after_then_backs_off_with_jitter() -> None:
    clock = FakeClock()
    policy = RetryPolicy(clock=clock)
    attempt = failing(Transient("503", retry_after=2.0), Transient("timed out"), "done")
    assert retrying(policy, "r.example", "pushing", attempt) == "done"
    assert clock.slept[0] == 2.0
    assert 0.25 <= clock.slept[1] <= 1.0  # base 0.5 s, times 0.5..1


def test_gives_up_after_its_attempts_with_one_line() -> None:
    clock = FakeClock()
    attempt = failing(*[Transient("HTTP 503 (text/html body, not a registry error)")] * 3)
    with pytest.raises(AccessError) as info:
        retrying(RetryPolicy(attempts=3, clock=clock), "r.example", "uploading blob sha256:abc", attempt)
    assert len(clock.slept) == 2
    assert info.value.message.startswith("r.example: uploading blob sha256:abc failed after 3 attempt(s)")
    assert info.value.message.endswith("HTTP 503 (text/html body, not a registry error)")


def test_stops_at_its_time_budget() -> None:
    clock = FakeClock()
    attempt = failing(*[Transient("429 TOOMANYREQUESTS", retry_after=60)] * 50)
    with pytest.raises(AccessError, match="failed after 2 attempt"):
        retrying(RetryPolicy(attempts=50, total_seconds=30, clock=clock), "r", "pushing", attempt)
    assert clock.slept == [20.0]  # a long Retry-After is cut to max_retry_after, and the budget still ends it


def test_defaults_survive_one_stall_per_request_of_an_upload() -> None:
    """An upload is a POST and a PUT: one 15 s stall on each must not exhaust the default budget."""
    clock = FakeClock()
    attempt = failing(Transient("timed out"), Transient("timed out"), "uploaded", cost=15.0, clock=clock)
    assert retrying(RetryPolicy(clock=clock), "r", "uploading", attempt) == "uploaded"


def test_defaults_end_a_persistent_stall_within_a_minute() -> None:
    clock = FakeClock()
    attempt = failing(*[Transient("timed out")] * 10, cost=15.0 + 5.0, clock=clock)  # read + connect timeouts
    with pytest.raises(AccessError, match="timed out"):
        retrying(RetryPolicy(clock=clock), "r", "reading", attempt)
    assert clock.now < 60


def test_parse_challenge() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull"'
    )
    assert scheme == "bearer"
    assert params == {"realm": "https://ghcr.io/token", "service": "ghcr.io", "scope": "repository:a/b:pull"}


def test_a_retry_that_could_not_end_within_the_budget_is_not_started() -> None:
    """oras commands carry their own deadline: 20 s attempts end after two, well within a minute."""
    clock = FakeClock()
    attempt = failing(*[Transient("oras manifest ran over 20 s")] * 10, cost=20.0, clock=clock)
    with pytest.raises(AccessError, match="failed after 2 attempt"):
        retrying(RetryPolicy(clock=clock), "r", "reading", attempt, attempt_seconds=20.0)
    assert clock.now < 45
