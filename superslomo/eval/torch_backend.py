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
from superslomo.runtime.backend import Backend, GraphRunner, check_threads


def torch_manifest(model: SuperSloMo) -> Manifest:
    """What the model would say of itself as an exported fp32 folder (no files: it runs in memory)."""
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


class _ModuleRunner(GraphRunner):
    def __init__(self, model: SuperSloMo, graph: str, manifest: Manifest) -> None:
        super().__init__(graph, manifest)
        self.model = model

    def activate_impl(self) -> None:
        pass

    @torch.inference_mode()
    def infer_impl(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}
        if self.graph == "flow":
            flow01, flow10 = self.model.flow(t["frame0"], t["frame1"])
            return {"flow01": flow01.numpy(), "flow10": flow10.numpy()}
        frame = self.model.synthesize(t["frame0"], t["frame1"], t["flow01"], t["flow10"], t["t"])
        return {"frame_t": frame.numpy()}


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: SuperSloMo, threads: int | None = None) -> None:
        check_threads(threads)
        super().__init__(None, torch_manifest(model))
        self.model = model.eval()
        if threads:
            torch.set_num_threads(threads)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike) -> TorchBackend:
        from superslomo.model.checkpoint import load_checkpoint

        return cls(load_checkpoint(path))

    def make_runner(self, graph: str) -> GraphRunner:
        return _ModuleRunner(self.model, graph, self.manifest)

    def describe(self) -> str:
        return "CPU, eager"
