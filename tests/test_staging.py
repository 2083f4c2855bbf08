"""The staged-pipeline helper and the video job's pure planning parts, driven without a model."""

from __future__ import annotations

import threading
import time
from fractions import Fraction

import numpy as np
import pytest

from superslomo.runtime.staging import Stages, background
from superslomo.video.pipeline import Summary, job_frames, pair_jobs
from superslomo.video.scenes import SceneDetector
from superslomo.video.timing import Timeline


def test_background_keeps_order_and_bounds_how_far_it_runs_ahead():
    produced = []

    def items():
        for i in range(20):
            produced.append(i)
            yield i

    seen = []
    for item in background(items(), depth=2, name="test"):
        time.sleep(0.01)
        # queue of 2, one in the consumer's hand, one being produced: never further ahead
        assert len(produced) - len(seen) <= 4
        seen.append(item)
    assert seen == list(range(20))


def test_background_hands_the_workers_error_to_the_consumer():
    def items():
        yield 1
        raise ValueError("bad frame 2")

    got = []
    with pytest.raises(ValueError, match="bad frame 2"):
        for item in background(items(), depth=1, name="test"):
            got.append(item)
    assert got == [1]


def test_a_consumer_that_stops_early_stops_the_producer_and_its_upstream():
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    stream = background(background(endless(), 2, "upstream"), 2, "downstream")
    assert next(stream) == 0
    stream.close()
    assert closed.wait(5), "the upstream generator was never closed"
    assert not [t for t in threading.enumerate() if t.name in ("upstream", "downstream")]


def test_sink_writes_in_order_and_raises_the_writers_error_in_the_producer():
    written = []
    with Stages() as stages:
        sink = stages.sink(written.append, 2, "test-sink")
        for i in range(10):
            sink.put(i)
        sink.finish()
    assert written == list(range(10))

    def write(item):
        if item == 3:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with Stages() as stages:
            failing = stages.sink(write, 1, "test-sink")
            for i in range(50):
                failing.put(i)
            failing.finish()


def test_the_first_error_is_kept_when_every_stage_fails():
    # The decoder fails; the flow stage, stopped by it, must not replace its error with its own.
    def decode():
        yield 1
        raise ValueError("corrupt frame 2")

    def flow(frames):
        try:
            yield from frames
        finally:
            raise RuntimeError("the flow stage's own unwinding error")

    with pytest.raises(ValueError, match="corrupt frame 2"):
        with Stages() as stages:
            for _ in stages.source(flow(stages.source(decode(), 1, "test-decode")), 1, "test-flow"):
                pass


def _frame(value: int) -> np.ndarray:
    rng = np.random.default_rng(value)
    return rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)


def test_pair_jobs_plan_slots_cuts_and_held_frames_without_a_model():
    # 4 frames at 10 fps, x2: one new frame per pair, none across the cut (frame 2 is unrelated
    # to frame 1 in colour) nor between the two identical frames; the last is held once.
    a = np.full((16, 16, 3), 40, np.uint8)
    b = a.copy()
    b[:8] += 5
    cut = np.full((16, 16, 3), 220, np.uint8)
    decoded = [(a, Fraction(0), "n0"), (b, Fraction(1, 10), "n1"), (cut, Fraction(2, 10), "n2")]
    decoded.append((cut.copy(), Fraction(3, 10), "n3"))
    prepared = []
    jobs = list(
        pair_jobs(
            decoded,
            Timeline(Fraction(20), 1),
            SceneDetector(),
            lambda f0, f1: prepared.append((f0, f1)) or "pair",
            0.1,
        )
    )
    assert [(j.cut, j.same, j.times) for j in jobs] == [
        (False, False, [0.5]),
        (True, False, []),
        (False, True, []),
        (False, False, []),
    ]
    assert len(prepared) == 1 and jobs[0].pair == "pair" and jobs[-1].frame1 is None
    summary = Summary(input=None, output=None, backend="none")  # type: ignore[arg-type]
    out = [f for job in jobs for f in job_frames(job, ["new"] if job.times else [], summary)]
    # the cut holds the nearer original; the identical pair repeats; the last frame is held
    assert out == ["n0", "new", "n1", "n2", "n2", "n3", "n3", "n3"]
    assert (summary.new_frames, summary.held_frames, summary.frames_out) == (1, 2, 8)
