"""Sequential vs pipelined `Interpolator.run` on real frames, same backend, interleaved runs.

    python benchmarks/pipeline_gain.py --model DIR_OR_CKPT --frames ../shared/data/toflow_low_frame_rate \
        --size 448x256 --factor 4 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--model", type=Path, default=None, help="model folder or checkpoint (default: shipped)"
    )
    parser.add_argument("--frames", type=Path, default=Path("../shared/data/toflow_low_frame_rate"))
    parser.add_argument("--size", default="448x256")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from PIL import Image

    from superslomo.apps.models import model_folder
    from superslomo.runtime import Interpolator
    from superslomo.video.frames import iter_source_frames

    folder = model_folder(args.model)
    width, height = (int(v) for v in args.size.split("x"))
    frames = [
        np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR))
        for f in iter_source_frames(args.frames, max_frames=args.count)
    ]
    interp = Interpolator.from_dir(folder, backend="onnxruntime")
    list(interp.run(frames[:2], args.factor))  # warm-up
    timings: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeats):
        for pipelined in (False, True):  # interleaved, so load changes hit both alike
            began = time.perf_counter()
            produced = sum(1 for _ in interp.run(iter(frames), args.factor, pipelined=pipelined))
            timings[pipelined].append(time.perf_counter() - began)
    for pipelined in (False, True):
        median = statistics.median(timings[pipelined])
        print(
            f"{'pipelined ' if pipelined else 'sequential'}: {median:.2f} s for {produced} frames "
            f"({produced / median:.2f} fps), runs {[round(t, 2) for t in timings[pipelined]]}"
        )
    gain = statistics.median(timings[False]) / statistics.median(timings[True])
    print(f"pipelining gain: {gain:.2f}x at {args.size}, factor {args.factor}, {args.count} input frames")


if __name__ == "__main__":
    main()
