"""The one protocol every inference backend implements (onnxruntime, OpenVINO, TensorRT)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from superslomo.contracts.manifest import Manifest


@runtime_checkable
class Backend(Protocol):
    """Runs the two graphs of one model folder (contracts/graph_io.py names their I/O).

    Frames are float32 NCHW in [0,1], or uint8 NHWC when `manifest.io == "uint8"`; flows are
    float32 NCHW pixels; t is float32 [N]. H and W are multiples of 32 (the Interpolator pads).
    """

    name: str
    manifest: Manifest

    def infer(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...
