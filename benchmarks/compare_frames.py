"""Side by side for looking at a model: frame 0 | linear blend | model | ground truth, one row per
triplet, for the triplets where blending does worst (the most motion).

    python benchmarks/compare_frames.py ../shared/data/ucf101_adacof out/compare.png --count 3 [--model M]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path, help="triplets (any layout slomo eval reads)")
    parser.add_argument("output", type=Path, help="PNG to write")
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument(
        "--model", type=Path, default=None, help="model folder or checkpoint (default: shipped)"
    )
    args = parser.parse_args()

    from PIL import Image

    from superslomo.apps.models import model_folder
    from superslomo.eval.datasets import iter_triplets
    from superslomo.eval.metrics import blend, psnr
    from superslomo.runtime import Interpolator

    def blend_psnr(triplet) -> float:
        return psnr(blend(triplet.frame0, triplet.frame1, triplet.t), triplet.target)

    triplets = sorted(iter_triplets(args.data), key=blend_psnr)[: args.count]
    rows = []
    with Interpolator.from_dir(model_folder(args.model)) as interp:
        for triplet in triplets:
            (middle,) = interp.interpolate(triplet.frame0, triplet.frame1, [triplet.t])
            blended = blend(triplet.frame0, triplet.frame1, triplet.t)
            print(
                f"{triplet.name}: blend {psnr(blended, triplet.target):.2f} dB, "
                f"model {psnr(middle, triplet.target):.2f} dB"
            )
            rows.append(np.concatenate([triplet.frame0, blended, middle, triplet.target], axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.output)


if __name__ == "__main__":
    main()
