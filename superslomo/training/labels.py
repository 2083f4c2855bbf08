"""Teacher labels computed once: the RIFE teacher's flows F01 / F10 for real training pairs.

Running the teacher inside every training step costs more than the student's own step on a CPU.
Its flows between two real frames do not change from step to step, so `make training-data`
computes them once, at the training resolution, into an ignored folder; a training step then
regresses the flow network onto them directly (Super SloMo's first U-Net outputs exactly F01 and
F10) and never runs the teacher.

RIFE's fusion at time t weighs its warp of frame0 by about 1 - t and of frame1 by t, so the only
flows it is made to get right are those it fuses: at t = 0 its flow into frame1 has weight 0 and
was measured worse than no motion at all (median warp error 0.014-0.095 where zero flow gave
0-0.067 on the training pairs). The labels therefore come from one call at t = 0.5, where both
flows count, converted to the ends under the linear motion the student assumes: a point at x0 in
frame0 sits at m = x0 + F01/2 at t = 0.5, where F_t0(m) = -F01/2, so F01 is the fixed point of
F = -2 F_t0(x0 + F/2) (a few iterations from F = -2 F_t0(x0)); F10 likewise from F_t1. On the same
pairs those warp no worse than zero flow on still content and up to 3x better on motion. Each
flow is trusted only where its own warp lands within `TRUST_THRESHOLD` of the target frame
(occlusions, non-linear motion and teacher errors are left out).

    python -m superslomo.training.labels --out runs/labels --data CLIP [--data CLIP ...]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from superslomo.errors import SloMoError

# Frames are downscaled by an integer factor to at most this side: the crops training uses
# (128 px) then see motion of the scale the student learns at.
LABEL_MAX_SIDE = 320
PAIRS_PER_CLIP = 24
FRAMES_PER_CLIP = 400
# Frame gaps of the pairs: 1 (consecutive) to 4, as the triplets the student trains on span.
MAX_GAP = 4
TRUST_THRESHOLD = 0.04
# Converged to well under 0.1 px on the training pairs; each costs one warp of the flow.
FIXED_POINT_ITERATIONS = 6


def _to_tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(frame)).permute(2, 0, 1)[None].float().div_(255.0)


def _flow_from_midpoint(mid_to_end: torch.Tensor, iterations: int = FIXED_POINT_ITERATIONS) -> torch.Tensor:
    """F01 from F_{0.5->0} (or F10 from F_{0.5->1}) under linear motion (module docstring)."""
    from superslomo.training.teacher import backwarp_exact

    flow = -2 * mid_to_end
    for _ in range(iterations):
        flow = -2 * backwarp_exact(mid_to_end, flow / 2)
    return flow


@torch.no_grad()
def teacher_flows(teacher, frame0: np.ndarray, frame1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F01 and F10 stacked [4,H,W] float32 in pixels, and their trust masks [2,H,W] bool."""
    from superslomo.training.teacher import backwarp_exact, teacher_interpolate

    f0, f1 = _to_tensor(frame0), _to_tensor(frame1)
    height, width = f0.shape[-2:]
    pad = (0, (-width) % 32, 0, (-height) % 32)
    p0, p1 = F.pad(f0, pad, mode="replicate"), F.pad(f1, pad, mode="replicate")
    _, mid_to_0, mid_to_1 = teacher_interpolate(p0, p1, 0.5, teacher)
    flow01 = _flow_from_midpoint(mid_to_0[..., :height, :width])
    flow10 = _flow_from_midpoint(mid_to_1[..., :height, :width])
    trust01 = (backwarp_exact(f1, flow01) - f0).abs().mean(dim=1) < TRUST_THRESHOLD
    trust10 = (backwarp_exact(f0, flow10) - f1).abs().mean(dim=1) < TRUST_THRESHOLD
    flows = torch.cat((flow01[0], flow10[0])).numpy().astype(np.float32)  # [4,H,W]: F01 then F10
    return flows, torch.cat((trust01, trust10)).numpy()


def make_labels(
    clips: Sequence[str],
    out: Path,
    teacher_variant: str = "v4.25",
    pairs_per_clip: int = PAIRS_PER_CLIP,
    max_side: int = LABEL_MAX_SIDE,
    seed: int = 0,
) -> dict:
    """Write `out/labels.npz` (frames uint8, flows float16, trust masks) and `out/labels.json`."""
    from superslomo.eval.datasets import check_not_evaluation_set
    from superslomo.training.footage import CUT_MEAN_ABS_DIFF, downscale, drop_duplicates
    from superslomo.training.teacher import load_training_teacher
    from superslomo.video.frames import iter_source_frames

    teacher = load_training_teacher(teacher_variant)
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    pairs = []
    for clip in clips:
        check_not_evaluation_set(clip, "training")
        frames = drop_duplicates(
            [downscale(f, max_side) for f in iter_source_frames(clip, max_frames=FRAMES_PER_CLIP)]
        )
        if len(frames) <= MAX_GAP:
            continue
        for start in np.linspace(0, len(frames) - 1 - MAX_GAP, pairs_per_clip).round().astype(int):
            gap = int(rng.integers(1, MAX_GAP + 1))
            frame0, frame1 = frames[start], frames[start + gap]
            if np.abs(frame0.astype(np.int16) - frame1).mean() / 255.0 > CUT_MEAN_ABS_DIFF:
                continue
            flows, trust = teacher_flows(teacher, frame0, frame1)
            key = f"{len(pairs):05d}"
            arrays[f"{key}_frames"] = np.stack((frame0, frame1))
            arrays[f"{key}_flows"] = flows.astype(np.float16)
            arrays[f"{key}_trust"] = trust
            pairs.append({"clip": str(clip), "start": int(start), "gap": gap, "trusted": float(trust.mean())})
        print(f"labels: {clip}: {sum(p['clip'] == str(clip) for p in pairs)} pairs", flush=True)
    if not pairs:
        raise SloMoError("no teacher labels made: no clip had usable pairs")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "labels.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out / "labels.npz")
    summary = {"teacher": teacher_variant, "max_side": max_side, "pairs": pairs}
    (out / "labels.json").write_text(json.dumps(summary, indent=1))
    return summary


