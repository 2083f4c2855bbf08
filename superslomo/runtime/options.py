"""Typed options, one small dataclass per backend (as vs-mlrt chooses a backend with an object,
not a string plus loose keywords). Light to import: no runtime library is loaded here."""

from __future__ import annotations

from dataclasses import dataclass

from superslomo.errors import SloMoError


@dataclass(frozen=True)
class OnnxRuntimeOptions:
    """`device`: a CUDA device for onnxruntime-gpu's CUDA provider; None (the default) is the CPU,
    since CUDA's TF32 convolutions would fail the fp32 parity gate that CI runs through this path.
    `providers` overrides the provider list as ONNX Runtime takes it. `cache_dir`: where the CPU
    provider's optimized graphs are kept, so a later process loads one instead of optimizing the
    graph again (None: optimize every time)."""

    threads: int | None = None
    device: int | None = None
    providers: tuple | None = None
    cache_dir: str | None = None
    backend = "onnxruntime"


@dataclass(frozen=True)
class OpenVinoOptions:
    """`precision`: "f32" (the parity gate's) or "bf16" (faster where the CPU has it, gated on
    accuracy); the folder's own precision (fp16 weights, INT8 Q/DQ) applies on top. `cache_dir`:
    where OpenVINO keeps each compiled graph (per shape and settings), so a later process loads it
    instead of compiling (OpenVINO's model cache; None: compile every time)."""

    precision: str = "f32"
    threads: int | None = None
    cache_dir: str | None = None
    backend = "openvino"


@dataclass(frozen=True)
class TensorRTOptions:
    """`pair_slots`: prepared pairs that may be alive at once on the GPU (frames and flows stay
    there until synthesized; streaming needs 3: one prepared, one waiting, one synthesized);
    `prepare` waits up to `pair_wait_s` for a slot while all are held, then refuses;
    `cuda_graphs`: capture each engine once per shape and replay it."""

    device: int = 0
    cuda_graphs: bool = False
    pair_slots: int = 4
    pair_wait_s: float = 60.0
    backend = "tensorrt"


BackendOptions = OnnxRuntimeOptions | OpenVinoOptions | TensorRTOptions
OPTIONS = {cls.backend: cls for cls in (OnnxRuntimeOptions, OpenVinoOptions, TensorRTOptions)}
BACKENDS = ("auto", *OPTIONS)


def options_for(backend: str | BackendOptions) -> BackendOptions | None:
    """The options object for a backend name (defaults) or the object itself; None for "auto"."""
    if isinstance(backend, str):
        if backend == "auto":
            return None
        if backend not in OPTIONS:
            raise SloMoError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        return OPTIONS[backend]()
    if not isinstance(backend, tuple(OPTIONS.values())):
        raise SloMoError(f"backend options must be one of {', '.join(c.__name__ for c in OPTIONS.values())}")
    return backend


def default_options(kind: str) -> BackendOptions:
    """What "auto" opens a folder of this manifest kind with when nothing is measured: TensorRT
    for engines, else ONNX Runtime."""
    return TensorRTOptions() if kind == "tensorrt" else OnnxRuntimeOptions()
