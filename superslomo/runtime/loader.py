"""Opening a model folder with the right backend ("auto": TensorRT engines if present and usable,
else onnxruntime; openvino only when asked for, until auto measures)."""

from __future__ import annotations

import os
from pathlib import Path

from superslomo.contracts.manifest import read_manifest
from superslomo.errors import SloMoError
from superslomo.runtime.backend import Backend

BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt")


def tensorrt_usable() -> tuple[bool, str]:
    """Whether the TensorRT backend can run here, and if not, why (said to the user by `auto`)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, "TensorRT is not installed"
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return False, "cuda-python is not installed"
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count < 1:
        return False, "no CUDA device"
    return True, ""


def openvino_usable() -> tuple[bool, str]:
    """Whether the openvino backend can run here, and if not, why."""
    try:
        import openvino
    except ImportError:
        return False, "OpenVINO is not installed (pip install 'superslomo-trt[openvino]')"
    try:
        devices = openvino.Core().available_devices
    except RuntimeError as error:
        return False, f"OpenVINO cannot start: {str(error).strip().splitlines()[-1]}"
    if "CPU" not in devices:  # this backend compiles for the CPU plugin only
        return False, "OpenVINO has no CPU device here"
    return True, ""


def open_backend(folder: str | os.PathLike, backend: str = "auto", device: int = 0, **options) -> Backend:
    if backend not in BACKENDS:
        raise SloMoError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    folder = Path(folder)
    manifest = read_manifest(folder)
    if backend == "auto":
        backend = "tensorrt" if manifest.kind == "tensorrt" else "onnxruntime"
    if backend == "tensorrt":
        if manifest.kind != "tensorrt":
            raise SloMoError(
                f"{folder} holds ONNX graphs; build engines first: slomo build-engine {folder} -o ENGINES"
            )
        usable, why = tensorrt_usable()
        if not usable:
            raise SloMoError(
                f"cannot run TensorRT engines here: {why} (use ONNX graphs with --backend onnxruntime)"
            )
        from superslomo.runtime.tensorrt_backend import TensorRTBackend  # type: ignore[import-not-found]

        return TensorRTBackend(folder, manifest=manifest, device=device, **options)
    if backend == "openvino":
        if manifest.kind != "onnx":
            raise SloMoError(
                f"{folder} holds TensorRT engines; the openvino backend runs the ONNX folder "
                "they were built from"
            )
        from superslomo.runtime.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(folder, manifest=manifest, **options)
    from superslomo.runtime.onnxruntime_backend import OnnxRuntimeBackend

    # The CPU unless asked (`gpu=True`): CUDA's TF32 convolutions would fail the fp32 parity gate
    # that CI runs through this same path.
    gpu = options.pop("gpu", False)
    return OnnxRuntimeBackend(folder, manifest=manifest, device=device if gpu else None, **options)
