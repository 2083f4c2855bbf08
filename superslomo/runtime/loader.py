"""Opening a model folder with the right backend. "auto": TensorRT engines if the folder holds
engines, else ONNX Runtime (apps/models.py chooses by measurement among what is installed)."""

from __future__ import annotations

import os
from pathlib import Path

from superslomo.contracts.manifest import read_manifest
from superslomo.errors import SloMoError
from superslomo.runtime.backend import Backend
from superslomo.runtime.options import (
    BackendOptions,
    OpenVinoOptions,
    TensorRTOptions,
    default_options,
    options_for,
)


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


def open_backend(folder: str | os.PathLike, backend: str | BackendOptions = "auto") -> Backend:
    """A backend for `folder`, not yet activated (nothing loads until `activate` or first use).

    `backend`: a name ("auto", "onnxruntime", "openvino", "tensorrt") for its default options, or
    an options object (`OpenVinoOptions(precision="bf16")`, `TensorRTOptions(cuda_graphs=True)`)."""
    folder = Path(folder)
    options = options_for(backend)
    manifest = read_manifest(folder)
    if options is None:
        options = default_options(manifest.kind)
    if isinstance(options, TensorRTOptions):
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

        return TensorRTBackend(folder, options, manifest=manifest)
    if isinstance(options, OpenVinoOptions):
        from superslomo.runtime.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(folder, options, manifest=manifest)
    from superslomo.runtime.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(folder, options, manifest=manifest)
