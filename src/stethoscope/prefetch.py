"""An ordered ``map`` on a few threads, a bounded number of items ahead of its consumer.

Feature extraction and training batches both read and prepare data (file reads, numpy, torch)
while the caller computes: libsndfile, numpy's copies and torch release the GIL as they work, so
threads overlap with the caller without the start-up and copying costs of worker processes. At
most ``workers + 1`` results wait at any time, so memory stays flat however long the input.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    *,
    name: str = "prefetch",
    initializer: Callable[[], object] | None = None,
) -> Generator[R, None, None]:
    """``map(fn, items)`` on ``workers`` threads, results in order, at most ``workers + 1`` ahead.

    With one worker it runs in the caller's thread. On leaving early (an error, or the caller
    stopping), queued items are cancelled and the running ones finished before this returns, so
    no thread outlives the call. ``initializer`` runs once in each thread (e.g. selecting a GPU).
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix=name, initializer=initializer
    ) as pool:
        pending: deque[Future[R]] = deque()
        todo = iter(items)
        try:
            for item in itertools.islice(todo, workers + 1):
                pending.append(pool.submit(fn, item))
            while pending:
                result = pending.popleft().result()
                for item in itertools.islice(todo, 1):
                    pending.append(pool.submit(fn, item))
                yield result
        finally:
            for fut in pending:
                fut.cancel()
