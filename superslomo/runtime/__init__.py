"""Torch-free inference: numpy plus onnxruntime or OpenVINO, or TensorRT plus cuda-python.

from superslomo.runtime import Interpolator
with Interpolator.from_dir("model_dir") as interp:
    middle = interp.interpolate(frame0, frame1, [0.5])[0]
"""

from superslomo.contracts.manifest import Manifest, ManifestError, read_manifest
from superslomo.runtime.backend import Backend
from superslomo.runtime.interpolator import Interpolator, NonFiniteOutput, factor_times, schedule_times
from superslomo.runtime.loader import open_backend

__all__ = [
    "Backend",
    "Interpolator",
    "Manifest",
    "ManifestError",
    "NonFiniteOutput",
    "factor_times",
    "open_backend",
    "read_manifest",
    "schedule_times",
]
