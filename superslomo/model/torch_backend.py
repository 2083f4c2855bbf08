"""PyTorch as a Backend: the reference the other backends are compared with, and the
`--backend torch` of `slomo interpolate` (outside the torch-free runtime on purpose)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch

from superslomo.contracts.graph_io import SIZE_MULTIPLE
from superslomo.contracts.manifest import Manifest
from superslomo.model.slomo import SuperSloMo


def torch_manifest(model: SuperSloMo) -> Manifest:
    return Manifest(
        kind="onnx",
        precision="fp32",
        warp="gridsample",
        io="float32",
        opset=0,
        graphs={},
        source={"width": model.config.width},
        size_multiple=SIZE_MULTIPLE,
        warp_convention=model.config.warp,
    )


class TorchBackend:
    name = "torch"

    def __init__(self, model: SuperSloMo, threads: int | None = None) -> None:
        self.model = model.eval()
        self.manifest = torch_manifest(model)
        if threads:
            torch.set_num_threads(threads)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike) -> TorchBackend:
        from superslomo.model.checkpoint import load_checkpoint

        return cls(load_checkpoint(path))

    @torch.inference_mode()
    def infer(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}
        if graph == "flow":
            flow01, flow10 = self.model.flow(t["frame0"], t["frame1"])
            return {"flow01": flow01.numpy(), "flow10": flow10.numpy()}
        if graph == "interp":
            frame = self.model.synthesize(t["frame0"], t["frame1"], t["flow01"], t["flow10"], t["t"])
            return {"frame_t": frame.numpy()}
        raise ValueError(f"unknown graph {graph!r}")

    def close(self) -> None:
        pass
