"""Process-pool helpers: ordered, bounded, deterministic."""
from __future__ import annotations

from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable, Iterator


def bounded_map(fn: Callable, items: Iterable, workers: int, window: int | None = None,
                on_crash: Callable | None = None) -> Iterator:
    """map(fn, items) over `workers` processes, in order, with at most `window` results in flight
    (memory stays flat on large corpora). workers <= 1 runs in this process.

    ``on_crash(item)``: when a worker process dies (killed for memory, a crash inside a decoder),
    the items it may have held are run again one at a time in a fresh process; the one that
    kills its process again gets ``on_crash(item)`` as its result, and the rest go on."""
    items = iter(items)
    if workers <= 1:
        yield from map(fn, items)
        return
    window = window or 2 * workers
    pool = ProcessPoolExecutor(max_workers=workers)
    pending: deque = deque()
    try:
        while True:
            for item in items:
                pending.append((item, _submit(pool, fn, item)))
                if len(pending) >= window:
                    break
            if not pending:
                return
            item, future = pending.popleft()
            try:
                if future is None:  # submitted to a pool that had already broken
                    raise BrokenProcessPool("pool broken before submission")
                result = future.result()
            except BrokenProcessPool:
                if on_crash is None:
                    raise
                pool.shutdown(wait=True, cancel_futures=True)
                result = _alone(fn, item, on_crash)
                rest = [it for it, _ in pending]
                pending.clear()
                pool = ProcessPoolExecutor(max_workers=workers)
                for it in rest:
                    pending.append((it, _submit(pool, fn, it)))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _submit(pool: ProcessPoolExecutor, fn: Callable, item):
    try:
        return pool.submit(fn, item)
    except BrokenProcessPool:
        return None


def _alone(fn: Callable, item, on_crash: Callable):
    with ProcessPoolExecutor(max_workers=1) as pool:
        try:
            return pool.submit(fn, item).result()
        except BrokenProcessPool:
            return on_crash(item)
