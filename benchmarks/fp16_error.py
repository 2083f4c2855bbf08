"""fp16 graph error against the fp32 graph on real frames, with and without fp32 warp coordinates.

    python benchmarks/fp16_error.py --model superslomo/weights/slomo16.safetensors \\
        --sizes 320x256,1920x1088,3840x2176

Real UCF101 triplets (320x256 after replicate padding) and the same frames upscaled (bilinear) to
1080p and 4K, where the flows scale with the image. Prints PSNR of each fp16 variant vs fp32.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=None, help="checkpoint (default: the shipped one)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ucf101_adacof"))
    parser.add_argument("--sizes", default="320x256,1920x1088,3840x2176")
    parser.add_argument("--items", type=int, default=3, help="triplets per size (all at 320x256)")
    args = parser.parse_args()

    from PIL import Image

    from superslomo.eval.datasets import iter_triplets
    from superslomo.eval.metrics import psnr
    from superslomo.export import ExportOptions, export_model
    from superslomo.model import load_checkpoint
    from superslomo.runtime import Interpolator
    from superslomo.runtime.onnxruntime_backend import OnnxRuntimeBackend

    if args.model is None:
        from superslomo.apps.weights import DEFAULT

        args.model = DEFAULT.checkpoint
    model = load_checkpoint(args.model)
    triplets = list(iter_triplets(args.data, "ucf"))
    with tempfile.TemporaryDirectory() as tmp:
        variants = {
            "fp32": ExportOptions(),
            "fp16 (fp32 coords)": ExportOptions(precision="fp16"),
            "fp16 (fp16 coords)": ExportOptions(precision="fp16", fp16_coordinates=True),
        }
        interps = {}
        for name, options in variants.items():
            folder = Path(tmp) / name.replace(" ", "_").replace("(", "").replace(")", "")
            export_model(model, folder, options)
            interps[name] = Interpolator(OnnxRuntimeBackend(folder), max_batch=1)
        print(f"model {args.model} (width {model.config.width}); PSNR of fp16 output vs fp32 output, t=0.5")
        for size in args.sizes.split(","):
            width, height = (int(v) for v in size.split("x"))
            count = len(triplets) if (width, height) == (320, 256) else args.items
            scores: dict[str, list[float]] = {k: [] for k in variants if k != "fp32"}
            for triplet in triplets[:count]:
                f0, f1 = triplet.frame0, triplet.frame1
                if (width, height) != (320, 256):
                    f0, f1 = (
                        np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR))
                        for f in (f0, f1)
                    )
                reference = interps["fp32"].interpolate(f0, f1, [0.5], as_float=True)[0]
                for name in scores:
                    out = interps[name].interpolate(f0, f1, [0.5], as_float=True)[0]
                    scores[name].append(psnr(out, reference))
            line = ", ".join(f"{k}: {np.mean(v):.2f} dB (min {np.min(v):.2f})" for k, v in scores.items())
            print(f"{size:>10} x{count}: {line}", flush=True)


if __name__ == "__main__":
    main()
