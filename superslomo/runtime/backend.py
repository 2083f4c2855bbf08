"""The one protocol every inference backend implements (onnxruntime, TensorRT)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from superslomo.runtime.manifest import Manifest

# Graph contracts (DESIGN.md decision 1); names are fixed across export, engines and runtime.
FLOW_INPUTS = ("frame0", "frame1")
FLOW_OUTPUTS = ("flow01", "flow10")
INTERP_INPUTS = ("frame0", "frame1", "flow01", "flow10", "t")
INTERP_OUTPUTS = ("frame_t",)


@runtime_checkable
class Backend(Protocol):
    """Runs the two graphs of one model folder.

    `infer("flow", {"frame0", "frame1"})` -> {"flow01", "flow10"} and
    `infer("interp", {"frame0", "frame1", "flow01", "flow10", "t"})` -> {"frame_t"}.
    Frames are float32 NCHW in [0,1], or uint8 NHWC when `manifest.io == "uint8"`; flows are
    float32 NCHW pixels; t is float32 [N]. H and W are multiples of 32 (the Interpolator pads).
    """

    name: str
    manifest: Manifest

    def infer(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...
