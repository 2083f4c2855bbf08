"""Parity: the exported graphs (or engines) of a model folder against the PyTorch model.

Both sides run through the same code path, the runtime's `Backend` protocol and `Interpolator`,
so onnxruntime, TensorRT and anything else that implements `infer(graph, inputs)` are checked
alike. Four outputs are compared per case:

- `flow01`, `flow10`: the flow graph's outputs;
- `frame_t`: the interpolation graph's output, fed the *reference* flows, so that an error here
  belongs to the interpolation graph and not to flow errors it inherited;
- `final`: the frames a user gets (each side its own flows, padded, cropped), checked by PSNR.

Tensors are compared with Polygraphy's `Comparator.compare_accuracy` and `SimpleCompareFunc`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from superslomo.contracts.frames import frame_to_graph, interp_inputs
from superslomo.errors import CheckFailed, SloMoError
from superslomo.eval.metrics import psnr
from superslomo.runtime.backend import Backend
from superslomo.runtime.interpolator import Interpolator

OUTPUTS = ("flow01", "flow10", "frame_t", "final")
IMAGE_OUTPUTS = ("frame_t", "final")
# t = 0.5 is symmetric: a graph that uses 1 - t gives the right answer there. The other two
# times catch it, and batching three times checks that t is taken per item, not broadcast.
DEFAULT_TIMES = (0.25, 0.5, 0.75)
DEFAULT_SIZES = ((448, 256),)
REFERENCE_NAME = "pytorch"


@dataclass(frozen=True)
class Gate:
    """What makes an output pass: element-wise tolerances (Polygraphy's elemwise check, an element
    fails when it exceeds both atol and rtol * |reference|) or a PSNR floor on the frames."""

    mode: str  # "tolerance" | "psnr"
    atol: float | None = None
    rtol: float | None = None
    min_psnr: float | None = None
    origin: str = "default"  # "default for fp16" or "command line"


# fp32 graphs do the same arithmetic as PyTorch in another order: differences are float rounding.
# fp16 and INT8 change the arithmetic itself, so element-wise tolerances would be arbitrary; the
# question there is whether the frames still look the same, which PSNR answers.
DEFAULT_GATES = {
    "fp32": Gate("tolerance", atol=1e-4, rtol=1e-4),
    "fp16": Gate("psnr", min_psnr=40.0),
    "int8": Gate("psnr", min_psnr=30.0),
}


def choose_gate(
    precision: str, atol: float | None = None, rtol: float | None = None, min_psnr: float | None = None
) -> Gate:
    if min_psnr is not None and (atol is not None or rtol is not None):
        raise SloMoError(
            "give either --atol/--rtol (tensor tolerances) or --min-psnr (frame quality), not both"
        )
    for name, value in (("atol", atol), ("rtol", rtol)):
        if value is not None and not (value >= 0 and math.isfinite(value)):
            raise SloMoError(f"--{name} must be a finite number >= 0, got {value}")
    if min_psnr is not None:
        if not math.isfinite(min_psnr):
            raise SloMoError(f"--min-psnr must be a finite number of dB, got {min_psnr}")
        return Gate("psnr", min_psnr=min_psnr, origin="command line")
    if atol is not None or rtol is not None:
        # One tolerance alone means only that one counts: the other is 0, which no error is under.
        return Gate("tolerance", atol=atol or 0.0, rtol=rtol or 0.0, origin="command line")
    if precision not in DEFAULT_GATES:
        raise SloMoError(f"no parity defaults for precision {precision!r}; give --atol/--rtol or --min-psnr")
    return Gate(**{**asdict(DEFAULT_GATES[precision]), "origin": f"default for {precision}"})


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'448x256,1280x720' -> [(448, 256), (1280, 720)] (WIDTHxHEIGHT, as video people write it)."""
    sizes = []
    for item in (part.strip() for part in text.split(",")):
        try:
            width, height = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise SloMoError(
                f"sizes are WIDTHxHEIGHT[,WIDTHxHEIGHT...], e.g. 448x256,1280x720; got {item!r}"
            ) from None
        if not (16 <= width <= 8192 and 16 <= height <= 8192):
            raise SloMoError(f"size {item} is out of range (16..8192 on each side)")
        sizes.append((width, height))
    if not sizes:
        raise SloMoError("no sizes given")
    return sizes


