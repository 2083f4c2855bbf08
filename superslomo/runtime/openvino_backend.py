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
from superslomo.contracts.manifest import Manifest, read_manifest
from superslomo.errors import SloMoError

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
        self.dtypes = [np.dtype(port.get_element_type().to_dtype()) for port in model.inputs]
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
        missing = [name for name in self.inputs if name not in inputs]
        if missing:
            raise SloMoError(f"{self.where.name} needs input {missing[0]!r}")
        arrays = {name: np.ascontiguousarray(inputs[name]) for name in self.inputs}
        for name, dtype in zip(self.inputs, self.dtypes, strict=True):
            # OpenVINO would convert silently, and uint8 frames fed to a float graph are 255x too bright.
            if arrays[name].dtype != dtype:
                raise SloMoError(
                    f"{self.where.name} input {name!r} must be {dtype}, got {arrays[name].dtype}"
                )
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


class OpenVinoBackend:
    name = "openvino"

    def __init__(
        self,
        folder: str | os.PathLike,
        manifest: Manifest | None = None,
        precision: str = "f32",
        threads: int | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.manifest = manifest or read_manifest(self.folder)
        if precision not in PRECISIONS:
            raise SloMoError(f"unknown openvino precision {precision!r}; choose f32 or bf16")
        if threads is not None and threads < 1:
            raise SloMoError(f"threads must be >= 1, got {threads}")
        if self.manifest.kind != "onnx":
            raise SloMoError(
                f"{self.folder} holds {self.manifest.kind} engines, not ONNX graphs; use --backend tensorrt"
            )
        if self.manifest.warp == "plugin":
            raise SloMoError(
                f"{self.folder} was exported with --warp plugin, which OpenVINO cannot run "
                "(no BackWarp op); export with --warp gridsample"
            )
        ov = import_openvino()
        self.precision = PRECISIONS[precision]
        self.threads = threads or os.cpu_count() or 1
        core = ov.Core()
        config = compile_config(precision, self.threads)
        self.graphs: dict[str, _Graph] = {}
        for graph in ("flow", "interp"):
            path = self.manifest.graph_path(self.folder, graph)
            check_external_data(path, self.folder)  # a manifest given by the caller was not checked
            try:
                model = core.read_model(str(path))
            except RuntimeError as error:
                raise SloMoError(f"OpenVINO cannot read {path}: {_reason(error)}") from None
            self.graphs[graph] = _Graph(core, model, config, path)

    def infer(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if graph not in self.graphs:
            raise SloMoError(f"unknown graph {graph!r}; the graphs are flow and interp")
        return self.graphs[graph].infer(inputs)

    def close(self) -> None:
        self.graphs.clear()
