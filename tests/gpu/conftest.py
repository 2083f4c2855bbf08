"""The GPU suite: runs where a CUDA GPU and TensorRT are present, skips with the reason elsewhere."""

from __future__ import annotations

import importlib.util

import pytest


def _gpu_reason() -> str | None:
    for module, extra in (
        ("tensorrt", "tensorrt"),
        ("cuda.bindings", "tensorrt (cuda-python)"),
        ("torch", "torch"),
    ):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return f"{module} not installed (pip install 'superslomo-trt[{extra}]')"
    from cuda.bindings import runtime as cudart

    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess or count < 1:
        return f"no CUDA GPU ({err})"
    return None


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "tests/gpu/" in str(item.fspath).replace("\\", "/")]
    if not gpu_items:
        return
    reason = _gpu_reason()
    for item in gpu_items:
        item.add_marker(pytest.mark.gpu)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))
