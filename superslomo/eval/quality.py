"""`slomo eval`: interpolation quality on triplet data sets, next to two baselines: the linear blend
(what any interpolator must beat) and ffmpeg's motion-compensated minterpolate (what every video user
already has).

The model runs through the runtime's `Interpolator`, so a checkpoint (PyTorch), an ONNX folder of
any precision and a TensorRT engine folder are measured by the same code; with a `reference`
interpolator the report also says how far the model is from it (INT8 or fp16 against fp32).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from superslomo.errors import SloMoError
from superslomo.eval.datasets import LAYOUTS, Triplet, detect_layout, ground_truth_root, iter_triplets
from superslomo.eval.metrics import blend, interpolation_error, psnr, ssim

METRICS = ("psnr", "ssim", "ie")


def measure(output: np.ndarray, target: np.ndarray) -> dict[str, float]:
    return {
        "psnr": float(psnr(output, target)),
        "ssim": ssim(output, target),
        "ie": interpolation_error(output, target),
    }


def _means(items: list[dict], key: str | None) -> dict[str, float]:
    rows = [item[key] if key else item for item in items]
    return {m: float(np.mean([r[m] for r in rows])) for m in METRICS}


def evaluate_triplets(
    triplets: Iterable[Triplet],
    interpolator=None,
    reference=None,
    progress: Callable[[dict], None] | None = None,
    minterpolate: bool = True,
) -> dict:
    """PSNR, SSIM and IE of `interpolator` (an Interpolator, or None for the baselines alone), of
    the linear blend and (unless `minterpolate` is False) of ffmpeg's minterpolate on each triplet,
    with means; against `reference` (another Interpolator) too. Every method is scored by the same
    `measure`, so the figures compare like with like."""
    if minterpolate:
        from superslomo.eval.minterpolate import METHOD, minterpolate_middle
    items = []
    began = time.perf_counter()
    for triplet in triplets:
        item: dict = {
            "name": triplet.name,
            "size": f"{triplet.frame0.shape[1]}x{triplet.frame0.shape[0]}",
            "t": triplet.t,
        }
        item["baseline"] = measure(blend(triplet.frame0, triplet.frame1, triplet.t), triplet.target)
        if minterpolate:
            if triplet.t != 0.5:
                raise SloMoError(
                    f"{triplet.name}: the minterpolate baseline makes only the middle frame "
                    f"(t=0.5), this triplet's is at t={triplet.t}; skip it with --no-minterpolate"
                )
            item["minterpolate"] = measure(
                minterpolate_middle(triplet.frame0, triplet.frame1), triplet.target
            )
        if interpolator is not None:
            output = interpolator.interpolate(triplet.frame0, triplet.frame1, [triplet.t])[0]
            item.update(measure(output, triplet.target))
            if reference is not None:
                expected = reference.interpolate(triplet.frame0, triplet.frame1, [triplet.t])[0]
                item["vs_reference"] = {"psnr": float(psnr(output, expected)), "ssim": ssim(output, expected)}
        items.append(item)
        if progress is not None:
            progress(item)
    if not items:
        raise SloMoError("the data set holds no triplets")
    report: dict = {"count": len(items)}
    if interpolator is not None:
        report.update(_means(items, None))
    report["baseline"] = {"method": "linear blend", **_means(items, "baseline")}
    if minterpolate:
        report["minterpolate"] = {"method": METHOD, **_means(items, "minterpolate")}
    if interpolator is not None and reference is not None:
        report["vs_reference"] = {
            m: float(np.mean([i["vs_reference"][m] for i in items])) for m in ("psnr", "ssim")
        }
    report["items"] = items
    report["seconds"] = round(time.perf_counter() - began, 3)
    return report


def check_eval_options(
    data: str | os.PathLike,
    layout: str = "auto",
    limit: int | None = None,
    report: str | os.PathLike | None = None,
    gt: str | os.PathLike | None = None,
) -> str:
    """Everything about the options that can be wrong (missing ground truth included), checked
    before a model is loaded; returns the resolved layout."""
    if layout not in LAYOUTS:
        raise SloMoError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if limit is not None and limit < 1:
        raise SloMoError(f"--limit must be >= 1, got {limit}")
    if report is not None and not Path(report).parent.is_dir():
        raise SloMoError(f"report folder does not exist: {Path(report).parent}")
    data = Path(data)
    if not data.exists():
        raise SloMoError(f"data set not found: {data}")
    gt = Path(gt) if gt is not None else None
    resolved = detect_layout(data, gt) if layout == "auto" else layout
    ground_truth_root(data, resolved, gt)
    return resolved


def run_eval(
    data: str | os.PathLike,
    interpolator=None,
    layout: str = "auto",
    limit: int | None = None,
    reference=None,
    report: str | os.PathLike | None = None,
    model_label: str | None = None,
    backend_label: str | None = None,
    progress: Callable[[dict], None] | None = None,
    gt: str | os.PathLike | None = None,
    minterpolate: bool = True,
) -> dict:
    """`slomo eval` after the CLI has opened the model: measure and write the report."""
    data = Path(data)
    resolved = check_eval_options(data, layout, limit, report, gt)
    gt_root = ground_truth_root(data, resolved, gt)
    result = evaluate_triplets(
        iter_triplets(data, resolved, limit=limit, gt=gt_root),
        interpolator,
        reference,
        progress,
        minterpolate=minterpolate,
    )
    result = {
        "data": str(data),
        "layout": resolved,
        "ground_truth": str(gt_root) if gt_root else None,
        "model": model_label,
        "backend": backend_label,
        **result,
    }
    if report is not None:
        from superslomo.eval.reports import write_json

        write_json(report, result)
    return result


def summary_lines(result: dict) -> list[str]:
    base = result["baseline"]
    where = f", ground truth from {result['ground_truth']}" if result.get("ground_truth") else ""
    lines = [f"eval: {result['count']} triplet(s) from {result['data']} (layout {result['layout']}{where})"]
    rows = [("model", result)] if "psnr" in result else []
    rows.append(("linear blend", base))
    if "minterpolate" in result:
        rows.append(("ffmpeg minterpolate", result["minterpolate"]))
    lines.append(f"  {'':20s} {'PSNR dB':>8s} {'SSIM':>7s} {'IE':>7s}")
    for label, row in rows:
        lines.append(f"  {label:20s} {row['psnr']:8.2f} {row['ssim']:7.4f} {row['ie']:7.3f}")
    if "psnr" in result:
        lines.append(f"  gain over blend: {result['psnr'] - base['psnr']:+.2f} dB PSNR")
        if "minterpolate" in result:
            lines.append(
                f"  gain over minterpolate: {result['psnr'] - result['minterpolate']['psnr']:+.2f} dB PSNR"
            )
    if "vs_reference" in result:
        ref = result["vs_reference"]
        lines.append(f"  vs reference:  {ref['psnr']:.2f} dB PSNR, SSIM {ref['ssim']:.4f}")
    return lines
