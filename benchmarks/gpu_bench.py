"""GPU benchmark, one command on any CUDA box: `make gpu-bench` (or python benchmarks/gpu_bench.py).

Columns: PyTorch eager fp32 (the baseline), eager fp16, eager fp16 channels-last, torch.compile
fp16 channels-last, ONNX Runtime with the CUDA provider (fp32 and fp16 graphs) if installed, and
TensorRT fp32/fp16 engines if TensorRT is installed. Per size: flow and interpolation latency,
per interpolated frame for 2x and 8x, ratio to eager fp32, achieved TFLOP/s and the compute
floor `FLOPs / datasheet peak` of this GPU at the column's precision, and peak device memory.

Timing: the PyTorch columns run on device tensors and are timed with CUDA events after warm-up
(what the GPU spent, without host copies). ONNX Runtime and TensorRT go through the runtime's
Backend protocol, which copies frames in and results out, so they are timed by the wall clock
around synchronous calls: host-to-device copies are included there, as an app would pay them.
All columns run interleaved, as in `slomo bench`. Without a GPU it says so and exits 0.

    python benchmarks/gpu_bench.py [--sizes 1280x720,1920x1080] [--width 32] [--iters 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _skip(message: str) -> None:
    print(f"gpu-bench: skipped: {message}")
    sys.exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1280x720,1920x1080")
    parser.add_argument(
        "--width",
        type=int,
        default=None,
        help="random weights at this width (default: the shipped checkpoint's)",
    )
    parser.add_argument("--model", type=Path, default=None, help="checkpoint (default: the shipped one)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to compile)")
    parser.add_argument("--workdir", type=Path, default=Path("out/gpu-bench"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    try:
        import torch
    except ImportError:
        _skip("PyTorch is not installed (pip install 'superslomo-trt[torch]')")
    if not torch.cuda.is_available():
        _skip(
            "no CUDA GPU visible to PyTorch (this machine has none, or the CPU build of torch is installed)"
        )

    from superslomo.apps.bench import (
        BenchOptions,
        Samples,
        graph_frames,
        load_model,
        parse_size_list,
        summarize,
        synthetic_pair,
    )
    from superslomo.errors import SloMoError
    from superslomo.eval.flops import model_flops
    from superslomo.eval.roofline import gpu_peak_tflops

    sizes = parse_size_list(args.sizes)
    model, checkpoint, label, key = load_model(BenchOptions(model=args.model, model_width=args.width))
    model = model.eval().cuda()
    device_name = torch.cuda.get_device_name()
    print(f"model: {label}; GPU: {device_name}; torch {torch.__version__}")

    # -- columns: name -> (precision, run(frames) -> (flow_ms, interp_ms)) ------------------------
    columns: dict = {}
    skips: dict[str, str] = {}

    def torch_column(dtype, channels_last: bool, compiled: bool):
        import copy

        net = copy.deepcopy(model)
        if dtype == torch.float16:
            # U-Nets in fp16; warps, flow algebra and fusion stay fp32 (SuperSloMo._run_unet)
            net.flow_net.half()
            net.interp_net.half()
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        flow_fn, synth_fn = net.flow, net.synthesize
        if compiled:
            flow_fn = torch.compile(net.flow, mode="max-autotune-no-cudagraphs")
            synth_fn = torch.compile(net.synthesize, mode="max-autotune-no-cudagraphs")

        @torch.inference_mode()
        def run(inputs):
            f0, f1, t = inputs["torch"]
            if channels_last:
                f0, f1 = f0.to(memory_format=torch.channels_last), f1.to(memory_format=torch.channels_last)
            start, middle, end = (torch.cuda.Event(enable_timing=True) for _ in range(3))
            start.record()
            flow01, flow10 = flow_fn(f0, f1)
            middle.record()
            synth_fn(f0, f1, flow01, flow10, t)
            end.record()
            end.synchronize()
            return start.elapsed_time(middle), middle.elapsed_time(end)

        return run

    columns["torch-fp32"] = ("fp32", torch_column(torch.float32, False, False))
    columns["torch-fp16"] = ("fp16", torch_column(torch.float16, False, False))
    columns["torch-fp16-cl"] = ("fp16", torch_column(torch.float16, True, False))
    if not args.no_compile:
        columns["torch-compile-fp16-cl"] = ("fp16", torch_column(torch.float16, True, True))

    def backend_column(backend):
        def run(inputs):
            f0, f1 = inputs["numpy"]
            began = time.perf_counter()
            flows = backend.infer("flow", {"frame0": f0, "frame1": f1})
            middle = time.perf_counter()
            backend.infer("interp", {"frame0": f0, "frame1": f1, **flows, "t": np.full(1, 0.5, np.float32)})
            return 1000 * (middle - began), 1000 * (time.perf_counter() - middle)

        return run

    root = args.workdir / key
    folders = {}

    def onnx_folder(precision: str) -> Path:
        if precision not in folders:
            from superslomo.export import ExportOptions, export_model

            folder = root / precision
            if not (folder / "manifest.json").is_file():
                print(f"exporting {precision} ONNX to {folder} ...")
                export_model(
                    model.cpu(),
                    folder,
                    ExportOptions(precision=precision),
                    source={"checkpoint": checkpoint.name if checkpoint else "random", "sha256": key},
                )
                model.cuda()
            folders[precision] = folder
        return folders[precision]

    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        from superslomo.runtime.onnxruntime_backend import OnnxRuntimeBackend
        from superslomo.runtime.options import OnnxRuntimeOptions

        for precision in ("fp32", "fp16"):
            try:
                columns[f"onnxruntime-cuda-{precision}"] = (
                    precision,
                    backend_column(OnnxRuntimeBackend(onnx_folder(precision), OnnxRuntimeOptions(device=0))),
                )
            except SloMoError as error:
                skips[f"onnxruntime-cuda-{precision}"] = str(error)
    else:
        skips["onnxruntime-cuda"] = "no CUDAExecutionProvider (pip install onnxruntime-gpu)"

    from superslomo.runtime.loader import tensorrt_usable

    usable, why = tensorrt_usable()
    if usable:
        from superslomo.contracts.frames import padded_size
        from superslomo.contracts.shapes import make_profile, parse_shape
        from superslomo.engine.builder import build_engines
        from superslomo.runtime.tensorrt_backend import TensorRTBackend

        padded = [padded_size(h, w)[::-1] for w, h in sizes]
        low = f"1x{min(h for _, h in padded)}x{min(w for w, _ in padded)}"
        high = f"1x{max(h for _, h in padded)}x{max(w for w, _ in padded)}"
        for precision in ("fp32", "fp16"):
            name = f"tensorrt-{precision}"
            try:
                engines = root / f"engine-{precision}-{low}-{high}"
                if not (engines / "manifest.json").is_file():
                    print(f"building {name} engines ...")
                    profile = make_profile(parse_shape(low), parse_shape(high), parse_shape(high))
                    build_engines(
                        onnx_folder(precision), engines, [profile], timing_cache=root / "timing.cache"
                    )
                columns[name] = (precision, backend_column(TensorRTBackend(engines)))
            except SloMoError as error:
                skips[name] = str(error)
    else:
        skips["tensorrt"] = why

    # -- interleaved measurement ------------------------------------------------------------------
    rows = []
    for size in sizes:
        f0, f1 = (graph_frames(f) for f in synthetic_pair(*size))
        t = torch.full((1,), 0.5, device="cuda")
        inputs = {"numpy": (f0, f1), "torch": (torch.from_numpy(f0).cuda(), torch.from_numpy(f1).cuda(), t)}
        samples = {name: Samples() for name in columns}
        peaks = {name: 0.0 for name in columns}
        names = list(columns)
        for iteration in range(args.warmup + args.iters):
            shift = iteration % len(names)
            for name in names[shift:] + names[:shift]:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                flow_ms, interp_ms = columns[name][1](inputs)
                if iteration >= args.warmup:
                    samples[name].flow_ms.append(flow_ms)
                    samples[name].interp_ms.append(interp_ms)
                    # PyTorch's allocator only: ORT and TensorRT allocate outside it
                    peaks[name] = max(peaks[name], torch.cuda.max_memory_allocated() / 2**20)
        flops = model_flops(model.config.width, *size)
        for name in names:
            precision = columns[name][0]
            s = samples[name]
            flow, interp = summarize(s.flow_ms), summarize(s.interp_ms)
            x2 = summarize([a + b for a, b in zip(s.flow_ms, s.interp_ms, strict=False)])
            x8 = summarize([a / 7 + b for a, b in zip(s.flow_ms, s.interp_ms, strict=False)])
            peak = gpu_peak_tflops(device_name, precision)
            gflop = flops.per_frame(1) / 1e9
            rows.append(
                {
                    "backend": name,
                    "precision": precision,
                    "width": size[0],
                    "height": size[1],
                    "model_width": model.config.width,
                    "flow_ms": flow["median"],
                    "flow_iqr_ms": flow["iqr"],
                    "interp_ms": interp["median"],
                    "interp_iqr_ms": interp["iqr"],
                    "per_frame_ms": x2["median"],
                    "per_frame_iqr_ms": x2["iqr"],
                    "per_frame_8x_ms": x8["median"],
                    "gflops": gflop,
                    "achieved_tflops_s": gflop / x2["median"],
                    "peak_tflops_s": peak,
                    "floor_ms": gflop / peak if peak else None,
                    "peak_device_mb": peaks[name] if name.startswith("torch") else None,
                    "peak_rss_mb": None,
                    "skipped": None,
                }
            )
    base = {(r["width"], r["height"]): r["per_frame_ms"] for r in rows if r["backend"] == "torch-fp32"}
    for row in rows:
        row["speedup"] = base[row["width"], row["height"]] / row["per_frame_ms"]

    header = (
        f"{'column':24s} {'size':>10s} {'flow ms':>9s} {'interp ms':>9s} {'2x ms/fr':>9s} {'8x ms/fr':>9s} "
        f"{'vs fp32':>8s} {'TFLOP/s':>8s} {'floor ms':>8s} {'x floor':>7s} {'dev MB':>7s}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        floor = r["floor_ms"]
        print(
            f"{r['backend']:24s} {r['width']}x{r['height']:<5d} {r['flow_ms']:9.2f} {r['interp_ms']:9.2f} "
            f"{r['per_frame_ms']:9.2f} {r['per_frame_8x_ms']:9.2f} {r['speedup']:7.2f}x "
            f"{r['achieved_tflops_s']:8.1f} {floor if floor else float('nan'):8.2f} "
            f"{r['per_frame_ms'] / floor if floor else float('nan'):7.1f} "
            f"{r['peak_device_mb'] if r['peak_device_mb'] is not None else float('nan'):7.0f}"
        )
    for name, why in skips.items():
        print(f"{name:24s} skipped: {why}")
    trt = next(
        (r for r in rows if r["backend"] == "tensorrt-fp16" and (r["width"], r["height"]) == (1920, 1080)),
        None,
    )
    if trt:
        within = trt["per_frame_ms"] / trt["floor_ms"] if trt["floor_ms"] else None
        print(
            f"target tensorrt-fp16 >= 8x eager fp32 at 1920x1080: {trt['speedup']:.2f}x -> "
            f"{'met' if trt['speedup'] >= 8 else 'MISSED'}; within 2x of the floor: "
            f"{'-' if within is None else f'{within:.2f}x -> ' + ('met' if within <= 2 else 'MISSED')}"
        )
    else:
        print(
            "target tensorrt-fp16 at 1920x1080: not measured (" + skips.get("tensorrt", "size not run") + ")"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=args.json.parent, delete=False, suffix=".tmp") as f:
            json.dump(rows, f, indent=2)
        Path(f.name).replace(args.json)


if __name__ == "__main__":
    main()
