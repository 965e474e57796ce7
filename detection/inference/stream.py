"""Overlap decoding, inference and encoding: three threads joined by small bounded queues.

``pipeline(items, process, consume)`` runs ``for x in items: consume(process(x))`` with the iteration
of ``items`` (decoding) in one thread, ``process`` (the model) in the calling thread and ``consume``
(drawing, encoding, writing) in a third, so the slowest step sets the pace and the other two hide
behind it (OpenCV, torch and onnxruntime release the GIL in their C++ code). Each queue holds at most
``depth`` items, so memory stays flat however long the stream. The first exception of any step stops
the others and is raised in the calling thread; ``overlap=False`` runs the three steps one after
another in the calling thread (for benchmarks and debugging).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")
U = TypeVar("U")

_END = object()
_POLL_S = 0.1


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put ``item`` unless ``stop`` is set first; False when stopped."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue[Any], stop: threading.Event) -> Any:
    while True:
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            if stop.is_set():
                return _END


def pipeline(items: Iterable[T], process: Callable[[T], U], consume: Callable[[U], None], *, overlap: bool = True, depth: int = 4) -> None:
    """``consume(process(x))`` for each ``x`` of ``items``, in order, the three steps overlapped."""
    if not overlap:
        for item in items:
            consume(process(item))
        return
    decoded: queue.Queue[Any] = queue.Queue(maxsize=depth)
    processed: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            for item in items:
                if not _put(decoded, item, stop):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            errors.append(exc)
            stop.set()
        finally:
            _put(decoded, _END, stop)

    def drain() -> None:
        try:
            while (result := _get(processed, stop)) is not _END:
                consume(result)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            stop.set()

    reader = threading.Thread(target=produce, name="decode", daemon=True)
    writer = threading.Thread(target=drain, name="encode", daemon=True)
    reader.start()
    writer.start()
    try:
        while (item := _get(decoded, stop)) is not _END:
            if not _put(processed, process(item), stop):
                break
    except BaseException as exc:
        errors.append(exc)
        stop.set()
    finally:
        _put(processed, _END, stop)
        writer.join()
        stop.set()  # the reader may be blocked on a full queue after an error downstream
        reader.join()
    if errors:
        raise errors[0]
