"""The Interpolator: what an app embeds. Pairs in, any number of in-between frames out.

Frames are HxWx3 uint8 RGB numpy arrays of any size. Flow is computed once per pair; every
requested time goes through the interpolation graph in batches. `run` is the streaming form:
a worker thread decodes ahead and computes the flow of pair k+1 while the caller's thread
synthesises the frames of pair k (both backends release the GIL while they compute).
"""

from __future__ import annotations

import numbers
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from superslomo.contracts.frames import check_frame, crop_frame, pad_frame
from superslomo.errors import SloMoError
from superslomo.runtime.backend import Backend


class NonFiniteOutput(SloMoError):
    """An engine produced NaN/Inf (typically fp16 overflow)."""


@dataclass
class PreparedPair:
    frame0: np.ndarray  # graph layout, padded
    frame1: np.ndarray
    flow01: np.ndarray
    flow10: np.ndarray
    height: int
    width: int


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
        self.max_batch = min(max_batch, getattr(backend, "max_batch", max_batch))
        self.check_finite = check_finite
        self.uint8_io = backend.manifest.io == "uint8"
        self.multiple = backend.manifest.size_multiple

    @classmethod
    def from_dir(
        cls, folder, backend: str = "auto", device: int = 0, max_batch: int = 4, **options
    ) -> Interpolator:
        from superslomo.runtime.loader import open_backend

        return cls(open_backend(folder, backend=backend, device=device, **options), max_batch=max_batch)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Interpolator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- graph layout --------------------------------------------------------------------
    def _to_graph(self, frame: np.ndarray) -> np.ndarray:
        padded = pad_frame(frame, self.multiple)
        if self.uint8_io:
            return np.ascontiguousarray(padded[None])
        return np.ascontiguousarray(padded.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)

    def _from_graph(self, frames: np.ndarray, height: int, width: int, as_float: bool) -> list[np.ndarray]:
        result = []
        for frame in frames:
            if self.uint8_io:
                image = crop_frame(frame, height, width)
                result.append(image.astype(np.float32) / 255.0 if as_float else np.ascontiguousarray(image))
                continue
            image = crop_frame(frame.transpose(1, 2, 0), height, width)
            if as_float:
                result.append(np.ascontiguousarray(image))
            else:
                result.append((np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
        return result

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
        g0, g1 = self._to_graph(frame0), self._to_graph(frame1)
        flows = self.backend.infer("flow", {"frame0": g0, "frame1": g1})
        if self.check_finite:
            _check_finite(flows, "flow")
        return PreparedPair(g0, g1, flows["flow01"], flows["flow10"], frame0.shape[0], frame0.shape[1])

    def synthesize(
        self, pair: PreparedPair, times: Sequence[float], as_float: bool = False
    ) -> list[np.ndarray]:
        frames: list[np.ndarray] = []
        for batch in schedule_times(times, self.max_batch):
            n = len(batch)
            inputs = {
                "frame0": np.repeat(pair.frame0, n, axis=0),
                "frame1": np.repeat(pair.frame1, n, axis=0),
                "flow01": np.repeat(pair.flow01, n, axis=0),
                "flow10": np.repeat(pair.flow10, n, axis=0),
                "t": np.asarray(batch, dtype=np.float32),
            }
            out = self.backend.infer("interp", inputs)
            if self.check_finite:
                _check_finite(out, "interp")
            frames.extend(self._from_graph(out["frame_t"], pair.height, pair.width, as_float))
        return frames

    def interpolate(
        self, frame0: np.ndarray, frame1: np.ndarray, times: Sequence[float], as_float: bool = False
    ) -> list[np.ndarray]:
        """Frames at each of `times` (in (0,1)) between frame0 and frame1: HxWx3 uint8, or float32
        in [0,1] unclamped with `as_float` (for parity checks)."""
        values = [t for batch in schedule_times(times, self.max_batch) for t in batch]  # validated up front
        if not values:
            self.check_pair(frame0, frame1)  # no frames asked for, but bad ones are still refused
            return []
        return self.synthesize(self.prepare(frame0, frame1), values, as_float)

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
        handoff: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()
        done = object()

        def put(item: object) -> bool:
            while not stop.is_set():
                try:
                    handoff.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                previous = None
                for frame in frames:
                    if stop.is_set():
                        return
                    pair = self.prepare(previous, frame) if previous is not None and times else None
                    if not put((pair, frame)):
                        return
                    previous = frame
                put(done)
            except BaseException as error:  # handed to the consumer, which re-raises it
                put(error)

        worker = threading.Thread(target=produce, name="slomo-flow", daemon=True)
        worker.start()
        try:
            while True:
                item = handoff.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                pair, frame = item
                if pair is not None:
                    yield from self.synthesize(pair, times)
                yield frame
        finally:
            stop.set()
            worker.join(timeout=5)
