"""Run an iterator ahead in a background thread, a bounded number of items ahead.

Extraction decodes the next windows while the backbone runs on the current one: PyAV releases
the GIL while it decodes and converts frames, so a thread overlaps the two on one process.
The queue bounds memory (`depth` items decoded ahead, plus the one in use).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()
_POLL_S = 0.05  # how often a blocked producer checks whether the consumer has stopped


def prefetched(items: Iterator[T], depth: int, waits: list[float] | None = None) -> Iterator[T]:
    """Yield `items` in order, produced up to `depth` ahead by a background thread.

    An exception raised by `items` is re-raised here, at the position it happened. If the
    consumer stops early (an error in the model, `close()`), the producer stops and `items`
    is closed before this generator returns, so no thread or open file outlives it.

    Args:
        depth: items produced ahead; 0 runs `items` in this thread (no thread at all).
        waits: if given, each wait for an item not ready yet is appended, in seconds.
    """
    if depth <= 0:
        yield from items
        return
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(entry: tuple[object, object]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer((item, None)):
                    return
            offer((_END, None))
        except BaseException as error:  # handed to the consumer, which raises it
            offer((_END, error))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="actiondiff-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            start = time.perf_counter()
            item, error = ready.get()
            if waits is not None:
                waits.append(time.perf_counter() - start)
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        worker.join()
