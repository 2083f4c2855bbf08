"""End-to-end `slomo interpolate` throughput next to model-only throughput on the same frames.

    python benchmarks/video_throughput.py CLIP [--model DIR|CKPT] [--factor 4] [--duration 2] [--backend auto]

Model-only: the clip's frames are decoded into memory first, then every pair goes through
prepare + synthesize back to back (no decode, no scene detection, no encode). End-to-end: the
real pipeline writing a real file. The ratio says whether I/O is hidden behind the model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from superslomo.runtime import Interpolator, factor_times
from superslomo.video.decode import decode_frames, probe
from superslomo.video.pipeline import Options, interpolate_video


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("clip", type=Path)
    parser.add_argument(
        "--model", type=Path, default=None, help="model folder or checkpoint (default: shipped)"
    )
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--start", type=float, default=0.0)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    from superslomo.apps.models import model_folder

    interp = Interpolator.from_dir(model_folder(args.model), backend=args.backend)
    info = probe(args.clip)
    frames = [d.image for d in decode_frames(info, args.start, args.duration)]
    times = factor_times(args.factor)
    interp.interpolate(frames[0], frames[1], times)  # warm-up: session allocations, caches
    results = []
    for _ in range(args.repeat):
        began = time.perf_counter()
        produced = 0
        for f0, f1 in zip(frames, frames[1:], strict=False):
            produced += len(interp.synthesize(interp.prepare(f0, f1), times)) + 1
        model_fps = produced / (time.perf_counter() - began)

        with tempfile.TemporaryDirectory() as tmp:
            # Scene detection off so both runs interpolate the same pairs.
            options = Options(
                factor=args.factor, start=args.start, duration=args.duration, scene_threshold=1.0
            )
            summary = interpolate_video(
                args.clip,
                Path(tmp) / "out.mp4",
                interp,
                interp.backend.name,
                options,
                progress=False,
                say=lambda s: None,
            )
        results.append((model_fps, summary.fps))
        print(
            f"{args.clip.name} {info.width}x{info.height} x{args.factor}, {len(frames)} frames, "
            f"{interp.backend.name}: model-only {model_fps:.2f} out-frames/s, end-to-end {summary.fps:.2f} "
            f"out-frames/s ({100 * summary.fps / model_fps:.0f}%)",
            file=sys.stdout,
            flush=True,
        )


if __name__ == "__main__":
    main()
