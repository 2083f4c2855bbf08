"""What both hosts share: the model opened as `slomo interpolate` opens it, and the new frames of
each pair computed once however often and from however many threads a host asks for them."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Generic, TypeVar

from superslomo.errors import SloMoError

V = TypeVar("V")

# Pairs whose new frames stay cached: a host asks for a pair's frames one by one, in any order,
# from several threads; a few pairs cover the frames in flight, and memory stays flat.
DEFAULT_CACHE_PAIRS = 8


def note(line: str) -> None:
    """The model's notes (a first export, what auto chose) on stderr, as the CLI says them."""
    if line:
        print(f"slomo: note: {line}", file=sys.stderr, flush=True)


def open_interpolator(
    model: str | Path | None,
    backend: str,
    precision: str,
    size: tuple[int, int],
    say: Callable[[str], None] | None,
) -> tuple[object, str]:
    """The Interpolator and its label, chosen as `slomo interpolate` chooses for frames of `size`
    (WIDTH, HEIGHT): the same model, backend and precision give the same frames."""
    from superslomo.apps.models import open_model

    if not isinstance(backend, str) or not isinstance(precision, str):
        raise SloMoError("backend and precision are names, e.g. backend='onnxruntime', precision='fp32'")
    path = Path(model) if model is not None else None
    return open_model(path, backend, precision, size=size, say=say)


class _Entry:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: object = None
        self.error: BaseException | None = None


class PairCache(Generic[V]):
    """`get(key, compute)`: compute(key) once per key while the key stays among the `capacity`
    most recently used; threads asking for a key being computed wait for that computation."""

    def __init__(self, capacity: int = DEFAULT_CACHE_PAIRS) -> None:
        if capacity < 1:
            raise SloMoError(f"the pair cache holds at least one pair, got {capacity}")
        self.capacity = capacity
        self.computed = 0  # computations started (a test counts flows with it)
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, compute: Callable[[Hashable], V]) -> V:
        with self._lock:
            entry = self._entries.get(key)
            owner = entry is None
            if entry is None:
                entry = self._entries[key] = _Entry()
                self.computed += 1
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)  # waiters keep their entry object
            else:
                self._entries.move_to_end(key)
        if owner:
            try:
                entry.value = compute(key)
            except BaseException as error:
                entry.error = error
                with self._lock:
                    if self._entries.get(key) is entry:
                        del self._entries[key]  # a later request tries again
                raise
            finally:
                entry.done.set()
        else:
            entry.done.wait()
            if entry.error is not None:
                raise entry.error
        return entry.value  # type: ignore[return-value]
