"""Frames per second through each host next to `slomo interpolate`, on one clip and one model.

    python benchmarks/hosts.py [--frames 12,36] [--size 320x180] [--model M] [--repeat 1]

The clip is the shipped one's first frames, re-encoded at --size (H.264, as users' files are);
every path decodes it, interpolates 2x with the same model on onnxruntime fp32 and writes or
drops the result:
  cli         slomo interpolate clip.mp4 -o out.mp4 (decode, model, x264 encode)
  vspipe      vspipe -c y4m docs/examples/slomo.vpy -> /dev/null (bestsource, zimg RGB<->YUV, model)
  gst-launch  filesrc ! decodebin ! videoconvert ! slomo ! videoconvert ! fakesink
  runtime     Interpolator.run on the decoded frames (the model alone, pipelined): the floor
Each is a fresh process timed from start to exit (model load included, as a user meets it), on two
clip lengths, interleaved --repeat times (best kept): "seconds" is the longer clip's, and the
marginal rate (extra output frames / extra seconds) leaves out what a process pays once (start,
imports, model load, GStreamer's registry), which is the hosts' cost per frame against the CLI's. Needs `make
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
    parser.add_argument("--frames", default="12,36", help="two clip lengths, source frames")
    parser.add_argument("--size", default="320x180", help="WIDTHxHEIGHT")
    parser.add_argument("--model", default=None, help="model folder or checkpoint (default: shipped)")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    from superslomo.apps.models import model_folder
    from superslomo.hosts.gst_env import env_lines

    model = model_folder(args.model, size=size)
    lengths = sorted(int(v) for v in args.frames.split(","))
    work = Path(tempfile.mkdtemp(prefix="slomo-hosts-bench-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    gst_env = dict(env)
    for line in env_lines() if shutil.which("gst-launch-1.0") else []:
        name, _, value = line.removeprefix("export ").partition("=")
        gst_env[name] = subprocess.run(
            ["bash", "-c", f"echo {value}"], capture_output=True, text=True
        ).stdout.strip()
    best: dict[tuple[str, int], float] = {}
    for _ in range(args.repeat):
        for frames in lengths:
            clip = work / f"clip{frames}.mp4"
            if not clip.exists():
                make_clip(clip, frames, size)
            for name, command in commands(clip, model, work).items():
                try:
                    seconds = timed(command, gst_env if name == "gst-launch" else env)
                except RuntimeError as error:
                    print(f"{name}: skipped ({error})", file=sys.stderr)
                    continue
                best[name, frames] = min(best.get((name, frames), float("inf")), seconds)
    short, long = lengths[0], lengths[-1]
    print(f"{short} and {long} frames at {args.size}, 2x, model {model.name}, onnxruntime fp32")
    print(f"{'path':<12} {'seconds':>8} {'fps out':>8} {'vs cli':>7} {'marginal fps':>13} {'vs cli':>7}")
    rows = {}
    for name in dict.fromkeys(n for n, _ in best):
        if (name, long) not in best or (name, short) not in best:
            continue
        total = best[name, long]
        marginal = 2 * (long - short) / max(total - best[name, short], 1e-9)
        rows[name] = (total, marginal)
    cli = rows.get("cli")
    for name, (total, marginal) in rows.items():
        versus = (total / cli[0], cli[1] / marginal) if cli else (float("nan"),) * 2
        rate = 2 * long / total
        print(f"{name:<12} {total:8.2f} {rate:8.1f} {versus[0]:7.2f} {marginal:13.1f} {versus[1]:7.2f}")
    shutil.rmtree(work, ignore_errors=True)


def commands(clip: Path, model: Path, work: Path) -> dict[str, list[str]]:
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
    if shutil.which("gst-launch-1.0"):
        paths["gst-launch"] = ["gst-launch-1.0", "-q", "filesrc", f"location={clip}", "!", "decodebin", "!",
                               "videoconvert", "!", "slomo", f"model={model}", "backend=onnxruntime",
                               "precision=fp32", "!", "videoconvert", "!", "fakesink"]  # fmt: skip
    return paths


if __name__ == "__main__":
    main()
