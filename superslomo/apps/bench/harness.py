"""`slomo bench`'s harness: every backend side by side on the same inputs, in one process,
interleaved, timed through the pair protocol the product runs.

Each backend is wrapped in an `Interpolator`, as `slomo interpolate` wraps the one it opens, and
every iteration times `prepare(frame0, frame1)` (the "flow" figure: padding, conversion to the
graphs' layout, the flow graph) and then `synthesize(pair, times)` plus `release(pair)` (the
"interp" figure, per output frame: the interpolation graph in batches, cropping and conversion back
to uint8 frames) with the times a 2x/4x/8x job asks for. Each iteration visits every backend once,
in an order rotated by one each time, so load from other processes (and thermal or frequency drift)
lands on all columns alike instead of on whichever ran last. Video decode and encode are not timed
here (`benchmarks/video_throughput.py` and the race in `race.py` time whole jobs).

Figures per backend and size (see `tables.py`): flow (prepare) latency once per pair, interpolation
(synthesize) latency per output frame, and per interpolated frame for a 2x slow-down (flow + 1
interp) and an 8x one (flow / 7 + interp), each as a median with its interquartile range; peak
resident memory; FLOPs, achieved FLOP/s and the compute floor; and the PSNR of each backend's
interpolated frames against ONNX Runtime fp32's on the same input.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from superslomo.apps.bench.folders import Prepared, open_backends, prepare_models
from superslomo.apps.bench.options import BACKENDS, PSNR_REFERENCE, BenchOptions
from superslomo.apps.bench.tables import Samples, _peak_for, add_ratios, machine_facts, make_row, skipped_row
from superslomo.contracts.graph_io import SIZE_MULTIPLE


# -- memory --------------------------------------------------------------------------------
def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def lifetime_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class RssSampler:
    """Samples the process RSS in a thread, so the peak inside one backend's calls can be told
    apart in an interleaved run (the process-lifetime peak could belong to any backend)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self._peak = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            rss = current_rss_mb()
            with self._lock:
                self._peak = max(self._peak, rss)

    @contextlib.contextmanager
    def window(self) -> Iterator[Callable[[], float]]:
        """Peak RSS from entry to exit (at least the RSS at both ends)."""
        with self._lock:
            self._peak = current_rss_mb()
        peak = [0.0]
        try:
            yield lambda: peak[0]
        finally:
            with self._lock:
                peak[0] = max(self._peak, current_rss_mb())


# -- inputs --------------------------------------------------------------------------------
def synthetic_pair(width: int, height: int, shift: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Two frames of a smooth textured scene, the second moved by `shift` pixels: realistic
    value ranges and a real motion, without needing footage (timings do not depend on content
    beyond that)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)

    def scene(dx: float) -> np.ndarray:
        u = x + dx
        channels = [
            0.5 + 0.25 * np.sin(u / 23.0 + c) * np.cos(y / 31.0 - c) + 0.15 * np.sin((u + y) / 7.0 + 2 * c)
            for c in range(3)
        ]
        return (np.clip(np.stack(channels, -1), 0, 1) * 255 + 0.5).astype(np.uint8)

    return scene(0.0), scene(float(shift))


