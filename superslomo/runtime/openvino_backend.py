"""OpenVINO on the CPU: the exported ONNX graphs read directly, compiled once per input shape.

Precision is a runtime choice here, not only a property of the folder: OpenVINO's CPU plugin
computes in bf16 by default on CPUs that have it, which is faster and fails the fp32 parity gate,
so "f32" is asked for explicitly and "bf16" is a precision of its own with its own accuracy gate.
An INT8 folder (the Q/DQ graphs of `slomo quantize`) runs its quantized convolutions in int8 and
the rest at the precision asked for; an fp16 folder runs with its fp16-rounded weights at that
precision too (the CPU has no fp16 arithmetic to use), as it does on ONNX Runtime's CPU provider.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from superslomo.contracts.external_data import check_external_data
from superslomo.contracts.manifest import Manifest
from superslomo.errors import SloMoError
from superslomo.runtime.backend import Backend, GraphRunner, check_threads
from superslomo.runtime.options import OpenVinoOptions

EXTRA_HINT = "pip install 'superslomo-trt[openvino]'"
# OpenVINO's own spelling of the inference precisions; "fp32" is the rest of the project's.
PRECISIONS = {"f32": "f32", "fp32": "f32", "bf16": "bf16"}
# A video job uses one frame size and a few batch sizes (the last batch of times is smaller);
# anything beyond that is a caller changing sizes, where recompiling beats holding every plan.
MAX_CACHED_SHAPES = 8


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise SloMoError(f"the openvino backend needs OpenVINO: {EXTRA_HINT}") from None
    return openvino


def cpu_precisions() -> list[str]:
    """The inference precisions OpenVINO's CPU plugin can use here ("f32", and "bf16" only where the
    CPU has bf16 instructions: elsewhere a bf16 hint silently runs f32)."""
    capabilities = import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return ["f32"] + (["bf16"] if "BF16" in capabilities else [])


def compile_config(precision: str, threads: int) -> dict[str, str]:
    """CPU plugin settings, each measured interleaved against its alternative (width 32, 448x256).

    One stream at LATENCY with every core: calls here are synchronous, one at a time per graph, so
    a THROUGHPUT hint's second stream only leaves a call half the cores (about 9% slower, like one
    thread). No pinning: the Interpolator runs the flow graph of the next pair beside the
    interpolation graph of this one, and an app decodes and encodes on the same cores; threads
    pinned there wait on busy cores (unpinned 3-9% faster, streaming and single calls alike)."""
    return {
        "INFERENCE_PRECISION_HINT": PRECISIONS[precision],
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": str(threads),
        "ENABLE_CPU_PINNING": "NO",
    }


class _Graph:
    """One ONNX graph: the model as read, and compiled requests per exact input shape.

    Compiling per shape rather than once for dynamic shapes: as fast or faster in every paired
    measurement (the interpolation graph 2-8% faster static, the flow graph equal), and a compile
    costs well under a second at width 32, once per frame size and batch size of a job."""

    def __init__(self, core, model, config: dict[str, str], where: Path) -> None:
        self.core, self.model, self.config, self.where = core, model, config, where
        self.inputs = [port.get_any_name() for port in model.inputs]
        self.outputs = [port.get_any_name() for port in model.outputs]
        self.requests: OrderedDict[tuple, object] = OrderedDict()
        # The Interpolator runs flow and interp from two threads, never one graph from two; the
        # lock keeps a caller that does from sharing a request (and the cache) mid-call.
        self.lock = threading.Lock()

    def _request(self, key: tuple, shapes: dict[str, tuple[int, ...]]):
        request = self.requests.get(key)
        if request is not None:
            self.requests.move_to_end(key)
            return request
        model = self.model.clone()
        try:
            model.reshape(shapes)
            compiled = self.core.compile_model(model, "CPU", self.config)
        except RuntimeError as error:
            described = ", ".join(f"{name} {list(shape)}" for name, shape in shapes.items())
            raise SloMoError(
                f"OpenVINO cannot run {self.where.name} on {described}: {_reason(error)}"
            ) from None
        request = compiled.create_infer_request()
        self.requests[key] = request
        if len(self.requests) > MAX_CACHED_SHAPES:
            self.requests.popitem(last=False)
        return request

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Names and types were checked by the runner (OpenVINO would convert a uint8 frame fed to
        # a float graph silently, 255x too bright).
        arrays = {name: np.ascontiguousarray(inputs[name]) for name in self.inputs}
        shapes = {name: a.shape for name, a in arrays.items()}
        key = tuple(shapes[name] for name in self.inputs)
        with self.lock:
            request = self._request(key, shapes)
            try:
                # Copied out (share_outputs=False): the request's buffers are reused by the next call.
                result = request.infer(arrays, share_inputs=True)
            except RuntimeError as error:
                raise SloMoError(f"OpenVINO failed on {self.where.name}: {_reason(error)}") from None
        return {name: result[index] for index, name in enumerate(self.outputs)}


def _reason(error: Exception) -> str:
    # OpenVINO's messages are a trace of source locations and nodes; the reason is the last line.
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


class _CompiledRunner(GraphRunner):
    def __init__(self, backend: OpenVinoBackend, graph: str) -> None:
        super().__init__(graph, backend.manifest)
        self.backend = backend
        self.compiled: _Graph | None = None

    def activate_impl(self) -> None:
        backend = self.backend
        path = self.manifest.graph_path(backend.folder, self.graph)
        check_external_data(path, backend.folder)  # a manifest given by the caller was not checked
        try:
            model = backend.core().read_model(str(path))
        except RuntimeError as error:
            raise SloMoError(f"OpenVINO cannot read {path}: {_reason(error)}") from None
        self.compiled = _Graph(backend.core(), model, backend.config, path)

    def infer_impl(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.compiled is not None
        return self.compiled.infer(inputs)

    def deactivate_impl(self) -> None:
        self.compiled = None


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(
        self,
        folder: str | os.PathLike,
        options: OpenVinoOptions | None = None,
        manifest: Manifest | None = None,
    ) -> None:
        super().__init__(folder, manifest)
        self.options = options or OpenVinoOptions()
        if self.options.precision not in PRECISIONS:
            raise SloMoError(f"unknown openvino precision {self.options.precision!r}; choose f32 or bf16")
        check_threads(self.options.threads)
        if self.manifest.warp == "plugin":
            raise SloMoError(
                f"{self.folder} was exported with --warp plugin, which OpenVINO cannot run "
                "(no BackWarp op); export with --warp gridsample"
            )
        self.precision = PRECISIONS[self.options.precision]
        self.threads = self.options.threads or os.cpu_count() or 1
        self.config = compile_config(self.precision, self.threads)
        if self.options.cache_dir is not None:
            # The compile is most of a short job's start-up (about 0.5 s per graph and shape here);
            # OpenVINO keys the blob by the model, the shape and these settings.
            self.config["CACHE_DIR"] = str(self.options.cache_dir)
        self._core = None

    def activate(self) -> OpenVinoBackend:
        if self.precision == "bf16" and "bf16" not in cpu_precisions():
            # OpenVINO would quietly run f32 and report it as bf16 (speed and accuracy both wrong).
            raise SloMoError("this CPU has no bf16 instructions: OpenVINO would run f32; use precision f32")
        super().activate()
        return self

    def core(self):
        if self._core is None:
            self._core = import_openvino().Core()
        return self._core

    def make_runner(self, graph: str) -> GraphRunner:
        return _CompiledRunner(self, graph)

    def describe(self) -> str:
        return f"CPU, {self.precision}"
