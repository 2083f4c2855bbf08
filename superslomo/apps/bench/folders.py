"""What `slomo bench` runs: the checkpoint (or random weights), the model folders exported and
quantized from it (cached under --workdir), and the backends opened on them, each one that cannot
run recorded with why."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from superslomo.apps.bench.options import BACKENDS, BenchOptions
from superslomo.contracts.frames import padded_size
from superslomo.errors import SloMoError


@dataclass
class Prepared:
    """What the backends run: a checkpoint (PyTorch) and the model folders made from it."""

    checkpoint: Path | None
    model_label: str
    model_width: int
    folders: dict[str, Path] = field(default_factory=dict)  # "fp32"/"fp16"/"int8-cpu"/"int8" -> folder
    notes: list[str] = field(default_factory=list)
    int8_report: dict | None = None
    skips: dict[str, str] = field(default_factory=dict)  # backend -> why it cannot run


def shipped_checkpoint() -> Path | None:
    from superslomo.apps.weights import shipped_checkpoint

    return shipped_checkpoint()


def load_model(options: BenchOptions):
    """(torch model, checkpoint path or None, a short label, cache key)."""
    import torch

    from superslomo.model import file_sha256, load_checkpoint, super_slomo

    path = options.model or (shipped_checkpoint() if options.model_width is None else None)
    if path is not None:
        model = load_checkpoint(path)
        key = file_sha256(path)[:12]
        return model, path, f"{path.name} (width {model.config.width})", key
    width = options.model_width or 16
    torch.manual_seed(0)
    model = super_slomo(width)
    why = "" if options.model_width else ", no checkpoint shipped"
    return model, None, f"random weights, width {width}{why}", f"random-w{width}"


def _export_cached(model, folder: Path, precision: str, source: dict, say: Callable[[str], None]) -> Path:
    from superslomo.export import ExportOptions, export_model

    if not (folder / "manifest.json").is_file():
        say(f"exporting {precision} ONNX to {folder} ...")
        export_model(model, folder, ExportOptions(precision=precision), source=source)
    return folder


def _int8_cached(
    fp32: Path,
    folder: Path,
    calib_data: Sequence[Path],
    pairs: int,
    conv_outputs: bool,
    say: Callable[[str], None],
) -> tuple[Path, dict]:
    """An INT8 Q/DQ folder from a small calibration set, made as the shipped model's is on first
    use (`quantize_for_cpu`). `conv_outputs` puts Q/DQ on conv outputs as well, which is what lets
    ONNX Runtime's CPU kernels run integer convolutions; without it the CPU dequantizes the
    weights and convolves in float (TensorRT fuses either form)."""
    from superslomo.apps.models import quantize_for_cpu
    from superslomo.calibration.quantize import REPORT_NAME

    quantize_for_cpu(fp32, folder, list(calib_data), pairs, conv_outputs, say)
    report = json.loads((folder / REPORT_NAME).read_text())
    return folder, report


def prepare_models(options: BenchOptions, say: Callable[[str], None] = print) -> tuple[object, Prepared]:
    from superslomo.runtime.loader import openvino_usable, tensorrt_usable

    model, checkpoint, label, key = load_model(options)
    prepared = Prepared(checkpoint, label, model.config.width)
    if checkpoint is None:
        prepared.notes.append(
            "no checkpoint: random weights (timings hold; the INT8 PSNR drop means nothing)"
        )
    root = options.workdir / key
    source = {"checkpoint": checkpoint.name if checkpoint else "random", "sha256": key}
    trt_ok, trt_why = tensorrt_usable()
    wants_openvino = any(BACKENDS[b][0] == "openvino" for b in options.backends)
    ov_ok, ov_why = openvino_usable() if wants_openvino else (True, "")
    for backend in options.backends:
        runtime, precision = BACKENDS[backend]
        if runtime == "tensorrt" and not trt_ok:
            prepared.skips[backend] = (
                f"{trt_why} (TensorRT needs an NVIDIA GPU: pip install 'superslomo-trt[tensorrt]')"
            )
        if runtime == "openvino" and not ov_ok:
            prepared.skips[backend] = ov_why
        if runtime == "onnxruntime-cuda":
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                prepared.skips[backend] = (
                    "onnxruntime has no CUDAExecutionProvider here (pip install onnxruntime-gpu)"
                )
        if precision == "int8" and backend not in prepared.skips and not options.calib_data:
            prepared.skips[backend] = "no calibration footage: pass --data CLIP (a few real frame pairs)"
    runnable = [b for b in options.backends if b not in prepared.skips]
    wanted = {BACKENDS[b][1] for b in runnable if BACKENDS[b][0] != "torch"}
    if wanted:
        prepared.folders["fp32"] = _export_cached(model, root / "fp32", "fp32", source, say)
    if "fp16" in wanted:
        prepared.folders["fp16"] = _export_cached(model, root / "fp16", "fp16", source, say)
    if "onnxruntime-int8" in runnable or "openvino-int8" in runnable:
        prepared.folders["int8-cpu"], prepared.int8_report = _int8_cached(
            prepared.folders["fp32"], root / "int8-cpu", options.calib_data, options.calib_pairs, True, say
        )
    if "tensorrt-int8" in runnable:
        prepared.folders["int8"], report = _int8_cached(
            prepared.folders["fp32"], root / "int8", options.calib_data, options.calib_pairs, False, say
        )
        prepared.int8_report = prepared.int8_report or report
    return model, prepared


def _engine_folder(
    onnx: Path, sizes: Sequence[tuple[int, int]], max_batch: int, say: Callable[[str], None]
) -> Path:
    from superslomo.contracts.shapes import make_profile, parse_shape
    from superslomo.engine.builder import build_engines

    padded = [padded_size(h, w)[::-1] for w, h in sizes]
    hmax, wmax = max(h for _, h in padded), max(w for w, _ in padded)
    hmin, wmin = min(h for _, h in padded), min(w for w, _ in padded)
    opt_w, opt_h = padded[-1]
    folder = onnx.parent / f"engine-{onnx.name}-{wmin}x{hmin}-{wmax}x{hmax}-b{max_batch}"
    if not (folder / "manifest.json").is_file():
        say(f"building TensorRT engines in {folder} ...")
        profile = make_profile(
            parse_shape(f"1x{hmin}x{wmin}", "--min"),
            parse_shape(f"1x{opt_h}x{opt_w}", "--opt"),
            parse_shape(f"{max_batch}x{hmax}x{wmax}", "--max"),
        )
        build_engines(onnx, folder, [profile], timing_cache=onnx.parent / "timing.cache", log=say)
    return folder


def open_backends(
    options: BenchOptions, model, prepared: Prepared, say: Callable[[str], None] = print
) -> dict:
    """Backend objects by name; a backend that fails to open is recorded as skipped, with why."""
    from superslomo.eval.torch_backend import TorchBackend
    from superslomo.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from superslomo.runtime.options import OnnxRuntimeOptions, OpenVinoOptions

    threads = options.threads or os.cpu_count() or 1
    opened: dict = {}  # one Backend per name, of whichever runtime
    for name in options.backends:
        if name in prepared.skips:
            continue
        runtime, precision = BACKENDS[name]
        try:
            if runtime == "torch":
                opened[name] = TorchBackend(model, threads=threads)
            elif runtime == "onnxruntime":
                folder = prepared.folders["int8-cpu" if precision == "int8" else precision]
                opened[name] = OnnxRuntimeBackend(
                    folder, OnnxRuntimeOptions(threads=threads, providers=("CPUExecutionProvider",))
                )
            elif runtime == "openvino":
                from superslomo.runtime.openvino_backend import OpenVinoBackend

                folder = prepared.folders["int8-cpu" if precision == "int8" else "fp32"]
                opened[name] = OpenVinoBackend(
                    folder,
                    OpenVinoOptions(precision="bf16" if precision == "bf16" else "f32", threads=threads),
                )
            elif runtime == "onnxruntime-cuda":
                opened[name] = OnnxRuntimeBackend(
                    prepared.folders[precision], OnnxRuntimeOptions(threads=threads, device=0)
                )
            else:
                from superslomo.runtime.tensorrt_backend import TensorRTBackend

                folder = _engine_folder(prepared.folders[precision], options.sizes, options.max_batch, say)
                opened[name] = TensorRTBackend(folder)
            opened[name].activate()  # loading errors count as a skip too, with their reason
        except SloMoError as error:
            opened.pop(name, None)
            prepared.skips[name] = str(error)
    return opened
