"""Stages on threads joined by bounded queues: the one helper behind `Interpolator.run` and the
video job (decode -> flow -> synthesis -> encode).

`background(items, depth)` runs an iterator on a worker thread and yields its items in order;
`Sink(write, depth)` runs `write` on a worker thread for the items put into it. Both bound their
queue (memory stays flat for any video length), hand a worker's exception to the consumer's thread
with its own traceback, and stop their worker when the consumer stops, so Ctrl-C in the main thread
ends every stage. The backends release the GIL while they compute, so stages really overlap.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_POLL = 0.1  # seconds between checks of the stop flag while a queue is full or empty
_DONE = object()


class Stopped(Exception):
    """The other side of a stage stopped: unwind quietly."""


def put_until_stopped(q: queue.Queue, item: object, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise Stopped
        try:
            q.put(item, timeout=_POLL)
            return
        except queue.Full:
            continue


def get_until_stopped(q: queue.Queue, stop: threading.Event) -> object:
    while True:
        if stop.is_set():
            raise Stopped
        try:
            return q.get(timeout=_POLL)
        except queue.Empty:
            continue


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def background(items: Iterator[T], depth: int, name: str) -> Iterator[T]:
    """`items`, produced on a thread of their own at most `depth` ahead of the consumer."""
    handoff: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                put_until_stopped(handoff, item, stop)
            put_until_stopped(handoff, _DONE, stop)
        except Stopped:
            pass
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            try:
                put_until_stopped(handoff, _Failure(error), stop)
            except Stopped:
                pass
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # a generator: stops the stages it pulls from in turn
                close()

    worker = threading.Thread(target=produce, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = get_until_stopped(handoff, stop)
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join(timeout=10)


class Sink(Generic[T]):
    """`write(item)` for each item put, on a thread of its own, at most `depth` behind."""

    def __init__(self, write: Callable[[T], None], depth: int, name: str) -> None:
        self._write = write
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._worker = threading.Thread(target=self._consume, name=name, daemon=True)
        self._worker.start()

    def _consume(self) -> None:
        try:
            while True:
                item = get_until_stopped(self._queue, self._stop)
                if item is _DONE:
                    return
                self._write(item)
        except Stopped:
            pass
        except BaseException as error:  # noqa: BLE001 - raised in the producer's thread by put/finish
            self._failure = error
            self._stop.set()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def put(self, item: T) -> None:
        try:
            put_until_stopped(self._queue, item, self._stop)
        except Stopped:
            self._raise_failure()
            raise
        self._raise_failure()

    def finish(self) -> None:
        """Wait until every item is written; raises the writer's error if it failed."""
        self.put(_DONE)  # type: ignore[arg-type]
        self._worker.join()
        self._raise_failure()

    def abort(self) -> None:
        self._stop.set()
        self._worker.join(timeout=10)