# -- inputs -----------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    frame0: np.ndarray  # HxWx3 uint8
    frame1: np.ndarray


def _resize(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    if frame.shape[:2] == (height, width):
        return frame
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR))


def _to_u8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def random_pair(width: int, height: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random image and a shifted copy: structure at several scales and a real motion, so
    the flows are not trivially zero and warping errors show."""
    image = np.zeros((height, width, 3), dtype=np.float64)
    for cell, weight in ((32, 0.6), (8, 0.3), (1, 0.1)):
        coarse = rng.random((-(-height // cell) + 1, -(-width // cell) + 1, 3))
        image += weight * np.kron(coarse, np.ones((cell, cell, 1)))[:height, :width]
    dy, dx = (int(v) for v in rng.integers(-6, 7, size=2))
    shifted = np.roll(image, (dy, dx), axis=(0, 1)) + rng.normal(0.0, 0.01, image.shape)
    return _to_u8(image), _to_u8(shifted)


def random_cases(sizes: Sequence[tuple[int, int]], seed: int = 0) -> list[Case]:
    rng = np.random.default_rng(seed)
    return [Case(f"random-{w}x{h}", *random_pair(w, h, rng)) for w, h in sizes]


def frame_cases(
    paths: Sequence[str | os.PathLike], sizes: Sequence[tuple[int, int]] | None = None, pairs: int = 2
) -> list[Case]:
    """Pairs from the given images, frame folders and videos (consecutive frames, in order) and
    triplet data sets (each sequence's own pair), at their own size or resized to each of `sizes`."""
    from superslomo.eval.datasets import iter_pairs
    from superslomo.video.frames import IMAGE_SUFFIXES, iter_source_frames, list_frame_files, read_image

    if pairs < 1:
        raise SloMoError(f"--pairs must be >= 1, got {pairs}")
    found: list[tuple[tuple[str, np.ndarray], tuple[str, np.ndarray]]] = []
    frames: list[tuple[str, np.ndarray]] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise SloMoError(f"frames not found: {path}")
        if path.is_dir() and not list_frame_files(path):
            # A data set of sequences: chaining would pair one sequence's last frame with the next's first.
            for name, frame0, frame1 in iter_pairs(path):
                found.append(((f"{name}[0]", frame0), (f"{name}[1]", frame1)))
                if len(found) >= pairs:
                    break
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            frames.append((path.stem, read_image(path)))
        else:
            for index, frame in enumerate(iter_source_frames(path, max_frames=pairs + 1)):
                frames.append((f"{path.stem}[{index}]", frame))
        if len(found) + max(0, len(frames) - 1) >= pairs:
            break
    found += list(pairwise(frames))
    if not found:
        raise SloMoError(
            "--data needs at least two frames (two images, a folder or video of them, or a triplet data set)"
        )
    cases = []
    for (name0, f0), (name1, f1) in found[:pairs]:
        if sizes:
            for width, height in sizes:
                cases.append(
                    Case(
                        f"{name0}-{name1}@{width}x{height}",
                        _resize(f0, width, height),
                        _resize(f1, width, height),
                    )
                )
        else:
            height, width = f0.shape[:2]
            cases.append(Case(f"{name0}-{name1}@{width}x{height}", f0, _resize(f1, width, height)))
    return cases


# -- running both sides -----------------------------------------------------------------------
def _frames_as_float(frames: np.ndarray, io: str) -> np.ndarray:
    if io == "uint8":  # NHWC uint8 -> NCHW in [0,1], the float graphs' layout
        return frames.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    return frames.astype(np.float32, copy=False)


def _like_test_output(frames: np.ndarray, io: str) -> np.ndarray:
    """The reference frame as the graph contract delivers it: clamped to [0,1] (the PyTorch model
    does not clamp; the exported graph does), and rounded to 8 bits the way a uint8 graph rounds,
    so uint8 I/O is not blamed for the quantisation it is asked to do."""
    frames = np.clip(frames, 0.0, 1.0)
    if io == "uint8":
        frames = np.round(frames * 255.0) / 255.0
    return frames.astype(np.float32)


def _run_case(test: Interpolator, reference: Interpolator, case: Case, times: Sequence[float]):
    ref_pair = reference.prepare(case.frame0, case.frame1)
    test_pair = test.prepare(case.frame0, case.frame1)
    ref_flows, test_flows = reference.flows(ref_pair), test.flows(test_pair)
    io = test.backend.manifest.io
    multiple = test.backend.manifest.size_multiple
    test_frames = [frame_to_graph(f, io, multiple) for f in (case.frame0, case.frame1)]
    ref_frames = [frame_to_graph(f, reference.io, multiple) for f in (case.frame0, case.frame1)]
    # The interpolation graph alone, on the reference flows (see the module docstring).
    test_frame_t = test.backend.infer("interp", interp_inputs(*test_frames, *ref_flows, times))["frame_t"]
    ref_frame_t = reference.backend.infer("interp", interp_inputs(*ref_frames, *ref_flows, times))["frame_t"]
    test_final = np.stack(test.synthesize(test_pair, times, as_float=True))
    ref_final = np.stack(reference.synthesize(ref_pair, times, as_float=True))
    test.release(test_pair)
    reference.release(ref_pair)
    test_out = {
        "flow01": test_flows[0].astype(np.float32),
        "flow10": test_flows[1].astype(np.float32),
        "frame_t": _frames_as_float(test_frame_t, io),
        "final": test_final.astype(np.float32),
    }
    ref_out = {
        "flow01": ref_flows[0].astype(np.float32),
        "flow10": ref_flows[1].astype(np.float32),
        "frame_t": _like_test_output(ref_frame_t, io),
        "final": _like_test_output(ref_final, io),
    }
    return ref_out, test_out


def _compare_func(gate: Gate, io: str):
    from polygraphy.comparator import SimpleCompareFunc

    if gate.mode == "psnr":
        # Statistics only (every element passes an infinite tolerance); PSNR decides.
        return SimpleCompareFunc(atol=math.inf, rtol=math.inf, check_error_stat="elemwise")
    frame_atol = gate.atol
    if io == "uint8":
        # A uint8 graph rounds to 1/255 steps; values at a rounding boundary may go either way.
        frame_atol = gate.atol + 1.0 / 255.0
    atol = {"": gate.atol, "frame_t": frame_atol, "final": frame_atol}
    return SimpleCompareFunc(atol=atol, rtol={"": gate.rtol}, check_error_stat="elemwise")


def _tolerances(gate: Gate, output: str, io: str) -> dict:
    if gate.mode == "psnr":
        if output in IMAGE_OUTPUTS:
            return {"min_psnr": gate.min_psnr}
        return {"gated": False}  # flows are reported, the frames they make are judged
    atol = gate.atol + (1.0 / 255.0 if io == "uint8" and output in IMAGE_OUTPUTS else 0.0)
    return {"atol": atol, "rtol": gate.rtol, "check": "elemwise"}


def check_parity(
    backend: Backend,
    reference: Backend,
    cases: Sequence[Case],
    gate: Gate,
    times: Sequence[float] = DEFAULT_TIMES,
) -> dict:
    """Run `backend` and `reference` on every case and compare; returns the report (a dict).

    `reference` is normally `TorchBackend` on the checkpoint; any Backend works, which is what
    lets the TensorRT backend, ONNX Runtime and test doubles share this code.
    """
    try:
        from polygraphy.comparator import Comparator, IterationResult, RunResults
        from polygraphy.logger import G_LOGGER
    except ImportError:
        raise SloMoError("parity needs Polygraphy: pip install 'superslomo-trt[torch]'") from None
    if not cases:
        raise SloMoError("parity needs at least one input case")
    began = time.perf_counter()
    io = backend.manifest.io
    test_name = backend.name if backend.name != REFERENCE_NAME else f"{backend.name}-under-test"
    # NaN/Inf must be a parity failure (exit 1) naming the output, not an input error (exit 2).
    test, ref = Interpolator(backend, check_finite=False), Interpolator(reference, check_finite=False)
    ref_iters, test_iters, psnrs = [], [], []
    for case in cases:
        ref_out, test_out = _run_case(test, ref, case, times)
        ref_iters.append(IterationResult(outputs=ref_out, runner_name=REFERENCE_NAME))
        test_iters.append(IterationResult(outputs=test_out, runner_name=test_name))
        psnrs.append(
            {
                name: psnr(test_out[name], ref_out[name]) if np.isfinite(test_out[name]).all() else math.nan
                for name in IMAGE_OUTPUTS
            }
        )
    results = RunResults()
    results.append((REFERENCE_NAME, ref_iters))
    results.append((test_name, test_iters))
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL):  # Polygraphy's own log lines would drown ours
        accuracy = Comparator.compare_accuracy(results, compare_func=_compare_func(gate, io))
    if not hasattr(accuracy, "keys"):  # Polygraphy >= 0.53: a list, one result per compare function
        accuracy = accuracy[0]
    per_iteration = accuracy[(REFERENCE_NAME, test_name)]

    report_cases = []
    for index, case in enumerate(cases):
        outputs = {}
        for name in OUTPUTS:
            result = per_iteration[index][name]
            finite = bool(np.isfinite(test_iters[index][name]).all())
            value = psnrs[index].get(name)
            if not finite:
                passed, why = False, "non-finite values (NaN/Inf)"
            elif gate.mode == "tolerance":
                passed = bool(result)
                why = (
                    None
                    if passed
                    else (
                        f"max abs error {result.max_absdiff:.3g} exceeds "
                        f"{_tolerances(gate, name, io)['atol']:.3g} (rtol {gate.rtol:.3g})"
                    )
                )
            elif name in IMAGE_OUTPUTS:
                passed = value >= gate.min_psnr
                why = None if passed else f"PSNR {value:.2f} dB below {gate.min_psnr:.2f} dB"
            else:
                passed, why = True, None
            outputs[name] = {
                "max_abs": result.max_absdiff,
                "mean_abs": result.mean_absdiff,
                "psnr": value,
                "passed": passed,
                "why": why,
                "shape": list(test_iters[index][name].shape),
                **_tolerances(gate, name, io),
            }
        report_cases.append(
            {"name": case.name, "size": f"{case.frame0.shape[1]}x{case.frame0.shape[0]}", "outputs": outputs}
        )

    summary = {}
    for name in OUTPUTS:
        entries = [c["outputs"][name] for c in report_cases]
        values = [e["psnr"] for e in entries if e["psnr"] is not None]
        summary[name] = {
            "max_abs": max(e["max_abs"] for e in entries),
            "mean_abs": float(np.mean([e["mean_abs"] for e in entries])),
            "psnr": min(values) if values else None,
            "passed": all(e["passed"] for e in entries),
            **_tolerances(gate, name, io),
        }
    failed = [name for name in OUTPUTS if not summary[name]["passed"]]
    manifest = backend.manifest
    return {
        "passed": not failed,
        "failed": failed,
        "backend": backend.name,
        "reference": getattr(reference, "name", "reference"),
        "precision": manifest.precision,
        "io": io,
        "warp": manifest.warp,
        "kind": manifest.kind,
        "gate": asdict(gate),
        "times": [float(t) for t in times],
        "outputs": summary,
        "cases": report_cases,
        "seconds": round(time.perf_counter() - began, 3),
    }


# -- the command ------------------------------------------------------------------------------
def run_parity(
    folder: str | os.PathLike,
    checkpoint: str | os.PathLike,
    backend: str = "auto",
    frames: Sequence[str | os.PathLike] | None = None,
    sizes: Sequence[tuple[int, int]] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    min_psnr: float | None = None,
    times: Sequence[float] = DEFAULT_TIMES,
    seed: int = 0,
    pairs: int = 2,
    report: str | os.PathLike | None = None,
    junit: str | os.PathLike | None = None,
) -> dict:
    """`slomo parity`: open both sides, compare, write the reports. Raises CheckFailed (exit 1)
    naming the failing outputs after the reports are written."""
    from superslomo.contracts.files import file_sha256
    from superslomo.contracts.manifest import read_manifest
    from superslomo.runtime.loader import open_backend

    folder, checkpoint = Path(folder), Path(checkpoint)
    for path in (report, junit):
        if path is not None and not Path(path).parent.is_dir():
            raise SloMoError(f"report folder does not exist: {Path(path).parent}")
    if not checkpoint.is_file():
        raise SloMoError(f"checkpoint not found: {checkpoint}")
    for t in times:
        if not 0.0 < t < 1.0:
            raise SloMoError(f"times must lie strictly between 0 and 1, got {t}")
    manifest = read_manifest(folder)
    gate = choose_gate(manifest.precision, atol, rtol, min_psnr)
    cases = frame_cases(frames, sizes, pairs) if frames else random_cases(sizes or DEFAULT_SIZES, seed)
    try:
        from superslomo.eval.torch_backend import TorchBackend
    except ImportError:
        raise SloMoError("parity runs the PyTorch model: pip install 'superslomo-trt[torch]'") from None
    reference = TorchBackend.from_checkpoint(checkpoint, scales=manifest.scales)
    emulation = None
    if manifest.precision == "fp16" and manifest.kind == "onnx" and backend in ("auto", "onnxruntime"):
        # ONNX Runtime's CPU provider would run this graph in fp32 and measure nothing about fp16.
        from superslomo.eval.fp16_emulation import open_emulated_backend

        test, emulation = open_emulated_backend(folder, manifest)
    else:
        test = open_backend(folder, backend=backend)
    try:
        result = check_parity(test, reference, cases, gate, times)
    finally:
        test.close()
    checkpoint_sha = file_sha256(checkpoint)
    exported_from = manifest.source.get("sha256")
    result.update(
        {
            "model": str(folder),
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": checkpoint_sha,
            # A folder exported from another checkpoint is not an error here (that is drift too, and the
            # numbers will say so), but the report says it so nobody hunts for a numeric bug.
            "checkpoint_matches_manifest": None if exported_from is None else exported_from == checkpoint_sha,
            "inputs": "frames" if frames else f"random (seed {seed})",
            "emulation": emulation,
        }
    )
    if report is not None:
        from superslomo.eval.reports import write_json

        write_json(report, result)
    if junit is not None:
        from superslomo.eval.reports import write_junit

        write_junit(junit, "slomo.parity", junit_cases(result), result["seconds"])
    return result


def junit_cases(result: dict) -> list[dict]:
    cases = []
    for case in result["cases"]:
        for name, out in case["outputs"].items():
            details = ", ".join(
                f"{k}={out[k]}"
                for k in ("max_abs", "mean_abs", "psnr", "atol", "rtol", "min_psnr")
                if out.get(k) is not None
            )
            cases.append(
                {
                    "classname": f"parity.{result['backend']}.{case['name']}",
                    "name": name,
                    "failure": None if out["passed"] else f"{name}: {out['why']}",
                    "details": details,
                }
            )
    return cases


def _fmt(value: float | None, spec: str) -> str:
    if value is None:
        return "-"
    return format(value, spec) if math.isfinite(value) else str(value)


def summary_lines(result: dict) -> list[str]:
    gate = result["gate"]
    rule = (
        f"PSNR >= {gate['min_psnr']} dB on frames"
        if gate["mode"] == "psnr"
        else f"atol {gate['atol']:g}, rtol {gate['rtol']:g}"
    )
    lines = [
        (
            f"parity: {result['backend']} ({result['precision']}, io {result['io']}) "
            f"vs {result['reference']}, "
            f"{len(result['cases'])} case(s), t = {', '.join(f'{t:g}' for t in result['times'])}; "
            f"gate: {rule} ({gate['origin']})"
        ),
        f"  {'output':8s} {'max abs':>10s} {'mean abs':>10s} {'PSNR dB':>8s}  verdict",
    ]
    for name, out in result["outputs"].items():
        verdict = "ok" if out["passed"] else "FAIL"
        if out.get("gated") is False:
            verdict = "ok (reported)"
        lines.append(
            f"  {name:8s} {_fmt(out['max_abs'], '10.3g')} {_fmt(out['mean_abs'], '10.3g')} "
            f"{_fmt(out['psnr'], '8.2f')}  {verdict}"
        )
    emulation = result.get("emulation")
    if emulation:
        lines += [f"  measured: {emulation['measured']}", f"  not measured: {emulation['not_measured']}"]
    return lines


def raise_if_failed(result: dict) -> None:
    if result["passed"]:
        return
    reasons = []
    for name in result["failed"]:
        case = next(c for c in result["cases"] if not c["outputs"][name]["passed"])
        reasons.append(f"{name} ({case['outputs'][name]['why']} in {case['name']})")
    raise CheckFailed("parity failed: " + "; ".join(reasons))
