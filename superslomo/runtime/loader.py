"""Opening a model folder with the right backend ("auto": TensorRT engines if present and usable)."""

from __future__ import annotations

import os
from pathlib import Path

from superslomo.errors import SloMoError
from superslomo.runtime.backend import Backend
from superslomo.runtime.manifest import read_manifest

BACKENDS = ("auto", "onnxruntime", "tensorrt")


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


def open_backend(folder: str | os.PathLike, backend: str = "auto", device: int = 0, **options) -> Backend:
    if backend not in BACKENDS:
        raise SloMoError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    folder = Path(folder)
    manifest = read_manifest(folder)
    if backend == "auto":
        backend = "tensorrt" if manifest.kind == "tensorrt" else "onnxruntime"
    if backend == "tensorrt":
        if manifest.kind != "tensorrt":
            raise SloMoError(f"{folder} holds ONNX graphs; build engines first: slomo build-engine {folder} -o ENGINES")
        usable, why = tensorrt_usable()
        if not usable:
            raise SloMoError(f"cannot run TensorRT engines here: {why} (use ONNX graphs with --backend onnxruntime)")
        from superslomo.runtime.tensorrt_backend import TensorRTBackend  # type: ignore[import-not-found]

        return TensorRTBackend(folder, manifest=manifest, device=device, **options)
    from superslomo.runtime.onnxruntime_backend import OnnxRuntimeBackend

    # The CPU unless asked (`gpu=True`): CUDA's TF32 convolutions would fail the fp32 parity gate
    # that CI runs through this same path.
    return OnnxRuntimeBackend(folder, manifest=manifest, device=device if options.pop("gpu", False) else None, **options)
