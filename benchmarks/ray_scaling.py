"""How `slomo interpolate --ray` scales on this machine: 1 vs 2 workers, and what one segment
boundary costs.

    .venv/bin/python benchmarks/ray_scaling.py [--model DIR] [--frames 96] [--size 320x192]

A generated clip (keyframe every --keyint frames, B-frames) is interpolated x2:
  - locally (interpolate_video, one process), the reference time;
  - on a private Ray cluster (--cpus CPUs) with 1 and 2 workers, cut at every keyframe;
  - with 1 worker as one segment and as many, for the cost per boundary (an extra seek and
    decoder start, one more task, one more segment file to write, read and join).
Every Ray output is checked frame by frame against the local one. Numbers go to stdout as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic clips of the tests


def make_clip(path: Path, frames: int, size: tuple[int, int], keyint: int) -> Path:
    import av
    from videoclips import scene_frame

    width, height = size
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {
            "crf": "12",
            "preset": "fast",
            "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=2:b-adapt=0",
        }
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(scene_frame(i, width, height), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    return path


def frames_of(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="exported model folder (default: shipped)")
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--size", default="320x192", help="WIDTHxHEIGHT")
    parser.add_argument("--keyint", type=int, default=12)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the private cluster")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per worker and locally")
    args = parser.parse_args()

    import ray

    from superslomo.apps.models import model_folder
    from superslomo.runtime import Interpolator
    from superslomo.runtime.options import OnnxRuntimeOptions
    from superslomo.serving.ray_batch import RayOptions, interpolate_on_ray
    from superslomo.video.pipeline import Options, interpolate_video

    model = model_folder(args.model)
    width, height = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="ray-scaling-"))
    src = make_clip(work / "clip.mp4", args.frames, (width, height), args.keyint)
    options = Options(factor=2, overwrite=True)
    quiet = lambda text: None  # noqa: E731

    with Interpolator.from_dir(model, OnnxRuntimeOptions(threads=args.threads)) as interp:
        began = time.perf_counter()
        interpolate_video(src, work / "local.mp4", interp, "onnxruntime", options, progress=False, say=quiet)
        local_s = time.perf_counter() - began
    reference = frames_of(work / "local.mp4")

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=args.cpus, object_store_memory=200 * 1024**2, include_dashboard=False)
    results = {"clip": f"{args.frames} frames {args.size}, keyframe every {args.keyint}", "local_s": local_s}
    try:

        def timed(name: str, workers: int, segment_frames: int) -> float:
            out = work / f"{name}.mp4"
            began = time.perf_counter()
            summary = interpolate_on_ray(
                src,
                out,
                model,
                "onnxruntime",
                options,
                RayOptions(workers=workers, segment_frames=segment_frames, threads=args.threads),
                progress=False,
                say=quiet,
            )
            seconds = time.perf_counter() - began
            made = frames_of(out)
            same = len(made) == len(reference) and all(
                np.array_equal(a, b) for a, b in zip(made, reference, strict=True)
            )
            segments = int(next(n for n in summary.notes if n.startswith("ray: ")).split()[1])
            results[name] = {"seconds": round(seconds, 2), "segments": segments, "identical": same}
            print(f"{name}: {seconds:.2f} s, {segments} segments, identical={same}", file=sys.stderr)
            return seconds

        timed("warmup", 1, args.frames)  # actor start-up, model load and imports, once
        one_segment = timed("1 worker, 1 segment", 1, args.frames)
        one = timed("1 worker, every keyframe", 1, 1)
        two = timed("2 workers, every keyframe", 2, 1)
        boundaries = results["1 worker, every keyframe"]["segments"] - 1
        results["speedup_2_vs_1"] = round(one / two, 2)
        results["seconds_per_boundary"] = round((one - one_segment) / max(1, boundaries), 3)
    finally:
        ray.shutdown()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
