"""Property tests of the runtime's arithmetic that every frame goes through: padding to the graphs'
size multiple and cropping back, and how requested times become batches."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superslomo.contracts.frames import crop_frame, pad_frame, padded_size
from superslomo.contracts.graph_io import SIZE_MULTIPLE
from superslomo.contracts.manifest import Manifest
from superslomo.errors import SloMoError
from superslomo.runtime import Backend, Interpolator, factor_times, schedule_times

FUZZ = settings(max_examples=150, deadline=None)
sides = st.integers(min_value=1, max_value=200)
inside = st.floats(min_value=0.0, max_value=1.0, exclude_min=True, exclude_max=True, allow_subnormal=False)


def _frame(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@FUZZ
@given(height=sides, width=sides, seed=st.integers(0, 2**32 - 1))
def test_padding_replicates_edges_and_crops_back_exactly(height: int, width: int, seed: int) -> None:
    frame = _frame(height, width, seed)
    padded = pad_frame(frame)
    ph, pw = padded.shape[:2]
    assert (ph, pw) == padded_size(height, width)
    # Multiples of 32, and the smallest ones that hold the frame.
    assert ph % SIZE_MULTIPLE == 0 and pw % SIZE_MULTIPLE == 0
    assert height <= ph < height + SIZE_MULTIPLE and width <= pw < width + SIZE_MULTIPLE
    np.testing.assert_array_equal(padded[:height, :width], frame)
    # New pixels repeat the last row / column: no black seam for the convolutions to see.
    np.testing.assert_array_equal(
        padded[height:, :width], np.broadcast_to(frame[-1:], (ph - height, width, 3))
    )
    np.testing.assert_array_equal(
        padded[:, width:], np.broadcast_to(padded[:, width - 1 : width], (ph, pw - width, 3))
    )
    np.testing.assert_array_equal(crop_frame(padded, height, width), frame)


@FUZZ
@given(height=sides, width=sides, multiple=st.integers(1, 64))
def test_padded_size_is_the_least_multiple(height: int, width: int, multiple: int) -> None:
    ph, pw = padded_size(height, width, multiple)
    for size, padded in ((height, ph), (width, pw)):
        assert padded % multiple == 0 and padded >= size and padded - multiple < size


class EchoBackend(Backend):
    """A stand-in model whose output says what it was given: frame_t is frame0 with the blue
    channel replaced by t, so a test can see both the pixels and the time of every output. It
    overrides `infer` itself and inherits the pair protocol from the runtime's base class."""

    name = "echo"

    def __init__(self, io: str) -> None:
        super().__init__(
            None, Manifest(kind="onnx", precision="fp32", warp="gridsample", io=io, opset=17, graphs={})
        )
        self.batches: list[int] = []

    def infer(self, graph, inputs):
        f0 = inputs["frame0"]
        if graph == "flow":
            shape = (f0.shape[0], 2, *(f0.shape[1:3] if self.manifest.io == "uint8" else f0.shape[2:]))
            return {"flow01": np.zeros(shape, np.float32), "flow10": np.zeros(shape, np.float32)}
        t = inputs["t"]
        self.batches.append(len(t))
        out = f0.copy()
        if self.manifest.io == "uint8":
            out[..., 2] = np.round(t * 255).astype(np.uint8)[:, None, None]
        else:
            out[:, 2] = t[:, None, None]
        return {"frame_t": out}


@FUZZ
@given(
    height=sides,
    width=sides,
    seed=st.integers(0, 2**32 - 1),
    io=st.sampled_from(["float32", "uint8"]),
    times=st.lists(inside, min_size=1, max_size=9),
    max_batch=st.integers(1, 5),
)
def test_interpolator_round_trips_any_size_and_keeps_time_order(
    height, width, seed, io, times, max_batch
) -> None:
    frame = _frame(height, width, seed)
    backend = EchoBackend(io)
    out = Interpolator(backend, max_batch=max_batch).interpolate(frame, frame, times)
    assert len(out) == len(times) and backend.batches == [len(b) for b in schedule_times(times, max_batch)]
    for t, image in zip(times, out, strict=False):
        assert image.shape == frame.shape and image.dtype == np.uint8
        np.testing.assert_array_equal(image[..., :2], frame[..., :2])  # padded, run, cropped: exact
        assert np.all(np.abs(image[..., 2].astype(np.float64) - t * 255.0) <= 1.0)  # this output's own t


@FUZZ
@given(times=st.lists(inside, max_size=40), max_batch=st.integers(1, 16))
def test_batches_cover_every_time_once_in_order(times: list[float], max_batch: int) -> None:
    batches = schedule_times(times, max_batch)
    assert [t for batch in batches for t in batch] == times
    assert len(batches) == math.ceil(len(times) / max_batch)
    assert all(len(batch) == max_batch for batch in batches[:-1])
    assert all(1 <= len(batch) <= max_batch for batch in batches)


@FUZZ
@given(
    times=st.lists(inside, max_size=10),
    bad=st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0), st.just(math.nan)),
    where=st.integers(0, 10),
)
def test_any_time_outside_the_open_interval_is_refused(times: list[float], bad: float, where: int) -> None:
    times.insert(min(where, len(times)), bad)
    with pytest.raises(SloMoError, match="strictly between 0 and 1"):
        schedule_times(times, 4)


@FUZZ
@given(factor=st.integers(1, 5000), max_batch=st.integers(1, 16))
def test_factor_times_are_evenly_spaced_and_strictly_inside(factor: int, max_batch: int) -> None:
    times = factor_times(factor)
    assert len(times) == factor - 1
    assert all(0.0 < t < 1.0 for t in times)
    assert all(a < b for a, b in itertools.pairwise(times))
    assert all(math.isclose(t * factor, i, rel_tol=1e-12) for i, t in enumerate(times, 1))
    assert [t for batch in schedule_times(times, max_batch) for t in batch] == times


@pytest.mark.parametrize("factor", [0, -3, 2.5, "4"])
def test_factor_must_be_a_whole_number_of_at_least_one(factor) -> None:
    with pytest.raises(SloMoError, match="whole number >= 1"):
        factor_times(factor)
