"""Process-pool helpers: ordered, bounded, deterministic."""
from __future__ import annotations

from collections import deque
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Iterator


def bounded_map(fn: Callable, items: Iterable, workers: int, window: int | None = None) -> Iterator:
    """map(fn, items) over `workers` processes, in order, with at most `window` results in flight
    (memory stays flat on large corpora). workers <= 1 runs in this process."""
    items = iter(items)
    if workers <= 1:
        yield from map(fn, items)
        return
    window = window or 2 * workers
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
