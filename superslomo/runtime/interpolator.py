"""The Interpolator: what an app embeds. Pairs in, any number of in-between frames out.

Frames are HxWx3 uint8 RGB numpy arrays of any size. Flow is computed once per pair; every
requested time goes through the interpolation graph in batches. `run` is the streaming form:
a worker thread decodes ahead and computes the flow of pair k+1 while the caller's thread
synthesises the frames of pair k (both backends release the GIL while they compute).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from superslomo.contracts.frames import check_frame, frame_to_graph, graph_to_frames
from superslomo.errors import SloMoError
from superslomo.runtime.backend import Backend, HostPair
from superslomo.runtime.options import BackendOptions
from superslomo.runtime.staging import Stages


class NonFiniteOutput(SloMoError):
    """An engine produced NaN/Inf (typically fp16 overflow)."""


@dataclass
class PreparedPair:
    """A pair after the flow graph: the backend's handle (host arrays, or GPU buffers for
    TensorRT) and the frames' size before padding."""

    handle: Any
    height: int
    width: int
    released: bool = False


def schedule_times(times: Sequence[float], max_batch: int) -> list[list[float]]:
    """Split requested times into batches the interpolation graph can take at once."""
    if max_batch < 1:
        raise SloMoError(f"max_batch must be >= 1, got {max_batch}")
    if isinstance(times, (str, bytes)) or not isinstance(times, Iterable):
        raise SloMoError(f"times must be a sequence of numbers, got {type(times).__name__}")
    values = []
    for t in times:
        if not isinstance(t, numbers.Real):
            raise SloMoError(f"times must be numbers, got {t!r}")
        values.append(float(t))
    for t in values:
        if not (0.0 < t < 1.0):
            raise SloMoError(f"interpolation times must lie strictly between 0 and 1, got {t}")
    return [values[i : i + max_batch] for i in range(0, len(values), max_batch)]


def factor_times(factor: int) -> list[float]:
    if not isinstance(factor, int) or factor < 1:
        raise SloMoError(f"factor must be a whole number >= 1, got {factor!r}")
    return [i / factor for i in range(1, factor)]


def _check_finite(outputs: dict[str, np.ndarray], stage: str) -> None:
    for name, value in outputs.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise NonFiniteOutput(
                f"the {stage} graph produced NaN/Inf in {name!r} (fp16 overflow?): "
                "use an fp32 export or a smaller input range"
            )


