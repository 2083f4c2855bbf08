"""Bookkeeping of the TensorRT backend's device memory, pure Python (tested without a GPU):

- `PairRing`: the ring of prepared-pair slots. `acquire` takes a free slot and blocks while every
  slot is held (backpressure: a flow thread waits for the synthesizing thread to release a
  pair instead of overwriting it); `release` returns it; a handle is valid while its slot still
  carries the generation it was given. `reset` (the backend deactivated) invalidates every
  handle.
- `ShapeCache`: the buffers an engine keeps per (shape, slot), least recently used evicted past
  a bound, never one still in use.

Neither touches CUDA: the backend holds the device buffers and frees what the cache evicts.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from superslomo.errors import SloMoError

V = TypeVar("V")
DEFAULT_WAIT_S = 60.0  # a slot held this long means the caller keeps pairs it never releases


class PairRing:
    def __init__(self, slots: int, wait_s: float = DEFAULT_WAIT_S) -> None:
        if slots < 1:
            raise SloMoError(f"a pair ring needs at least one slot, got {slots}")
        self.slots = slots
        self.wait_s = wait_s
        self._changed = threading.Condition()
        # Free slots, oldest released first: the slot reused next is the one whose last reader
        # has had the longest to finish.
        self._free: deque[int] = deque(range(slots))
        self._generation: list[int | None] = [None] * slots  # None: free
        self._counter = itertools.count(1)  # never repeats, so no stale handle matches again

    def acquire(self) -> tuple[int, int]:
        """(slot, generation) of a free slot, waiting up to `wait_s` for one."""
        with self._changed:
            if not self._changed.wait_for(lambda: bool(self._free), timeout=self.wait_s):
                raise SloMoError(
                    f"all {self.slots} prepared-pair slots stayed held for {self.wait_s:g} s: release "
                    "pairs when done with them (Interpolator.release), or raise TensorRTOptions.pair_slots"
                )
            slot = self._free.popleft()
            generation = next(self._counter)
            self._generation[slot] = generation
            return slot, generation

    def release(self, slot: int, generation: int) -> None:
        """Return the slot; a handle released twice, or after `reset`, changes nothing."""
        with self._changed:
            if self._generation[slot] == generation:
                self._generation[slot] = None
                self._free.append(slot)
                self._changed.notify()

    def is_alive(self, slot: int, generation: int) -> bool:
        with self._changed:
            return self._generation[slot] == generation

    def held(self, slot: int) -> bool:
        with self._changed:
            return self._generation[slot] is not None

    @property
    def free(self) -> int:
        with self._changed:
            return len(self._free)

    def reset(self) -> None:
        """Every slot free, every handle given so far invalid (the device memory is gone)."""
        with self._changed:
            self._generation = [None] * self.slots
            self._free = deque(range(self.slots))
            self._changed.notify_all()


class ShapeCache(Generic[V]):
    """Values by key, at most `capacity` of them: the least recently used one that `in_use` does
    not protect is evicted (and handed to `free`) when a new one comes. Not thread-safe: the
    engine's lock guards it."""

    def __init__(self, capacity: int, free: Callable[[V], None]) -> None:
        if capacity < 1:
            raise SloMoError(f"a shape cache needs room for one entry, got {capacity}")
        self.capacity = capacity
        self._free = free
        self._entries: OrderedDict[Hashable, V] = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], V], in_use: Callable[[Hashable], bool]) -> V:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = make()
        self._entries[key] = value
        for old in list(self._entries):
            if len(self._entries) <= self.capacity:
                break
            if old != key and not in_use(old):
                self._free(self._entries.pop(old))
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def values(self) -> list[V]:
        return list(self._entries.values())

    def clear(self) -> None:
        entries, self._entries = list(self._entries.values()), OrderedDict()
        for value in entries:
            self._free(value)
