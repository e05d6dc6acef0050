"""Work side by side, the one way this code uses threads.

`each` maps work over items with a bounded pool (builds, plans, pushes); `together` runs a few
independent calls of one item at once (a pack's uploads and checks); `beside` runs work in the
background of a loop (a pack's read-back beside the next pack's writes). Ctrl-C never waits for any.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def each(jobs: int, items: Iterable[T], work: Callable[[T], R]) -> Iterator[R]:
    """`work` over `items`, up to `jobs` at once, results in order as they are ready.

    Ctrl-C (or a consumer stopping early) never waits for a stalled request or build.
    """
    executor = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="work")
    try:
        yield from executor.map(work, items)
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def together(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run independent calls side by side (one thread each, the first on this one); results in call order.

    Each call runs to its end (with its own retries) before anything is raised, so no request outlives
    the pack it serves; then the first failure, in call order, is raised. The threads are daemons: Ctrl-C
    never waits for them.
    """
    if len(calls) < 2:
        return [call() for call in calls]
    results: list[Any] = [None] * len(calls)
    failures: list[BaseException | None] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as exc:  # re-raised below, on the caller's thread
            failures[index] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(1, len(calls))]
    for thread in threads:
        thread.start()
    run(0)
    for thread in threads:
        thread.join()
    for failure in failures:
        if failure is not None:
            raise failure
    return results


@contextmanager
def beside(jobs: int, name: str) -> Iterator[Callable[..., Future[Any]]]:
    """A `submit(fn, *args)` running up to `jobs` calls in the background until the block ends.

    The block's end waits for them; leaving it by an exception (Ctrl-C) cancels what has not started
    and waits for nothing.
    """
    executor = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix=name)
    try:
        yield executor.submit
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
