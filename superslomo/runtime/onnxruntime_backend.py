"""The embedded default backend: ONNX Runtime (CPU everywhere; CUDA/TensorRT providers if present)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from superslomo.contracts.external_data import check_external_data
from superslomo.contracts.graph_io import PLUGIN_NAME, PLUGIN_NAMESPACE
from superslomo.contracts.manifest import WARP_CONVENTIONS, Manifest
from superslomo.errors import SloMoError
from superslomo.runtime.backend import Backend, GraphRunner, check_threads
from superslomo.runtime.options import OnnxRuntimeOptions

# onnxruntime-extensions registers Python ops in this domain only; plugin graphs are re-labelled
# in memory to reach our numpy BackWarp.
_PYOP_DOMAIN = "ai.onnx.contrib"
_registered = False


def _cpu_tag() -> str:
    """A short name for this CPU's model and instruction sets (the optimized graph depends on them)."""
    import hashlib
    import platform

    facts = platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        facts += "".join(line for line in lines if line.startswith(("model name", "flags")))[:4096]
    except OSError:
        pass
    return hashlib.sha256(facts.encode()).hexdigest()[:12]


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


class _SessionRunner(GraphRunner):
    def __init__(self, backend: OnnxRuntimeBackend, graph: str) -> None:
        super().__init__(graph, backend.manifest)
        self.backend = backend
        self.session = None

    def activate_impl(self) -> None:
        import onnxruntime as ort

        backend = self.backend
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = backend.options.threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.enable_cpu_mem_arena = True
        options.enable_mem_pattern = True
        options.log_severity_level = 3
        plugin = self.manifest.warp == "plugin"
        if plugin:
            options.register_custom_ops_library(_register_backwarp_pyop())
        path = self.manifest.graph_path(backend.folder, self.graph)
        check_external_data(path, backend.folder)  # a manifest given by the caller was not checked
        source = _plugin_model_bytes(path) if plugin else str(path)
        cached = None if plugin else self._optimized_path(ort.__version__)
        if cached is not None and cached.is_file():
            # Already optimized by an earlier process: loading it costs a quarter of optimizing.
            source = str(cached)
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        elif cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            staging = cached.with_name(f".{cached.name}.{os.getpid()}")
            options.optimized_model_filepath = str(staging)
        try:
            self.session = ort.InferenceSession(source, sess_options=options, providers=backend.providers)
        except Exception as error:  # onnxruntime raises its own exception types
            if options.optimized_model_filepath:
                Path(options.optimized_model_filepath).unlink(missing_ok=True)
            raise SloMoError(f"ONNX Runtime cannot load {path}: {str(error).splitlines()[0]}") from None
        if cached is not None and not cached.is_file() and options.optimized_model_filepath:
            with contextlib.suppress(OSError):
                os.replace(options.optimized_model_filepath, cached)  # atomic: readers see all or none
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _optimized_path(self, version: str) -> Path | None:
        """Where this graph's optimized form is cached: keyed by the graph's sha256, the ONNX Runtime
        version and the CPU (ORT_ENABLE_ALL lays tensors out for this CPU's vector width)."""
        backend = self.backend
        if backend.options.cache_dir is None or backend.providers != ["CPUExecutionProvider"]:
            return None
        digest = self.manifest.graphs[self.graph].sha256
        return Path(backend.options.cache_dir) / f"{digest[:24]}-ort{version}-{_cpu_tag()}.onnx"

    def infer_impl(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.session is not None
        return dict(zip(self.output_names, self.session.run(self.output_names, dict(inputs)), strict=True))

    def deactivate_impl(self) -> None:
        self.session = None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(
        self,
        folder: str | os.PathLike,
        options: OnnxRuntimeOptions | None = None,
        manifest: Manifest | None = None,
    ) -> None:
        super().__init__(folder, manifest)
        self.options = options or OnnxRuntimeOptions()
        check_threads(self.options.threads)
        self.providers = (
            list(self.options.providers)
            if self.options.providers is not None
            else default_providers(self.options.device)
        )

    def make_runner(self, graph: str) -> GraphRunner:
        return _SessionRunner(self, graph)

    def describe(self) -> str:
        first = self.providers[0]
        return (first[0] if isinstance(first, tuple) else first).replace("ExecutionProvider", "")
