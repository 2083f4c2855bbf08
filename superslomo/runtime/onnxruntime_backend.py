"""The embedded default backend: ONNX Runtime (CPU everywhere; CUDA/TensorRT providers if present)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from superslomo.contracts.external_data import check_external_data
from superslomo.contracts.graph_io import PLUGIN_NAME, PLUGIN_NAMESPACE
from superslomo.contracts.manifest import WARP_CONVENTIONS, Manifest, read_manifest
from superslomo.errors import SloMoError

# onnxruntime-extensions registers Python ops in this domain only; plugin graphs are re-labelled
# in memory to reach our numpy BackWarp.
_PYOP_DOMAIN = "ai.onnx.contrib"
_registered = False


def _register_backwarp_pyop() -> str:
    global _registered
    try:
        from onnxruntime_extensions import PyCustomOpDef, get_library_path, onnx_op
    except ImportError:
        raise SloMoError(
            "this folder was exported with --warp plugin; running it on ONNX Runtime needs "
            "onnxruntime-extensions (pip install onnxruntime-extensions), or export with --warp gridsample"
        ) from None
    if not _registered:
        from superslomo.runtime.warp_numpy import backwarp_numpy

        # The node's `convention` attribute says which warp the graph computes (see _plugin_model_bytes
        # for graphs from before it existed).
        @onnx_op(
            op_type=PLUGIN_NAME,
            inputs=[PyCustomOpDef.dt_float, PyCustomOpDef.dt_float],
            outputs=[PyCustomOpDef.dt_float],
            attrs={"convention": PyCustomOpDef.dt_string},
        )
        def _backwarp(image: np.ndarray, flow: np.ndarray, convention: str) -> np.ndarray:
            return backwarp_numpy(image, flow, convention)

        _registered = True
    return get_library_path()


def _plugin_model_bytes(path: Path) -> bytes:
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        if node.domain == PLUGIN_NAMESPACE:
            node.domain = _PYOP_DOMAIN
            # onnxruntime-extensions refuses a node without a declared attribute; graphs exported
            # before `convention` existed compute the reference warp, so say so for them.
            if node.op_type == PLUGIN_NAME and all(a.name != "convention" for a in node.attribute):
                node.attribute.append(onnx.helper.make_attribute("convention", "reference"))
            # Checked here: an exception raised inside the Python op would abort the process.
            for attribute in node.attribute:
                if attribute.name != "convention":
                    continue
                value = onnx.helper.get_attribute_value(attribute).decode(errors="replace")
                if value not in WARP_CONVENTIONS:
                    raise SloMoError(
                        f"{path}: BackWarp convention {value!r} is unknown to this version of "
                        f"superslomo-trt (it knows {', '.join(WARP_CONVENTIONS)})"
                    )
    for opset in model.opset_import:
        if opset.domain == PLUGIN_NAMESPACE:
            opset.domain = _PYOP_DOMAIN
    return model.SerializeToString()


def default_providers(device: int | None) -> list:
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers: list = []
    if device is not None and "CUDAExecutionProvider" in available:
        providers.append(("CUDAExecutionProvider", {"device_id": device}))
    providers.append("CPUExecutionProvider")
    return providers


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(
        self,
        folder: str | os.PathLike,
        manifest: Manifest | None = None,
        providers: Sequence | None = None,
        threads: int | None = None,
        device: int | None = None,
    ) -> None:
        import onnxruntime as ort

        self.folder = Path(folder)
        self.manifest = manifest or read_manifest(self.folder)
        if self.manifest.kind != "onnx":
            raise SloMoError(
                f"{self.folder} holds {self.manifest.kind} engines, not ONNX graphs; use --backend tensorrt"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.enable_cpu_mem_arena = True
        options.enable_mem_pattern = True
        options.log_severity_level = 3
        plugin = self.manifest.warp == "plugin"
        if plugin:
            options.register_custom_ops_library(_register_backwarp_pyop())
        self.providers = list(providers) if providers is not None else default_providers(device)
        self.sessions = {}
        for graph in ("flow", "interp"):
            path = self.manifest.graph_path(self.folder, graph)
            check_external_data(path, self.folder)  # a manifest given by the caller was not checked
            source = _plugin_model_bytes(path) if plugin else str(path)
            try:
                self.sessions[graph] = ort.InferenceSession(
                    source, sess_options=options, providers=self.providers
                )
            except Exception as error:  # onnxruntime raises its own exception types
                raise SloMoError(f"ONNX Runtime cannot load {path}: {str(error).splitlines()[0]}") from None

    def infer(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self.sessions[graph]
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, dict(inputs)), strict=False))

    def close(self) -> None:
        self.sessions.clear()
