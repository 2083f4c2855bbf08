"""The one owner of a job's threads: stages joined by bounded queues, behind `Interpolator.run`
and the video job (decode -> flow -> synthesis -> encode).

A `Stages` owns every thread of one job and one stop signal for all of them:

- `source(items, depth, name, discard)` runs an iterator on a thread of its own and yields its
  items in order; `sink(write, depth, name)` runs `write` on a thread for the items put into it;
  `callback(fn)` registers a clean-up (a writer's abort, an audio source's close). Queues are
  bounded, so memory stays flat for any video length.
- The first error of any stage (or of the consumer: Ctrl-C, a failed synthesis) is kept, the stop
  signal set, and that error is what the consumer raises: a stage stopped by another never
  replaces it with an error of its own.
- Leaving the `with` block shuts down the sinks first (the pipeline's far end), then the rest in
  reverse order of registration: each thread is joined
  until it has ended, never abandoned, so a model call in flight returns before the caller
  closes the backend (on TensorRT, before its buffers and stream are freed). Past `patience`
  seconds the owner says which stage it still waits for (a stalled read, a long model call).
  Items a stopped producer still held or had queued, and the one the consumer held, go to
  `discard` (a prepared pair back to its backend), after the producer's thread ended.
- A generator is closed only by the thread that runs it.

The backends release the GIL while they compute, so stages really overlap.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_POLL = 0.1  # seconds between checks of the stop signal while a queue is full or empty
_DONE = object()
JOIN_PATIENCE = 10.0  # seconds a stopping stage is waited for before the owner says so


class Stopped(Exception):
    """Another stage stopped the job: unwind quietly (the owner raises the first error)."""


class _Failed(Stopped):
    """The source failed after the items already queued: they were delivered, now unwind."""


_FAILED = object()  # queued after a source's last good item when it failed


def put_until_stopped(q: queue.Queue, item: object, stop: threading.Event) -> None:
    """Put, waking every _POLL seconds to give up with Stopped once `stop` is set."""
    while True:
        if stop.is_set():
            raise Stopped
        try:
            q.put(item, timeout=_POLL)
            return
        except queue.Full:
            continue


def get_until_stopped(q: queue.Queue, stop: threading.Event) -> object:
    """Get, waking every _POLL seconds to give up with Stopped once `stop` is set."""
    while True:
        if stop.is_set():
            raise Stopped
        try:
            return q.get(timeout=_POLL)
        except queue.Empty:
            continue


class Stages:
    """The threads of one job, one stop signal, the first error; a context manager."""

    def __init__(self, patience: float | None = None, say: Callable[[str], None] | None = None) -> None:
        self.stop = threading.Event()
        self.patience = JOIN_PATIENCE if patience is None else patience
        self._say = say
        self._lock = threading.Lock()
        self._first: BaseException | None = None
        self._exits: list[Callable[[], None]] = []  # run in reverse order by close()
        self._sinks: list[Callable[[], None]] = []  # joined first: the pipeline's far end
        self._closed = False

    # -- errors --------------------------------------------------------------------------
    def fail(self, error: BaseException) -> None:
        """Record `error` unless an earlier one is kept, and stop every stage."""
        self._keep(error)
        self.stop.set()

    def _keep(self, error: BaseException) -> None:
        with self._lock:
            if self._first is None:
                self._first = error

    @property
    def error(self) -> BaseException | None:
        return self._first

    # -- queues --------------------------------------------------------------------------
    def _put(self, q: queue.Queue, item: object) -> None:
        put_until_stopped(q, item, self.stop)

    def _get(self, q: queue.Queue) -> object:
        return get_until_stopped(q, self.stop)

    # -- stages --------------------------------------------------------------------------
    def _start(self, name: str, target: Callable[[], None], sink: bool = False) -> None:
        if self._closed:
            raise RuntimeError("the stages are closed")

        def run() -> None:
            try:
                target()
            except Stopped:
                pass
            except BaseException as error:  # noqa: BLE001 - kept, and raised in the consumer's thread
                self.fail(error)

        thread = threading.Thread(target=run, name=name, daemon=True)
        (self._sinks if sink else self._exits).append(lambda: self._join(thread))
        thread.start()

    def _join(self, thread: threading.Thread) -> None:
        thread.join(self.patience)
        if thread.is_alive():
            if self._say is not None:
                self._say(f"note: waiting for the {thread.name} stage to finish its current step")
            thread.join()

    def callback(self, fn: Callable[[], None]) -> None:
        """Run `fn` at close, in reverse order of registration with the threads."""
        self._exits.append(fn)

    def source(
        self,
        items: Iterator[T],
        depth: int,
        name: str,
        discard: Callable[[T], None] | None = None,
    ) -> Iterator[T]:
        """`items`, produced on a thread of their own at most `depth` ahead of the consumer.
        `discard(item)`: what to do with an item the consumer will never see, or was handed when
        it stopped (so it must do nothing to an item already dealt with)."""
        handoff: queue.Queue = queue.Queue(maxsize=max(1, depth))
        held: list[T] = []  # produced, not yet queued when the stop came
        in_hand: list[T] = []  # yielded to the consumer, which has not asked for the next yet

        def produce() -> None:
            try:
                for item in items:
                    held.append(item)
                    self._put(handoff, item)
                    held.pop()
                self._put(handoff, _DONE)
            except _Failed:  # upstream failed: pass it on behind the items already queued
                self._put(handoff, _FAILED)
            except Stopped:
                pass
            except BaseException as error:  # noqa: BLE001 - kept now, raised after the queued items
                self._keep(error)
                self._put(handoff, _FAILED)
            finally:
                close = getattr(items, "close", None)
                if close is not None:  # a generator, closed by the thread that ran it
                    close()

        def drain(joined: bool = True) -> None:  # what the producer made that nobody will use
            leftovers = [*in_hand, *held] if joined else [*in_hand]
            with contextlib.suppress(queue.Empty):
                while True:
                    leftovers.append(handoff.get_nowait())
            if discard is not None:
                for item in leftovers:
                    if item is not _DONE and item is not _FAILED:
                        discard(item)

        self._exits.append(drain)  # after the producer ended: the rest
        self._start(name, produce)
        # Before joining the producer as well: a producer that waits for what queued items hold
        # (a TensorRT ring slot) can only finish once they are given back.
        self._exits.append(lambda: drain(joined=False))
        return self._consume(handoff, in_hand)

    def _consume(self, handoff: queue.Queue, in_hand: list) -> Iterator[T]:
        while True:
            item = self._get(handoff)
            if item is _DONE:
                return
            if item is _FAILED:
                raise _Failed
            # In the consumer's hand until it asks for the next: Ctrl-C may land before the
            # consumer's own clean-up covers it, so `discard` must be safe to call on an item the
            # consumer already finished with.
            in_hand.append(item)
            yield item  # type: ignore[misc]
            in_hand.clear()

    def sink(self, write: Callable[[T], None], depth: int, name: str) -> Sink[T]:
        """`write(item)` for each item put, on a thread of its own, at most `depth` behind."""
        return Sink(self, write, depth, name)

    # -- shutdown ------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every stage and wait for each, in reverse order; then the callbacks' clean-up."""
        self.stop.set()
        self._closed = True
        failures: list[BaseException] = []
        while self._sinks or self._exits:
            step = (self._sinks or self._exits).pop()
            try:
                step()
            except BaseException as error:  # noqa: BLE001 - every step runs; the first error is kept
                failures.append(error)
        for error in failures:
            self.fail(error)

    def __enter__(self) -> Stages:
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if error is not None and not isinstance(error, (Stopped, GeneratorExit)):
            self.fail(error)  # the consumer's own (Ctrl-C, a failed synthesis): first unless one came before
        self.close()
        first = self._first
        if first is not None and first is not error:
            raise first
        return False


class Sink(Generic[T]):
    """`write(item)` on a stage thread for every item put; made by `Stages.sink`."""

    def __init__(self, stages: Stages, write: Callable[[T], None], depth: int, name: str) -> None:
        self._stages = stages
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._done = threading.Event()

        def consume() -> None:
            while True:
                item = stages._get(self._queue)
                if item is _DONE:
                    self._done.set()
                    return
                write(item)

        stages._start(name, consume, sink=True)

    def put(self, item: T) -> None:
        self._stages._put(self._queue, item)

    def finish(self) -> None:
        """Wait until every item is written (the owner raises the writer's error, if any)."""
        self.put(_DONE)  # type: ignore[arg-type]
        while not self._done.wait(_POLL):
            if self._stages.stop.is_set():
                raise Stopped


def background(
    items: Iterator[T], depth: int, name: str, discard: Callable[[T], None] | None = None
) -> Iterator[T]:
    """`items` produced on a thread of its own by a `Stages` of one source, closed with the
    consumer: the simple case (a worker's error raised in the consumer, the thread joined)."""
    with Stages() as stages:
        yield from stages.source(items, depth, name, discard)
