"""The accuracy report (what `--precision auto` reads): every runtime x precision here against
held-out middle frames of footage that is not an evaluation set."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


def measure_precisions(
    folders: dict[str, Path],
    clips: Sequence[Path],
    pairs: int = 12,
    size: tuple[int, int] = (640, 360),
    say: Callable[[str], None] = print,
) -> dict:
    """PSNR against the held-out middle frame of triplets from `clips`, for every runtime x
    precision that runs `folders` ("fp32" and optionally "int8") here, and each one's drop
    against fp32 on onnxruntime on the same triplets: the accuracy report of `--precision auto`."""
    from superslomo.calibration.sampling import open_sources, sample_triplets
    from superslomo.eval.datasets import check_not_evaluation_set
    from superslomo.eval.metrics import psnr
    from superslomo.runtime import Interpolator
    from superslomo.runtime.loader import openvino_usable
    from superslomo.runtime.options import BackendOptions, OnnxRuntimeOptions, OpenVinoOptions
    from superslomo.runtime.selection import cpu_facts, openvino_capabilities, runtime_versions

    for clip in clips:
        check_not_evaluation_set(clip, "accuracy-report")
    samples = list(sample_triplets(open_sources(clips), pairs, size))
    combos: list[tuple[str, str, BackendOptions]] = [
        ("onnxruntime", "fp32", OnnxRuntimeOptions()),
        ("onnxruntime", "int8", OnnxRuntimeOptions()),
    ]
    if openvino_usable()[0]:
        combos += [
            ("openvino", "fp32", OpenVinoOptions(precision="f32")),
            ("openvino", "bf16", OpenVinoOptions(precision="bf16")),
            ("openvino", "int8", OpenVinoOptions(precision="f32")),
        ]
    capabilities = openvino_capabilities() or []
    outputs: dict[str, list[np.ndarray]] = {}
    entries: dict[str, dict] = {}
    for runtime, precision, options in combos:
        key = f"{runtime}/{precision}"
        folder = folders.get("fp32" if precision == "bf16" else precision)
        if folder is None:
            entries[key] = {"drop_db": None, "why": f"no {precision} folder given"}
            continue
        if precision == "bf16" and "BF16" not in capabilities:
            entries[key] = {
                "drop_db": None,
                "why": "not measured: the measuring CPU has no bf16 (OpenVINO compiled the hint to f32)",
            }
            continue
        say(f"measuring {key} on {len(samples)} triplets ...")
        with Interpolator.from_dir(folder, options) as interp:
            outputs[key] = [interp.interpolate(s.frame0, s.frame1, [0.5])[0] for s in samples]
    reference = outputs["onnxruntime/fp32"]
    targets = [s.target for s in samples]
    clip_of = np.array([s.source for s in samples])
    base = np.array([psnr(o, t) for o, t in zip(reference, targets, strict=True)])
    for key, frames in outputs.items():
        value = np.array([psnr(o, t) for o, t in zip(frames, targets, strict=True)])
        against = [psnr(o, r) for o, r in zip(frames, reference, strict=True)]
        finite = [a for a in against if math.isfinite(a)]
        per_clip = {
            Path(clips[c]).name: round(float(np.mean(base[clip_of == c] - value[clip_of == c])), 3)
            for c in sorted(set(clip_of.tolist()))
        }
        entries[key] = {
            "psnr_db": round(float(value.mean()), 3),
            # What gates auto: the worst clip's mean drop, so footage a precision handles badly is
            # not averaged away by footage it handles well.
            "drop_db": max(per_clip.values()),
            "mean_drop_db": round(float(np.mean(base - value)), 3),
            "drop_db_per_clip": per_clip,
            "psnr_vs_fp32_db": round(float(np.mean(finite)), 2) if finite else None,
        }
    return {
        "reference": "onnxruntime/fp32",
        "psnr_fp32_db": round(float(base.mean()), 3),
        "frames": {
            "clips": [Path(c).name for c in clips],
            "triplets": len(samples),
            "size": f"{size[0]}x{size[1]}",
            "picked": [[Path(clips[s.source]).name, s.index] for s in samples],
        },
        "machine": {**cpu_facts(), "openvino_capabilities": capabilities, "versions": runtime_versions()},
        "candidates": entries,
    }
