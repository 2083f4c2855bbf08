"""`slomo bench`'s options: which backends (runtime x precision) and sizes, how many iterations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from superslomo.contracts.graph_io import SIZE_MULTIPLE
from superslomo.errors import SloMoError

# every ratio is taken against. OpenVINO's bf16 is a compute precision of the fp32 graphs, not an
# export; its INT8 runs the same Q/DQ folder as onnxruntime-int8 (on OpenVINO as fast and as
# accurate as the TensorRT-style folder without conv-output Q/DQ, so one calibration serves both).
BACKENDS: dict[str, tuple[str, str]] = {
    "torch": ("torch", "fp32"),
    "onnxruntime": ("onnxruntime", "fp32"),
    "onnxruntime-fp16": ("onnxruntime", "fp16"),
    "onnxruntime-int8": ("onnxruntime", "int8"),
    "onnxruntime-cuda": ("onnxruntime-cuda", "fp32"),
    "openvino": ("openvino", "fp32"),
    "openvino-bf16": ("openvino", "bf16"),
    "openvino-int8": ("openvino", "int8"),
    "tensorrt-fp32": ("tensorrt", "fp32"),
    "tensorrt-fp16": ("tensorrt", "fp16"),
    "tensorrt-int8": ("tensorrt", "int8"),
}
BASELINE = "torch"
# Whose frames the PSNR column compares against: the fp32 graphs on the embedded default runtime.
PSNR_REFERENCE = "onnxruntime"
DEFAULT_BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8", "tensorrt-fp16")
DEFAULT_SIZES = ((448, 256), (1280, 720))
TIMES = (1, 3, 7)


@dataclass
class BenchOptions:
    backends: tuple[str, ...] = DEFAULT_BACKENDS
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
    times: int = 1  # interpolated frames per pair asked of Interpolator.synthesize (1/3/7: a 2x/4x/8x job)
    warmup: int = 1
    iters: int = 5
    threads: int | None = None  # CPU threads for every backend alike; default: all cores
    model: Path | None = None  # checkpoint; default: the shipped one, else random weights
    model_width: int | None = None  # random weights at this width instead of the shipped checkpoint
    calib_data: tuple[Path, ...] = ()  # footage for the INT8 calibration set
    calib_pairs: int = 8
    workdir: Path = Path("out/bench")
    peak_gflops: float | None = None  # override the measured CPU peak
    max_batch: int = 4

    def validate(self) -> None:
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise SloMoError(f"unknown backend {unknown[0]!r}; choose from {', '.join(BACKENDS)}")
        if not self.backends:
            raise SloMoError("--backends is empty")
        if len(set(self.backends)) != len(self.backends):
            raise SloMoError("--backends names a backend twice")
        if not self.sizes:
            raise SloMoError("--sizes is empty")
        for w, h in self.sizes:
            if w < SIZE_MULTIPLE or h < SIZE_MULTIPLE:
                raise SloMoError(f"sizes must be at least {SIZE_MULTIPLE}x{SIZE_MULTIPLE}, got {w}x{h}")
        if self.times not in TIMES:
            raise SloMoError(
                f"--times must be one of {', '.join(map(str, TIMES))} (2x, 4x, 8x), got {self.times}"
            )
        if self.warmup < 0 or self.iters < 1:
            raise SloMoError(f"--warmup must be >= 0 and --iters >= 1, got {self.warmup} and {self.iters}")
        if self.threads is not None and self.threads < 1:
            raise SloMoError(f"--threads must be >= 1, got {self.threads}")
        if self.model is not None and not self.model.is_file():
            raise SloMoError(f"checkpoint not found: {self.model}")
        if self.model is not None and self.model_width is not None:
            raise SloMoError("give --model or --width, not both (--width times random weights)")
        if self.model_width is not None and not 1 <= self.model_width <= 256:
            raise SloMoError(f"--width must be in 1..256, got {self.model_width}")
        if self.calib_pairs < 2:
            raise SloMoError(f"--calib-pairs must be at least 2, got {self.calib_pairs}")
        if self.peak_gflops is not None and self.peak_gflops <= 0:
            raise SloMoError("--peak-gflops must be positive")
        missing = [p for p in self.calib_data if not p.exists()]
        if missing:
            raise SloMoError(f"calibration footage not found: {missing[0]}")


def parse_size_list(text: str) -> tuple[tuple[int, int], ...]:
    sizes = []
    for item in text.split(","):
        item = item.strip().lower()
        try:
            w, h = (int(v) for v in item.split("x"))
        except ValueError:
            raise SloMoError(f"sizes are WIDTHxHEIGHT[,...], e.g. 448x256,1280x720; got {item!r}") from None
        sizes.append((w, h))
    return tuple(sizes)


def parse_backend_list(text: str) -> tuple[str, ...]:
    """The named backends, with PyTorch eager fp32 first: every ratio is to it."""
    named = tuple(b.strip() for b in text.split(",") if b.strip())
    return named if not named or "torch" in named else ("torch", *named)
