"""`make demo`: interpolate the shipped clip 4x on the embedded default (the shipped model on
ONNX Runtime, CPU) and leave three things to look at in out/demo/:

- the video itself (4x the frame rate, same duration, audio copied, the scene cut held);
- a side-by-side picture of the pair with the most motion: frame k | linear blend | model |
  frame k+1, with a zoomed crop of the region that moves most underneath;
- an animated preview of that moment played 4x slower: the source (each frame shown 4 times,
  as a player would) beside the interpolated frames.

Everything comes from the clone: the clip is demo/big_buck_bunny_bird.mp4 (see demo/README.md).

    python demo/run.py [--clip CLIP] [--out out/demo] [--factor 4]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_CLIP = HERE / "big_buck_bunny_bird.mp4"
ZOOM = 4  # the quarter-size crop is shown this many times larger: as large as the frame
PREVIEW_WIDTH = 320  # per panel of the animation; small enough to open anywhere


def run_interpolate(clip: Path, output: Path, factor: int, model: str | None) -> None:
    # Relative to where the user stands, so the printed command can be copied as it is.
    argv = [
        "interpolate",
        os.path.relpath(clip),
        "-o",
        os.path.relpath(output),
        "--factor",
        str(factor),
        "--overwrite",
    ]
    if model:
        argv += ["--model", model]
    print("$ slomo " + shlex.join(argv), flush=True)
    # A child process, exactly what a user's command line does (the CLI exits the interpreter).
    done = subprocess.run([sys.executable, "-m", "superslomo.cli", *argv])
    if done.returncode:
        sys.exit(done.returncode)


def decode_all(path: Path) -> tuple[list[np.ndarray], float]:
    """The frames of a video, and its frame rate."""
    from superslomo.video.decode import decode_frames, probe

    info = probe(path)
    return [decoded.image for decoded in decode_frames(info)], float(info.rate)


def busiest_pair(frames: list[np.ndarray]) -> int:
    """Index k of the pair (k, k+1) with the most motion that is not a scene cut: a cut is held,
    not interpolated, so it shows nothing about the model."""
    from superslomo.video.scenes import SceneDetector

    detector = SceneDetector()
    best, best_motion = 0, -1.0
    detector.is_cut(frames[0])
    for k in range(len(frames) - 1):
        if detector.is_cut(frames[k + 1]):
            continue
        motion = float(np.mean(np.abs(frames[k + 1].astype(np.int16) - frames[k].astype(np.int16))))
        if motion > best_motion:
            best, best_motion = k, motion
    return best


def busiest_window(frame0: np.ndarray, frame1: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the quarter-size window where the two frames differ most."""
    height, width = frame0.shape[0] // 4, frame0.shape[1] // 4
    change = np.abs(frame1.astype(np.float32) - frame0.astype(np.float32)).sum(axis=2)
    # Summed-area table: the change inside every window in O(pixels).
    table = np.pad(change.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = (
        table[height:, width:] - table[:-height, width:] - table[height:, :-width] + table[:-height, :-width]
    )
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(top), int(left), height, width


def side_by_side(panels: list[tuple[str, np.ndarray]], window: tuple[int, int, int, int]):
    """One row of labelled frames with the window outlined, and the zoomed window of each below."""
    from PIL import Image, ImageDraw, ImageFont

    top, left, height, width = window
    frame_h, frame_w = panels[0][1].shape[:2]
    gap, label_h = 6, 34
    zoom_h, zoom_w = height * ZOOM, width * ZOOM
    columns = max(frame_w, zoom_w)
    canvas = Image.new(
        "RGB", (len(panels) * (columns + gap) - gap, label_h + frame_h + gap + zoom_h), "white"
    )
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=26)  # still legible when the picture is shown at half size
    for i, (label, image) in enumerate(panels):
        x = i * (columns + gap)
        draw.text((x + 4, 4), label, fill="black", font=font)
        canvas.paste(Image.fromarray(image), (x, label_h))
        draw.rectangle(
            [x + left, label_h + top, x + left + width - 1, label_h + top + height - 1],
            outline=(255, 40, 40),
            width=2,
        )
        crop = Image.fromarray(image[top : top + height, left : left + width]).resize(
            (zoom_w, zoom_h), Image.Resampling.LANCZOS
        )
        canvas.paste(crop, (x, label_h + frame_h + gap))
    return canvas


def preview(
    source: list[np.ndarray],
    result: list[np.ndarray],
    first: int,
    factor: int,
    path: Path,
    rate: float = 24.0,
) -> int:
    """GIF of output frames [first*factor, ...) beside the source frame each one replaces, played at
    the source rate: the motion runs `factor` times slower, stepped on the left, smooth on the right."""
    from PIL import Image

    seconds = 1.0  # of source time: long enough to see the motion, small enough to open anywhere
    count = min(len(result) - first * factor, int(round(seconds * rate * factor)))
    scale = PREVIEW_WIDTH / source[0].shape[1]
    size = (PREVIEW_WIDTH, int(round(source[0].shape[0] * scale)))
    images = []
    for j in range(first * factor, first * factor + count):
        left = Image.fromarray(source[min(j // factor, len(source) - 1)]).resize(
            size, Image.Resampling.LANCZOS
        )
        right = Image.fromarray(result[j]).resize(size, Image.Resampling.LANCZOS)
        both = Image.new("RGB", (size[0] * 2 + 4, size[1]), "white")
        both.paste(left, (0, 0))
        both.paste(right, (size[0] + 4, 0))
        images.append(both.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE))
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=round(1000 / rate), loop=0, optimize=False
    )
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="video to interpolate")
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="folder for the results")
    parser.add_argument("--factor", type=int, default=4, help="frames out per frame in (2..8 reads best)")
    parser.add_argument("--model", default=None, help="model folder or checkpoint (default: the shipped one)")
    args = parser.parse_args()
    if not args.clip.is_file():
        sys.exit(f"error: clip not found: {args.clip}")
    args.out.mkdir(parents=True, exist_ok=True)
    video = args.out / f"{args.clip.stem}_x{args.factor}.mp4"
    run_interpolate(args.clip, video, args.factor, args.model)

    from superslomo.apps.models import model_folder
    from superslomo.eval.metrics import blend
    from superslomo.runtime import Interpolator

    source, rate = decode_all(args.clip)
    k = busiest_pair(source)
    frame0, frame1 = source[k], source[k + 1]
    with Interpolator.from_dir(model_folder(args.model)) as interp:
        (middle,) = interp.interpolate(frame0, frame1, [0.5])
    window = busiest_window(frame0, frame1)
    picture = side_by_side(
        [
            (f"frame {k}", frame0),
            ("linear blend, t=0.5", blend(frame0, frame1, 0.5)),
            ("Super SloMo, t=0.5", middle),
            (f"frame {k + 1}", frame1),
        ],
        window,
    )
    picture_path = args.out / f"{args.clip.stem}_side_by_side.png"
    picture.save(picture_path)

    animation_path = args.out / f"{args.clip.stem}_slowmo.gif"
    shown = preview(source, decode_all(video)[0], max(0, k - 8), args.factor, animation_path, rate)
    print(f"video:     {video}")
    print(
        f"picture:   {picture_path}  (frames {k} and {k + 1}: blend vs model, busiest region zoomed {ZOOM}x)"
    )
    print(
        f"animation: {animation_path}  ({shown} frames, {args.factor}x slower: "
        "source left, interpolated right)"
    )


if __name__ == "__main__":
    main()