class LabelledPairs:
    """Crops of the labelled pairs with their flows, augmented as the frame pool augments."""

    def __init__(self, path: str | Path, crop: tuple[int, int], seed: int = 0):
        path = Path(path)
        file = path / "labels.npz" if path.is_dir() else path
        if not file.is_file():
            raise SloMoError(f"no teacher labels at {path}; make them with `make training-data`")
        with np.load(file, allow_pickle=False) as data:
            keys = sorted({k.split("_")[0] for k in data.files})
            self.pairs = [
                (data[f"{k}_frames"], data[f"{k}_flows"].astype(np.float32), data[f"{k}_trust"]) for k in keys
            ]
        for frames, flows, trust in self.pairs:
            height, width = frames.shape[1:3]
            if frames.shape[0] != 2 or flows.shape != (4, height, width) or trust.shape != (2, height, width):
                raise SloMoError(f"{file} is not a teacher-labels file of this version; make it again")
        self.crop_h, self.crop_w = crop
        self.pairs = [p for p in self.pairs if p[0].shape[1] >= self.crop_h and p[0].shape[2] >= self.crop_w]
        if not self.pairs:
            raise SloMoError(f"teacher labels at {path} hold no pair of at least {self.crop_w}x{self.crop_h}")
        self.rng = np.random.default_rng(seed)

    def sample(self) -> tuple[np.ndarray, ...]:
        frames, flows, trust = self.pairs[int(self.rng.integers(len(self.pairs)))]
        height, width = frames.shape[1:3]
        y = int(self.rng.integers(0, height - self.crop_h + 1))
        x = int(self.rng.integers(0, width - self.crop_w + 1))
        window = (slice(y, y + self.crop_h), slice(x, x + self.crop_w))
        f0, f1 = frames[0][window], frames[1][window]
        flow01, flow10 = flows[0:2][(slice(None), *window)], flows[2:4][(slice(None), *window)]
        trust01, trust10 = trust[0][window], trust[1][window]
        if self.rng.random() < 0.5:  # time reversed: the two flows trade places
            f0, f1, flow01, flow10, trust01, trust10 = f1, f0, flow10, flow01, trust10, trust01
        if self.rng.random() < 0.5:  # mirrored left-right: x motion changes sign
            f0, f1, trust01, trust10 = f0[:, ::-1], f1[:, ::-1], trust01[:, ::-1], trust10[:, ::-1]
            flow01, flow10 = (
                f[:, :, ::-1] * np.array([-1, 1], np.float32).reshape(2, 1, 1) for f in (flow01, flow10)
            )
        if self.rng.random() < 0.5:  # upside down: y motion changes sign
            f0, f1, trust01, trust10 = f0[::-1], f1[::-1], trust01[::-1], trust10[::-1]
            flow01, flow10 = (
                f[:, ::-1] * np.array([1, -1], np.float32).reshape(2, 1, 1) for f in (flow01, flow10)
            )
        return f0, f1, flow01, flow10, trust01, trust10

    def batch(self, size: int) -> tuple[torch.Tensor, ...]:
        items = [self.sample() for _ in range(size)]

        def stack(i: int, image: bool = False) -> torch.Tensor:
            array = torch.from_numpy(np.stack([np.ascontiguousarray(item[i]) for item in items]))
            return array.permute(0, 3, 1, 2).float().div_(255.0) if image else array.float()

        return (
            stack(0, image=True),
            stack(1, image=True),
            stack(2),
            stack(3),
            stack(4).unsqueeze(1),
            stack(5).unsqueeze(1),
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", action="append", default=[], help="a training clip (repeat)")
    parser.add_argument(
        "--recipe", type=Path, help="take the clips from a campaign recipe (training/campaign.json)"
    )
    parser.add_argument("--pairs-per-clip", type=int, default=PAIRS_PER_CLIP)
    parser.add_argument("--max-side", type=int, default=LABEL_MAX_SIDE)
    args = parser.parse_args(argv)
    clips = list(args.data)
    if args.recipe:
        root = args.recipe.resolve().parents[1]
        clips += [str(root / p) for p in json.loads(args.recipe.read_text())["data"]]
    if not clips:
        parser.error("give --data or --recipe")
    try:
        torch.set_num_threads(1)
        summary = make_labels(clips, args.out, pairs_per_clip=args.pairs_per_clip, max_side=args.max_side)
    except SloMoError as error:
        print(f"error: {error}")
        return 1
    trusted = np.mean([p["trusted"] for p in summary["pairs"]])
    print(f"labels: {len(summary['pairs'])} pairs in {args.out} ({trusted:.0%} of flow pixels trusted)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
