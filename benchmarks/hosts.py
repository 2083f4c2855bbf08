"""Frames per second through each host next to `slomo interpolate`, on one clip and one model.

    python benchmarks/hosts.py [--frames 24] [--size 320x180] [--model M] [--repeat 2]

The clip is the shipped one's first frames, re-encoded at --size (H.264, as users' files are);
every path decodes it, interpolates 2x with the same model on onnxruntime fp32 and writes or
drops the result:
  cli         slomo interpolate clip.mp4 -o out.mp4 (decode, model, x264 encode)
  vspipe      vspipe -c y4m docs/examples/slomo.vpy -> /dev/null (bestsource, zimg RGB<->YUV, model)
  gst-launch  filesrc ! decodebin ! videoconvert ! slomo ! videoconvert ! fakesink
  runtime     Interpolator.run on the decoded frames (the model alone, pipelined): the floor
Each is a fresh process timed from start to exit (model load included, as a user meets it), runs
interleaved --repeat times; the best of each is reported with its ratio to the CLI. Needs `make
vapoursynth-env`, `make gstreamer-env` and gstreamer1.0-libav; a host that is missing is skipped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo" / "big_buck_bunny_bird.mp4"


def make_clip(path: Path, frames: int, size: tuple[int, int]) -> None:
    import av
    import numpy as np
    from PIL import Image

    from superslomo.video.frames import iter_video_frames

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        stream.options = {"crf": "12", "preset": "veryfast"}
        for index, frame in enumerate(iter_video_frames(DEMO)):
            if index == frames:
                break
            small = np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(small, format="rgb24")))
        container.mux(stream.encode())


def timed(command: list[str], env: dict) -> float:
    began = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - began
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {result.stderr.strip()[-500:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", default="320x180", help="WIDTHxHEIGHT")
    parser.add_argument("--model", default=None, help="model folder or checkpoint (default: shipped)")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    from superslomo.apps.models import model_folder
    from superslomo.hosts.gst_env import env_lines

    model = model_folder(args.model, size=size)
    work = Path(tempfile.mkdtemp(prefix="slomo-hosts-bench-"))
    clip = work / "clip.mp4"
    make_clip(clip, args.frames, size)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    pinned = ["--backend", "onnxruntime", "--precision", "fp32"]
    paths: dict[str, list[str]] = {
        "cli": [sys.executable, "-m", "superslomo.cli", "interpolate", str(clip), "-o", str(work / "out.mp4"),
                "-y", "--model", str(model), *pinned, "--no-audio"],
        "runtime": [sys.executable, "-c",
                    "import sys; from superslomo.runtime import Interpolator; "
                    "from superslomo.video.frames import iter_video_frames; "
                    "frames = list(iter_video_frames(sys.argv[1])); "
                    "i = Interpolator.from_dir(sys.argv[2], backend='onnxruntime'); "
                    "n = sum(1 for _ in i.run(frames, 2))", str(clip), str(model)],
    }  # fmt: skip
    vs_env = Path(os.environ.get("SLOMO_VAPOURSYNTH_ENV") or ROOT / "runs" / "vapoursynth-venv")
    vspipe = vs_env / "bin" / "vspipe"
    if vspipe.exists():
        script = work / "pinned.vpy"
        text = (ROOT / "docs" / "examples" / "slomo.vpy").read_text()
        script.write_text(text.replace("model=globals().get(\"model\")", f"model={str(model)!r}, "
                                       "backend='onnxruntime', precision='fp32'"))  # fmt: skip
        paths["vspipe"] = [str(vspipe), "-c", "y4m", "-a", f"source={clip}", str(script), "/dev/null"]
    gst_env = dict(env)
    if shutil.which("gst-launch-1.0"):
        for line in env_lines():
            name, _, value = line.removeprefix("export ").partition("=")
            gst_env[name] = subprocess.run(
                ["bash", "-c", f"echo {value}"], capture_output=True, text=True
            ).stdout.strip()
        paths["gst-launch"] = ["gst-launch-1.0", "-q", "filesrc", f"location={clip}", "!", "decodebin", "!",
                               "videoconvert", "!", "slomo", f"model={model}", "backend=onnxruntime",
                               "precision=fp32", "!", "videoconvert", "!", "fakesink"]  # fmt: skip
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, command in paths.items():
            try:
                seconds = timed(command, gst_env if name == "gst-launch" else env)
            except RuntimeError as error:
                print(f"{name}: skipped ({error})", file=sys.stderr)
                continue
            best[name] = min(best.get(name, float("inf")), seconds)
    out_frames = 2 * args.frames
    print(f"{args.frames} frames at {args.size} -> {out_frames}, model {model.name}, onnxruntime fp32")
    print(f"{'path':<12} {'seconds':>8} {'fps out':>8} {'vs cli':>8}")
    for name, seconds in best.items():
        ratio = seconds / best["cli"] if "cli" in best else float("nan")
        print(f"{name:<12} {seconds:8.2f} {out_frames / seconds:8.1f} {ratio:8.2f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
