"""PyTorch as a Backend: the reference the other backends are compared with, and the
`--backend torch` of `slomo interpolate` (outside the torch-free runtime on purpose)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch

from superslomo.contracts.manifest import FULL_SCALES, Manifest, size_multiple
from superslomo.model.scaled import flow_at, synthesize_at
from superslomo.model.slomo import SuperSloMo
from superslomo.runtime.backend import Backend, GraphRunner, check_threads


def torch_manifest(model: SuperSloMo, scales: Mapping[str, float] | None = None) -> Manifest:
    """What the model would say of itself as an exported fp32 folder (no files: it runs in memory)."""
    return Manifest(
        kind="onnx",
        precision="fp32",
        warp="gridsample",
        io="float32",
        opset=0,
        graphs={},
        source={"width": model.config.width},
        size_multiple=size_multiple(scales),
        warp_convention=model.config.warp,
        scales=dict(scales or FULL_SCALES),
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
        scale = self.manifest.scales[self.graph]
        if self.graph == "flow":
            flow01, flow10 = flow_at(self.model, t["frame0"], t["frame1"], scale)
            return {"flow01": flow01.numpy(), "flow10": flow10.numpy()}
        frame = synthesize_at(self.model, t["frame0"], t["frame1"], t["flow01"], t["flow10"], t["t"], scale)
        return {"frame_t": frame.numpy()}


class TorchBackend(Backend):
    name = "torch"

    def __init__(
        self, model: SuperSloMo, threads: int | None = None, scales: Mapping[str, float] | None = None
    ) -> None:
        check_threads(threads)
        super().__init__(None, torch_manifest(model, scales))
        self.model = model.eval()
        if threads:
            torch.set_num_threads(threads)

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, scales: Mapping[str, float] | None = None
    ) -> TorchBackend:
        from superslomo.model.checkpoint import load_checkpoint

        return cls(load_checkpoint(path), scales=scales)

    def make_runner(self, graph: str) -> GraphRunner:
        return _ModuleRunner(self.model, graph, self.manifest)

    def describe(self) -> str:
        return "CPU, eager"
