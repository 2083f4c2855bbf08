"""The TensorRT backend's slot bookkeeping (runtime/pair_ring.py), pure Python, on the CPU.

This tests the bookkeeping only, not TensorRT: the ring and cache hold no device memory here.
The GPU suite (tests/gpu/test_engine_gpu.py) runs the same rules on real engines. Beside it, an
Interpolator on the CPU runtimes is used from two threads for real."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from superslomo.errors import SloMoError
from superslomo.runtime.pair_ring import PairRing, ShapeCache


def test_acquire_blocks_while_every_slot_is_held_and_release_wakes_it():
    ring = PairRing(2, wait_s=10)
    first, second = ring.acquire(), ring.acquire()
    assert {first[0], second[0]} == {0, 1} and ring.free == 0
    threading.Timer(0.3, ring.release, args=first).start()
    began = time.perf_counter()
    third = ring.acquire()
    assert time.perf_counter() - began >= 0.25, "acquire did not wait for the release"
    assert third[0] == first[0] and third[1] != first[1]
    assert not ring.is_alive(*first) and ring.is_alive(*third)


def test_a_ring_held_too_long_is_refused_in_one_line():
    ring = PairRing(1, wait_s=0.05)
    ring.acquire()
    with pytest.raises(SloMoError, match="all 1 prepared-pair slots stayed held") as caught:
        ring.acquire()
    assert "\n" not in str(caught.value)


def test_release_twice_or_after_reset_changes_nothing():
    ring = PairRing(2, wait_s=0.05)
    handle = ring.acquire()
    ring.release(*handle)
    ring.release(*handle)  # twice: the slot is not freed a second time
    assert ring.free == 2
    other = ring.acquire()
    ring.release(*handle)  # a stale handle of a reused slot must not free the new pair's slot
    assert ring.is_alive(*other) and ring.free == 1
    ring.reset()  # the backend deactivated: every handle invalid, every slot free
    assert not ring.is_alive(*other) and ring.free == 2
    again = ring.acquire()
    assert again[1] not in (handle[1], other[1]), "a generation repeated after reset"


def test_slots_are_reused_oldest_released_first():
    ring = PairRing(3)
    handles = [ring.acquire() for _ in range(3)]
    for handle in (handles[1], handles[0], handles[2]):
        ring.release(*handle)
    assert [ring.acquire()[0] for _ in range(3)] == [1, 0, 2]


def test_many_threads_never_share_a_slot():
    ring = PairRing(3, wait_s=10)
    owners: dict[int, int] = {}
    clash = []

    def work(me: int) -> None:
        for _ in range(200):
            slot, generation = ring.acquire()
            if owners.setdefault(slot, me) != me:
                clash.append(slot)
            owners.pop(slot)
            ring.release(slot, generation)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not clash and ring.free == 3


def test_shape_cache_evicts_the_least_recently_used_that_is_not_in_use():
    freed = []
    cache: ShapeCache[str] = ShapeCache(2, freed.append)
    busy = {"a"}
    cache.get("a", lambda: "A", busy.__contains__)
    cache.get("b", lambda: "B", busy.__contains__)
    cache.get("c", lambda: "C", busy.__contains__)  # "a" is older but in use: "b" goes
    assert freed == ["B"] and "a" in cache and "c" in cache
    cache.get("a", lambda: "never", busy.__contains__)  # a hit: refreshed, nothing made
    busy.clear()
    cache.get("d", lambda: "D", busy.__contains__)  # "c" is now the least recently used
    assert freed == ["B", "C"] and len(cache) == 2
    cache.clear()
    assert sorted(freed) == ["A", "B", "C", "D"] and len(cache) == 0


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_two_threads_on_one_interpolator_give_one_threads_frames(onnx_model, backend):
    if backend == "openvino":
        pytest.importorskip("openvino", reason="the openvino extra is not installed")
    from superslomo.runtime import Interpolator

    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(5)]
    times = [0.25, 0.5, 0.75]
    with Interpolator.from_dir(onnx_model, backend, max_batch=2) as interp:
        alone = [interp.interpolate(frames[k], frames[k + 1], times) for k in range(4)]
        together: dict[int, list] = {}
        failures: list[BaseException] = []

        def work(indices) -> None:
            try:
                for _ in range(3):
                    for k in indices:
                        together[k] = interp.interpolate(frames[k], frames[k + 1], times)
            except BaseException as error:  # noqa: BLE001 - reported by the main thread
                failures.append(error)

        threads = [threading.Thread(target=work, args=(range(j, 4, 2),)) for j in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not failures, failures
    for k in range(4):
        for a, b in zip(alone[k], together[k], strict=True):
            assert np.array_equal(a, b), f"pair {k}: two threads gave other frames than one"
