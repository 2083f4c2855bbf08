"""The compute side of the roofline: a machine's peak rate, so every latency can be printed next
to the floor `FLOPs / peak` that no implementation can beat (torch-free)."""

from __future__ import annotations

import time

import numpy as np

# Datasheet dense peaks in TFLOP/s (TOPS for int8), no sparsity: (fp32 non-tensor, fp16 tensor
# with fp32 accumulate, int8 tensor). Matched by substring of the CUDA device name, first hit
# wins, so the more specific names come first.
GPU_PEAKS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("H200", (66.9, 989.4, 1978.9)),
    ("H100 PCIe", (51.2, 756.5, 1513.0)),
    ("H100", (66.9, 989.4, 1978.9)),  # SXM
    ("A100", (19.5, 312.0, 624.0)),
    ("L40S", (91.6, 362.1, 733.0)),
    ("L4", (30.3, 121.0, 242.0)),
    ("RTX 4090", (82.6, 165.2, 660.6)),
    ("A10", (31.2, 125.0, 250.0)),
    ("T4", (8.1, 65.0, 130.0)),
)
PRECISIONS = ("fp32", "fp16", "int8")


def gpu_peak_tflops(device_name: str, precision: str) -> float | None:
    """Datasheet peak for a GPU name and precision, or None when the GPU is not in the table."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    for key, peaks in GPU_PEAKS:
        if key.lower() in device_name.lower():
            return peaks[PRECISIONS.index(precision)]
    return None


def cpu_peak_gflops(size: int = 1536, repeats: int = 3, threads_note: bool = False) -> float:
    """Achievable float32 rate of this CPU: the best of a few large numpy (BLAS) matmuls.

    A datasheet number means little for a shared or virtual CPU; a tuned SGEMM is the practical
    ceiling a convolution (itself a GEMM after im2col or a Winograd/direct kernel) can approach."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b  # first call loads the BLAS kernels and faults the pages in
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - began)
    return 2 * size**3 / best / 1e9
