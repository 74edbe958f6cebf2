"""Read-ahead: run a block iterator in a background thread so disk reads overlap BLAS work.

h5py and zarr hold the GIL while decoding, but NumPy's BLAS calls release it, so a reader thread
fetching block k+1 runs while the main thread multiplies block k.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def read_ahead(blocks: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield the items of ``blocks`` in order, producing up to ``depth`` items ahead in a thread.

    Exceptions raised by the producer are re-raised in the consumer. Abandoning the iterator
    (``break`` or an error in the consumer) stops the producer at its next item.
    """
    if depth <= 0:
        yield from blocks
        return
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in blocks:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - every error, KeyboardInterrupt too, reaches the consumer
            q.put(exc)

    thread = threading.Thread(target=produce, name="repsim-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:  # noqa: PERF203 - runs once per pending block at shutdown
                thread.join(timeout=0.05)
