"""How much INT8 costs: each graph setting against fp32 output and against ground truth.

Settings: `flow` (INT8 flow graph, fp32 interpolation), `interp` (the reverse) and `both`, so a
user can keep one graph in float when the other is where the loss is. Triplets are the
calibration set's own (held in: f(i) and f(i+2) as the pair, f(i+1) the truth at t = 0.5);
the drop that gates `quantize` is mean PSNR vs truth of fp32 minus that of the INT8 setting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from superslomo.calibration.calibset import CalibSet
from superslomo.contracts.frames import to_graph_frames
from superslomo.errors import SloMoError
from superslomo.eval.metrics import psnr, ssim

SETTINGS = {
    "fp32": ("fp32", "fp32"),
    "flow": ("int8", "fp32"),
    "interp": ("fp32", "int8"),
    "both": ("int8", "int8"),
}


def open_session(path: str | os.PathLike, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's own exception types
        raise SloMoError(f"ONNX Runtime cannot load {path}: {str(error).splitlines()[0]}") from None


def _run(session, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    return session.run(None, dict(feed))


def _to_uint8_frame(output: np.ndarray, io: str) -> np.ndarray:
    """One graph output (N=1) as HxWx3 uint8, rounded as the runtime does."""
    if io == "uint8":
        return output[0]
    return (np.clip(output[0].transpose(1, 2, 0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def evaluation_rows(calib: CalibSet, count: int) -> list[int]:
    """`count` triplets spread over the set (all of them when it is smaller)."""
    n = len(calib)
    if count >= n:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, count).round().astype(int).tolist()))


def measure(
    fp32: Mapping[str, Path],
    int8: Mapping[str, Path],
    calib: CalibSet,
    io: str,
    count: int = 16,
    settings: tuple[str, ...] = ("flow", "interp", "both"),
) -> dict:
    """PSNR/SSIM of every setting vs fp32 output and vs ground truth on the set's triplets."""
    sessions = {
        ("flow", "fp32"): open_session(fp32["flow"]),
        ("interp", "fp32"): open_session(fp32["interp"]),
    }
    for graph in ("flow", "interp"):
        if graph in int8:
            sessions[(graph, "int8")] = open_session(int8[graph])
    rows = evaluation_rows(calib, count)
    per: dict[str, dict[str, list[float]]] = {
        s: {"psnr_gt": [], "ssim_gt": [], "psnr_fp32": [], "ssim_fp32": []} for s in ("fp32", *settings)
    }
    for row in rows:
        frames = {
            "frame0": to_graph_frames(calib["frame0"][row : row + 1], io),
            "frame1": to_graph_frames(calib["frame1"][row : row + 1], io),
        }
        target = np.asarray(calib["target"][row])
        flows = {}
        for precision in ("fp32", "int8"):
            if ("flow", precision) in sessions:
                flows[precision] = dict(
                    zip(("flow01", "flow10"), _run(sessions[("flow", precision)], frames), strict=False)
                )
        reference = None
        for setting in ("fp32", *settings):
            flow_p, interp_p = SETTINGS[setting]
            if ("flow", flow_p) not in sessions or ("interp", interp_p) not in sessions:
                raise SloMoError(
                    f"setting {setting!r} needs the INT8 {('flow' if flow_p == 'int8' else 'interp')} graph"
                )
            feed = {**frames, **flows[flow_p], "t": np.full(1, 0.5, np.float32)}
            image = _to_uint8_frame(_run(sessions[("interp", interp_p)], feed)[0], io)
            if setting == "fp32":
                reference = image
            per[setting]["psnr_gt"].append(psnr(image, target))
            per[setting]["ssim_gt"].append(ssim(image, target))
            per[setting]["psnr_fp32"].append(min(psnr(image, reference), 99.0))
            per[setting]["ssim_fp32"].append(ssim(image, reference))
    report: dict = {"triplets": len(rows), "t": 0.5, "rows": rows, "settings": {}}
    base = float(np.mean(per["fp32"]["psnr_gt"]))
    for setting, values in per.items():
        summary = {key: float(np.mean(v)) for key, v in values.items()}
        summary["psnr_drop_db"] = base - summary["psnr_gt"]
        summary["worst_psnr_fp32"] = float(np.min(values["psnr_fp32"]))
        report["settings"][setting] = summary
    blend = [
        psnr(
            ((calib["frame0"][r].astype(np.float32) + calib["frame1"][r]) / 2 + 0.5).astype(np.uint8),
            calib["target"][r],
        )
        for r in rows
    ]
    report["blend_psnr_gt"] = float(np.mean(blend))  # the baseline a trained model must beat
    return report
