"""How a job stops: the first error surfaces, no partial output stays, no thread runs on, the
backend is closed only after its last call returned, and every prepared pair goes back.

The stages' patience (how long a stopping stage is waited for before the owner says so) is made
short here, so a stall "beyond the patience" takes a fraction of a second."""

from __future__ import annotations

import _thread
import errno
import threading
import time

import numpy as np
import pytest
from videoclips import make_clip

from superslomo.contracts.manifest import Manifest
from superslomo.errors import SloMoError
from superslomo.runtime import Backend, Interpolator, staging
from superslomo.video import pipeline
from superslomo.video.pipeline import Options, interpolate_video

PATIENCE = 0.05  # seconds; every stall below lasts many times longer


@pytest.fixture(autouse=True)
def short_patience(monkeypatch):
    monkeypatch.setattr(staging, "JOIN_PATIENCE", PATIENCE)


@pytest.fixture(autouse=True)
def ctrl_c_is_keyboard_interrupt():
    """Python's own SIGINT handler (a CLI test in this process may have left the CLI's)."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _slomo_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("slomo-") and t.is_alive()]


class WatchedBackend(Backend):
    """Zero flow, cross-fade synthesis; counts calls in flight and pairs out, and records a close
    that came while a call was still running (on TensorRT: buffers freed under a kernel)."""

    name = "watched"

    def __init__(self, slow_pair: int | None = None, stall: float = 0.0, interrupt: bool = False) -> None:
        super().__init__(
            None,
            Manifest(kind="onnx", precision="fp32", warp="gridsample", io="float32", opset=17, graphs={}),
        )
        self.slow_pair, self.stall, self.interrupt = slow_pair, stall, interrupt
        self.lock = threading.Lock()
        self.busy = 0
        self.pairs_out = 0
        self.prepared = 0
        self.closed_while_busy = False

    def infer(self, graph, inputs):
        with self.lock:
            self.busy += 1
        try:
            f0, f1 = inputs["frame0"], inputs["frame1"]
            if graph == "flow":
                self.prepared += 1
                if self.prepared == self.slow_pair:
                    if self.interrupt:
                        _thread.interrupt_main()  # Ctrl-C, delivered to the main thread meanwhile
                    time.sleep(self.stall)
                zeros = np.zeros((f0.shape[0], 2, *f0.shape[2:]), np.float32)
                return {"flow01": zeros, "flow10": zeros}
            t = inputs["t"].reshape(-1, 1, 1, 1)
            return {"frame_t": (1 - t) * f0 + t * f1}
        finally:
            with self.lock:
                self.busy -= 1

    def prepare(self, frame0, frame1):
        pair = super().prepare(frame0, frame1)
        with self.lock:
            self.pairs_out += 1
        return pair

    def release(self, pair):
        with self.lock:
            self.pairs_out -= 1

    def close(self):
        with self.lock:
            self.closed_while_busy = self.closed_while_busy or self.busy > 0
        super().close()


def _frames(count: int):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    for i in range(count):
        yield np.roll(base, i, axis=1)


def test_ctrl_c_inside_a_slow_prepare_waits_for_it_before_the_backend_closes():
    backend = WatchedBackend(slow_pair=3, stall=20 * PATIENCE, interrupt=True)
    with pytest.raises(KeyboardInterrupt):
        with Interpolator(backend, check_finite=False) as interp:
            for _ in interp.run(_frames(40), 2):
                pass
    assert not backend.closed_while_busy, "the backend was closed under a running prepare"
    assert backend.pairs_out == 0, f"{backend.pairs_out} prepared pairs were never released"
    assert _slomo_threads() == []


def test_a_consumer_that_stops_early_releases_every_queued_pair():
    backend = WatchedBackend()
    with Interpolator(backend, check_finite=False) as interp:
        stream = interp.run(_frames(40), 2)
        next(stream)
        next(stream)
        time.sleep(0.2)  # the flow thread fills the queue meanwhile
        stream.close()
    assert backend.pairs_out == 0, f"{backend.pairs_out} prepared pairs were never released"
    assert _slomo_threads() == []


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clips") / "shapes.mp4", frames=12, size=(90, 50), rate=24)


def _disk_full_at(monkeypatch, count: int) -> None:
    from superslomo.video import encode

    real_write = encode.VideoWriter.write

    def failing_write(self, frame):
        if self.count == count:
            raise encode.write_error(OSError(errno.ENOSPC, "No space left on device"), self.output)
        real_write(self, frame)

    monkeypatch.setattr(encode.VideoWriter, "write", failing_write)


def test_disk_full_while_the_reader_stalls_keeps_the_real_error_and_leaves_nothing(
    clip, tmp_path, monkeypatch
):
    # The encoder fails while the decoder is stuck in a read (a network mount, a pipe) for far
    # longer than the stages' patience: the disk-full error must surface (not "generator already
    # executing"), the partial file must go, and no stage may run on.
    real_decode = pipeline.decode_frames

    def stalling_decode(*args, **kwargs):
        for index, item in enumerate(real_decode(*args, **kwargs)):
            if index == 3:
                time.sleep(30 * PATIENCE)
            yield item

    monkeypatch.setattr(pipeline, "decode_frames", stalling_decode)
    _disk_full_at(monkeypatch, 2)
    out = tmp_path / "out"
    out.mkdir()
    backend = WatchedBackend()
    with pytest.raises(SloMoError, match="disk full"):
        with Interpolator(backend, check_finite=False) as interp:
            interpolate_video(clip, out / "o.mp4", interp, "watched", Options(), progress=False, say=print)
    assert list(out.iterdir()) == [], "a partial output was left behind"
    assert _slomo_threads() == []
    assert not backend.closed_while_busy and backend.pairs_out == 0


def test_ctrl_c_inside_a_slow_prepare_of_the_video_job_leaves_nothing(clip, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    backend = WatchedBackend(slow_pair=4, stall=20 * PATIENCE, interrupt=True)
    with pytest.raises(KeyboardInterrupt):
        with Interpolator(backend, check_finite=False) as interp:
            interpolate_video(clip, out / "o.mp4", interp, "watched", Options(), progress=False, say=print)
    assert not backend.closed_while_busy, "the backend was closed under a running prepare"
    assert backend.pairs_out == 0, f"{backend.pairs_out} prepared pairs were never released"
    assert list(out.iterdir()) == [], "a partial output was left behind"
    assert _slomo_threads() == []


def test_ctrl_c_while_the_reader_stalls_surfaces_as_itself(clip, tmp_path, monkeypatch):
    # Ctrl-C lands while the decoder is stuck in a read beyond the stages' patience, the flow
    # thread waiting on it: the interrupt is what surfaces, and the job cleans up behind it.
    real_decode = pipeline.decode_frames

    def stalling_decode(*args, **kwargs):
        for index, item in enumerate(real_decode(*args, **kwargs)):
            if index == 4:
                _thread.interrupt_main()
                time.sleep(30 * PATIENCE)
            yield item

    monkeypatch.setattr(pipeline, "decode_frames", stalling_decode)
    out = tmp_path / "out"
    out.mkdir()
    backend = WatchedBackend()
    with pytest.raises(KeyboardInterrupt):
        with Interpolator(backend, check_finite=False) as interp:
            interpolate_video(clip, out / "o.mp4", interp, "watched", Options(), progress=False, say=print)
    assert list(out.iterdir()) == [], "a partial output was left behind"
    assert _slomo_threads() == []
    assert not backend.closed_while_busy and backend.pairs_out == 0


class RingBackend(WatchedBackend):
    """Host pairs behind a ring of slots, as TensorRT keeps them on the GPU: prepare waits while
    every slot is held (runtime/pair_ring.py, the TensorRT backend's bookkeeping)."""

    def __init__(self, slots: int = 3) -> None:
        from superslomo.runtime.pair_ring import PairRing

        super().__init__()
        self.ring = PairRing(slots, wait_s=30)

    @property
    def max_pairs_alive(self):
        return self.ring.slots

    def prepare(self, frame0, frame1):
        slot = self.ring.acquire()
        return super().prepare(frame0, frame1), slot

    def synthesize(self, pair, times):
        return super().synthesize(pair[0], times)

    def release(self, pair):
        self.ring.release(*pair[1])


def test_stopping_a_stream_whose_flow_thread_waits_for_a_ring_slot():
    # A ring of one slot: the flow thread queues its pair and then waits in prepare for the slot
    # that pair holds. Stopping must give the queued pair back before joining the flow thread,
    # or the join waits for the ring's timeout.
    backend = RingBackend(slots=1)
    with Interpolator(backend, check_finite=False) as interp:
        stream = interp.run(_frames(40), 2)
        next(stream)  # the first original: no pair in the consumer's hand
        deadline = time.time() + 10
        while backend.ring.free and time.time() < deadline:
            time.sleep(0.01)
        assert backend.ring.free == 0, "the flow thread never took the slot"
        time.sleep(0.3)  # by now it waits in prepare for the next
        began = time.perf_counter()
        stream.close()
        assert time.perf_counter() - began < 5
    assert backend.ring.free == 1 and _slomo_threads() == []
