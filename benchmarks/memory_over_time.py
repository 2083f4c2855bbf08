"""Resident memory over a whole `slomo interpolate` run: does it stay flat?

    python benchmarks/memory_over_time.py CLIP [--model DIR|CKPT] [--factor 2] [--duration S] [--csv out.csv]

The real pipeline (decode, scene detection, pipelined interpolation, encode) runs on CLIP while
a thread samples the process RSS every `--interval` seconds. Printed: RSS before the model was
opened, after it, the peak, at the end, and the slope of a least-squares line through the
second half of the run (after the first pairs have sized the arenas and queues). A leak of one
frame per pair shows up as a slope of (frame bytes x pairs per minute); flat is a few MB/min of
allocator noise at most.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from superslomo.apps.bench import current_rss_mb
from superslomo.video.pipeline import Options, interpolate_video


def open_interpolator(model: Path | None):
    from superslomo.apps.models import default_model
    from superslomo.runtime import Interpolator

    path = model or default_model()
    if path.is_dir():
        interp = Interpolator.from_dir(path)
        return interp, f"{path} ({interp.backend.name})"
    from superslomo.eval.torch_backend import TorchBackend

    return Interpolator(TorchBackend.from_checkpoint(path)), f"{path.name} (torch)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("clip", type=Path)
    parser.add_argument(
        "--model", type=Path, default=None, help="model folder or checkpoint (default: shipped)"
    )
    parser.add_argument("--factor", type=int, default=2)
    parser.add_argument("--duration", type=float, default=None, help="source seconds (default: all)")
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--csv", type=Path, default=None, help="write seconds,rss_mb samples here")
    args = parser.parse_args()

    before_model = current_rss_mb()
    interp, label = open_interpolator(args.model)
    after_model = current_rss_mb()
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    began = time.perf_counter()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.perf_counter() - began, current_rss_mb()))
            stop.wait(args.interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            options = Options(factor=args.factor, duration=args.duration)
            summary = interpolate_video(
                args.clip,
                Path(tmp) / "out.mp4",
                interp,
                interp.backend.name,
                options,
                progress=False,
                say=lambda s: None,
            )
    finally:
        stop.set()
        sampler.join()
        interp.close()
    t = np.array([s[0] for s in samples])
    rss = np.array([s[1] for s in samples])
    half = t >= t[-1] / 2
    slope = float(np.polyfit(t[half], rss[half], 1)[0] * 60) if half.sum() >= 3 else float("nan")
    print(f"{args.clip.name} x{args.factor}, {label}: {summary.line()}")
    print(
        f"RSS MB: before model {before_model:.0f}, after model {after_model:.0f}, peak {rss.max():.0f}, "
        f"end {rss[-1]:.0f}; second-half slope {slope:+.1f} MB/min over {t[-1]:.0f} s "
        f"({len(samples)} samples)"
    )
    step = max(1, len(samples) // 10)
    print("  t(s)  RSS MB")
    for when, value in samples[::step]:
        print(f"{when:6.1f} {value:7.0f}")
    if args.csv:
        args.csv.write_text("seconds,rss_mb\n" + "".join(f"{a:.2f},{b:.1f}\n" for a, b in samples))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