class Interpolator:
    def __init__(self, backend: Backend, max_batch: int = 4, check_finite: bool = True) -> None:
        self.backend = backend
        # An engine's profiles cap the batch; asking for more would fail at the first frame.
        self.max_batch = min(max_batch, backend.max_batch or max_batch)
        self.check_finite = check_finite
        self.io = backend.manifest.io
        self.multiple = backend.manifest.size_multiple
        # Streams (`run`) still open: closed, their threads joined, before the backend closes.
        self._live_stages: set[Stages] = set()

    @classmethod
    def from_dir(cls, folder, backend: str | BackendOptions = "auto", max_batch: int = 4) -> Interpolator:
        """`backend`: a name or a typed options object (runtime/options.py)."""
        from superslomo.runtime.loader import open_backend

        return cls(open_backend(folder, backend), max_batch=max_batch)

    def activate(self) -> Interpolator:
        self.backend.activate()
        return self

    def close(self) -> None:
        """Close the backend, after every stream's threads (and so its model calls) have ended:
        a `run` left unfinished by its consumer is stopped here first."""
        for stages in list(self._live_stages):
            stages.close()
        self.backend.close()

    def __enter__(self) -> Interpolator:
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the two stages ------------------------------------------------------------------
    @staticmethod
    def check_pair(frame0: np.ndarray, frame1: np.ndarray) -> None:
        check_frame(frame0, "frame0")
        check_frame(frame1, "frame1")
        if frame0.shape != frame1.shape:
            raise SloMoError(
                f"frames differ in size: {frame0.shape[1]}x{frame0.shape[0]} "
                f"vs {frame1.shape[1]}x{frame1.shape[0]}"
            )

    def prepare(self, frame0: np.ndarray, frame1: np.ndarray) -> PreparedPair:
        self.check_pair(frame0, frame1)
        handle = self.backend.prepare(
            frame_to_graph(frame0, self.io, self.multiple), frame_to_graph(frame1, self.io, self.multiple)
        )
        if self.check_finite and isinstance(handle, HostPair):  # device flows show up in frame_t
            _check_finite({"flow01": handle.flow01, "flow10": handle.flow10}, "flow")
        return PreparedPair(handle, frame0.shape[0], frame0.shape[1])

    def synthesize(
        self, pair: PreparedPair, times: Sequence[float], as_float: bool = False
    ) -> list[np.ndarray]:
        frames: list[np.ndarray] = []
        for batch in schedule_times(times, self.max_batch):
            out = {"frame_t": self.backend.synthesize(pair.handle, batch)}
            if self.check_finite:
                _check_finite(out, "interp")
            frames.extend(graph_to_frames(out["frame_t"], pair.height, pair.width, self.io, as_float))
        return frames

    @property
    def queue_depth(self) -> int:
        """Prepared pairs a streaming consumer may queue between its flow thread and its
        synthesizing thread: besides the queue, one pair is being prepared and one synthesized,
        and a GPU backend holds only so many at once."""
        alive = self.backend.max_pairs_alive
        return 2 if alive is None else max(1, min(2, alive - 2))

    def release(self, pair: PreparedPair) -> None:
        """Done with a pair: a backend that keeps it on the device may reuse the memory. A second
        release of the same pair does nothing (a stopping stream may reach it twice)."""
        if not pair.released:
            pair.released = True
            self.backend.release(pair.handle)

    def flows(self, pair: PreparedPair) -> tuple[np.ndarray, np.ndarray]:
        """flow01, flow10 on the host in graph layout (padded): a copy where they live on a GPU."""
        return self.backend.host_flows(pair.handle)

    def interpolate(
        self, frame0: np.ndarray, frame1: np.ndarray, times: Sequence[float], as_float: bool = False
    ) -> list[np.ndarray]:
        """Frames at each of `times` (in (0,1)) between frame0 and frame1: HxWx3 uint8, or float32
        in [0,1] unclamped with `as_float` (for parity checks)."""
        values = [t for batch in schedule_times(times, self.max_batch) for t in batch]  # validated up front
        if not values:
            self.check_pair(frame0, frame1)  # no frames asked for, but bad ones are still refused
            return []
        pair = self.prepare(frame0, frame1)
        try:
            return self.synthesize(pair, values, as_float)
        finally:
            self.release(pair)

    # -- streaming ---------------------------------------------------------------------
    def run(self, frames: Iterable[np.ndarray], factor: int, pipelined: bool = True) -> Iterator[np.ndarray]:
        """Originals (unchanged) and factor-1 new frames between each consecutive pair, in order.
        Memory is bounded: at most two prepared pairs are in flight whatever the length."""
        times = factor_times(factor)
        if not pipelined:
            previous = None
            for frame in frames:
                if previous is not None:
                    if times:
                        yield from self.interpolate(previous, frame, times)
                yield frame
                previous = frame
            return
        yield from self._run_pipelined(iter(frames), times)

    def _run_pipelined(self, frames: Iterator[np.ndarray], times: list[float]) -> Iterator[np.ndarray]:
        def prepared() -> Iterator[tuple[PreparedPair | None, np.ndarray]]:
            previous = None
            for frame in frames:
                yield (self.prepare(previous, frame) if previous is not None and times else None), frame
                previous = frame

        def discard(item: tuple[PreparedPair | None, np.ndarray]) -> None:
            if item[0] is not None:
                self.release(item[0])

        with Stages() as stages:
            self._live_stages.add(stages)
            try:
                for pair, frame in stages.source(prepared(), self.queue_depth, "slomo-flow", discard):
                    if pair is not None:
                        try:
                            made = self.synthesize(pair, times)
                        finally:
                            self.release(pair)
                        yield from made
                    yield frame
            finally:
                self._live_stages.discard(stages)