def graph_frames(frame: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> 1x3xHxW float32 in [0,1], edge-padded to the graphs' size step."""
    from superslomo.contracts.frames import pad_frame

    padded = pad_frame(frame, SIZE_MULTIPLE)
    return np.ascontiguousarray(padded.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)


# -- measurement -----------------------------------------------------------------------------
def time_backends(
    backends: dict,
    frames: tuple[np.ndarray, np.ndarray],
    times: int,
    warmup: int,
    iters: int,
    max_batch: int = 4,
    sampler: RssSampler | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Samples]:
    """Interleaved timing of the pair protocol: every iteration runs each backend once through an
    `Interpolator` on it (`prepare`, then `synthesize` of `times` output frames, which batches them
    by at most `max_batch`, then `release`), the order rotated by one per iteration. `frames` are
    two HxWx3 uint8 frames of any size, as a job decodes them. The last iteration also keeps the
    first batch of frames as float (untimed) for the PSNR column: every backend gets the same
    inputs, so outputs compare directly."""
    from superslomo.runtime import Interpolator, factor_times

    f0, f1 = frames
    ts = factor_times(times + 1)  # what a (times+1)x job asks of each pair
    interpolators = {name: Interpolator(backend, max_batch=max_batch) for name, backend in backends.items()}
    names = list(interpolators)
    results = {name: Samples() for name in names}
    for iteration in range(warmup + iters):
        shift = iteration % len(names)
        last = iteration == warmup + iters - 1
        for name in names[shift:] + names[:shift]:
            interp = interpolators[name]
            before = current_rss_mb()
            kept = None
            with sampler.window() if sampler else contextlib.nullcontext(current_rss_mb) as peak:
                began = clock()
                pair = interp.prepare(f0, f1)
                middle = clock()
                try:
                    interp.synthesize(pair, ts)
                    done = clock()
                    if last:  # untimed: the float frames the PSNR column compares
                        kept = np.stack(interp.synthesize(pair, ts[: interp.max_batch], as_float=True))
                finally:
                    releasing = clock()
                    interp.release(pair)
                    released = clock()
            if iteration >= warmup:
                sample = results[name]
                sample.flow_ms.append(1000 * (middle - began))
                sample.interp_ms.append(1000 * ((done - middle) + (released - releasing)) / times)
                sample.peak_rss_mb = max(sample.peak_rss_mb, peak())
                sample.work_mb = max(sample.work_mb, peak() - before)
                if last:
                    sample.frames = kept
    return results


def reference_frames(
    results: dict[str, Samples],
    prepared: Prepared,
    frames: tuple[np.ndarray, np.ndarray],
    times: int,
    max_batch: int,
) -> np.ndarray | None:
    """The fp32 frames every row's PSNR is measured against: the timed onnxruntime row's when it
    ran, else one untimed run of the fp32 folder on the same inputs (None without one)."""
    measured = results.get(PSNR_REFERENCE)
    if measured is not None and measured.frames is not None:
        return measured.frames
    folder = prepared.folders.get("fp32")
    if folder is None:
        return None
    from superslomo.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from superslomo.runtime.options import OnnxRuntimeOptions

    backend = OnnxRuntimeBackend(folder, OnnxRuntimeOptions(providers=("CPUExecutionProvider",)))
    try:
        return time_backends({PSNR_REFERENCE: backend}, frames, times, 0, 1, max_batch)[PSNR_REFERENCE].frames
    finally:
        backend.close()


def psnr_against(frames: np.ndarray | None, reference: np.ndarray | None) -> float | None:
    """PSNR in dB of one row's frames against the reference's, both clamped to [0,1] as the graphs
    deliver them (PyTorch eager does not clamp); None when there is nothing to compare or the
    frames are identical (no finite figure)."""
    from superslomo.eval.metrics import psnr

    if frames is None or reference is None or frames.shape != reference.shape:
        return None
    value = psnr(np.clip(frames, 0.0, 1.0), np.clip(reference, 0.0, 1.0))
    return value if math.isfinite(value) else None


def run_bench(options: BenchOptions, say: Callable[[str], None] = print) -> dict:
    """Prepare the model folders, time every backend and size, return {"rows", "machine", ...}."""
    import torch

    from superslomo.eval.roofline import cpu_peak_gflops

    options.validate()
    threads = options.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    model, prepared = prepare_models(options, say)
    backends = open_backends(options, model, prepared, say)
    peak = options.peak_gflops or cpu_peak_gflops()
    machine = {
        **machine_facts(),
        "threads": threads,
        "cpu_peak_gflops_s": peak,
        "cpu_peak_note": "given" if options.peak_gflops else "best of 3 numpy float32 1536^3 matmuls",
    }
    say(
        f"model: {prepared.model_label}; {threads} threads; CPU peak {peak:.0f} GFLOP/s; "
        f"load {machine['load_1min']:.1f}"
    )
    rows: list[dict] = []
    with RssSampler() as sampler:
        for size in options.sizes:
            f0, f1 = synthetic_pair(*size)  # uint8 frames, padded by the Interpolator as in a job
            results = (
                time_backends(
                    backends,
                    (f0, f1),
                    options.times,
                    options.warmup,
                    options.iters,
                    options.max_batch,
                    sampler,
                )
                if backends
                else {}
            )
            reference = (
                reference_frames(results, prepared, (f0, f1), options.times, options.max_batch)
                if any(name != PSNR_REFERENCE for name in results)
                else None
            )
            for name in options.backends:
                if name in prepared.skips:
                    rows.append(skipped_row(name, size, prepared.model_width, prepared.skips[name]))
                    continue
                row = make_row(
                    name, size, results[name], prepared.model_width, _peak_for(name, peak), options.times
                )
                row["psnr_reference"] = name == PSNR_REFERENCE
                row["psnr_db"] = (
                    None if row["psnr_reference"] else psnr_against(results[name].frames, reference)
                )
                if BACKENDS[name][1] == "int8" and prepared.int8_report:
                    chosen = prepared.int8_report.get("chosen", "both")
                    row["psnr_drop_db"] = prepared.int8_report["settings"][chosen]["psnr_drop_db"]
                rows.append(row)
            say(f"{size[0]}x{size[1]} done")
    for backend in backends.values():
        backend.close()
    add_ratios(rows)
    machine["lifetime_peak_rss_mb"] = lifetime_peak_rss_mb()
    machine["load_1min_after"] = os.getloadavg()[0]
    return {
        "rows": rows,
        "machine": machine,
        "model": prepared.model_label,
        "notes": prepared.notes,
        "options": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in asdict(options).items()
            if k not in ("calib_data",)
        }
        | {"calib_data": [str(p) for p in options.calib_data]},
    }
