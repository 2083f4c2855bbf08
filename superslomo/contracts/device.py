"""Which CUDA device this is (name, compute capability), as engine manifests record and check it.

cuda-python (`cuda.bindings`) is imported only when called, so importing this module is free.
"""

from __future__ import annotations

from typing import Any

from superslomo.contracts.tensorrt_version import INSTALL_HINT, TensorRTUnavailable
from superslomo.errors import SloMoError


class CudaError(SloMoError):
    """A CUDA runtime call failed; the message names the call and CUDA's error name."""


def import_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError as error:
        raise TensorRTUnavailable(f"cuda-python is not importable ({error}); {INSTALL_HINT}") from None
    return cudart


def cuda_call(result: Any, what: str = "CUDA call") -> Any:
    """Check a cuda.bindings result tuple `(err, *values)`; return the value(s) or raise CudaError."""
    cudart = import_cudart()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        _, name = cudart.cudaGetErrorName(err)
        raise CudaError(f"{what} failed: {name.decode() if isinstance(name, bytes) else name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def device_identity(device: int = 0) -> dict[str, Any]:
    """GPU name and compute capability ("8.7"), as recorded in and checked against manifests."""
    cudart = import_cudart()
    props = cuda_call(cudart.cudaGetDeviceProperties(device), f"cudaGetDeviceProperties({device})")
    name = (
        props.name.decode(errors="replace").rstrip("\x00")
        if isinstance(props.name, bytes)
        else str(props.name)
    )
    return {"name": name, "compute_capability": f"{props.major}.{props.minor}", "device": device}
