"""fp16 storage, emulated on the CPU: a parity-only fp32 copy of an fp16 graph that rounds to fp16
wherever the fp16 graph stores fp16.

Why this exists: ONNX Runtime's CPU provider has no fp16 kernels for most of our ops and runs an
fp16 graph by casting to fp32 around them, then removes the cast pairs between neighbouring nodes.
Activations are never rounded, and the shipped weights are already fp16-exact, so an fp16 folder
"passed" parity at ~141 dB like fp32: the gate measured nothing about fp16.

What the copy does, from the fp16 graph itself (not from an fp32 source, which the folder does not
hold, and so that the keep-fp32 set cannot drift from the export's): every fp16 weight is upcast to
fp32 (exact: these are the very values an fp16 engine stores), and after every node that produces
an fp16 tensor, a Cast(to=FLOAT16) -> Cast(to=FLOAT) pair rounds the fp32 result to fp16. Whatever
the export deliberately keeps fp32 (I/O, normalisation, flow algebra, the warp's coordinate maths
and sampling, the fusion of the two warps) is fp32 in the fp16 graph and stays untouched here.
Pure data movement (Concat, Reshape, Slice...) is not rounded again: its inputs are fp16-exact
already and rounding is idempotent.

What it measures: fp16 *storage* rounding of weights and activations. What it cannot: fp16
arithmetic and accumulation inside a kernel (each op computes in fp32 here), and TensorRT's kernel
and tactic choices (fusions, which round once where this rounds after every op; reduced-precision
accumulation). Only a parity run on a TensorRT fp16 engine on the GPU measures those.

Why in eval/ and not export/: the copy is a measuring instrument, never a deployable artefact; it
reads what export wrote and needs nothing from export/ (the fp16 graph carries its own keep-fp32
set in its tensor types), so eval -> runtime is the only dependency and nothing can build an
engine from it by accident.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from superslomo.contracts.files import file_sha256
from superslomo.contracts.manifest import Manifest
from superslomo.errors import SloMoError
from superslomo.runtime.backend import Backend

MEASURED = "fp16 storage rounding of weights and activations, emulated on the CPU"
NOT_MEASURED = (
    "fp16 arithmetic and accumulation inside kernels, and TensorRT's kernel and tactic choices "
    "(fusions, reduced-precision accumulation): only a TensorRT fp16 engine on the GPU measures those"
)
EMULATED_NAME = "onnxruntime-fp16-emulated"
GRAPHS = ("flow", "interp")

# Ops that only move or select values: an fp16-exact input gives an fp16-exact output.
_DATA_MOVEMENT = frozenset(
    {
        "Concat",
        "Reshape",
        "Transpose",
        "Slice",
        "Squeeze",
        "Unsqueeze",
        "Identity",
        "Gather",
        "GatherElements",
        "Split",
        "Flatten",
        "Expand",
        "Tile",
        "Pad",
        "DepthToSpace",
        "SpaceToDepth",
        "MaxPool",
    }
)
_SUFFIX = "__fp16_emulation"


@dataclass
class EmulationStats:
    weights: int = 0  # fp16 initializers/constants upcast to fp32
    weight_values: int = 0
    rounded: int = 0  # node outputs rounded to fp16
    moved: int = 0  # fp16 outputs of data-movement nodes (exact without rounding)
    kept_fp32: list[str] = field(default_factory=list)  # op types that compute in fp32 in the fp16 graph

    def as_dict(self) -> dict:
        return {
            "weights": self.weights,
            "weight_values": self.weight_values,
            "rounded_activations": self.rounded,
            "data_movement_outputs": self.moved,
            "kept_fp32_ops": sorted(set(self.kept_fp32)),
        }


def _tensor_types(model) -> dict[str, int]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except onnx.shape_inference.InferenceError as error:
        raise SloMoError(
            f"cannot infer the tensor types of the fp16 graph: {str(error).splitlines()[0]}"
        ) from None
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input, *graph.output)}
    types.update({init.name: init.data_type for init in graph.initializer})
    return types


def _upcast_tensor(tensor, stats: EmulationStats):
    import numpy as np
    from onnx import numpy_helper

    values = numpy_helper.to_array(tensor).astype(np.float32)
    stats.weights += 1
    stats.weight_values += int(values.size)
    return numpy_helper.from_array(values, tensor.name)


def emulate_fp16_storage(model):
    """An fp32 copy of the fp16 `model` (onnx.ModelProto) that rounds to fp16 where it stores fp16.
    Returns (model, EmulationStats)."""
    import onnx
    from onnx import TensorProto, helper

    FP16, FP32 = TensorProto.FLOAT16, TensorProto.FLOAT
    source = model
    model = onnx.ModelProto()
    model.CopyFrom(source)
    graph = model.graph
    types = _tensor_types(model)
    if any(types.get(v.name) == FP16 for v in (*graph.input, *graph.output)):
        raise SloMoError(
            "this graph has fp16 inputs or outputs; the fp16 export keeps I/O fp32, so it is not one of ours"
        )
    stats = EmulationStats()
    for index, init in enumerate(graph.initializer):
        if init.data_type == FP16:
            graph.initializer[index].CopyFrom(_upcast_tensor(init, stats))

    nodes = []
    for node in graph.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise SloMoError(
                f"fp16 emulation does not handle control flow ({node.op_type} node {node.name!r})"
            )
        for attr in node.attribute:
            if (
                attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == FP16
            ):  # Constant, ConstantOfShape
                attr.t.CopyFrom(_upcast_tensor(attr.t, stats))
            elif attr.name == "dtype" and attr.type == onnx.AttributeProto.INT and attr.i == FP16:
                attr.i = FP32
        fp16_outputs = [i for i, name in enumerate(node.output) if name and types.get(name) == FP16]
        if node.op_type == "Constant" or not fp16_outputs:
            if (
                not fp16_outputs
                and node.op_type not in (*_DATA_MOVEMENT, "Cast", "CastLike", "Constant")
                and any(types.get(name) == FP32 for name in node.output)
            ):
                stats.kept_fp32.append(node.op_type)
            nodes.append(node)
            continue
        if node.op_type in _DATA_MOVEMENT:
            stats.moved += len(fp16_outputs)
            nodes.append(node)
            continue
        nodes.append(node)
        for i in fp16_outputs:
            name = node.output[i]
            if node.op_type == "Cast":  # already rounds to fp16; only the way back to fp32 is missing
                node.output[i] = f"{name}{_SUFFIX}_fp16"
            else:  # computes in fp32 now that its inputs are fp32; round its result
                node.output[i] = f"{name}{_SUFFIX}_fp32"
                nodes.append(
                    helper.make_node(
                        "Cast",
                        [node.output[i]],
                        [f"{name}{_SUFFIX}_fp16"],
                        to=FP16,
                        name=f"{name}{_SUFFIX}_round",
                    )
                )
            nodes.append(
                helper.make_node(
                    "Cast", [f"{name}{_SUFFIX}_fp16"], [name], to=FP32, name=f"{name}{_SUFFIX}_back"
                )
            )
            stats.rounded += 1
    del graph.node[:]
    graph.node.extend(nodes)
    # Recorded types are the fp16 graph's; ONNX Runtime infers the new ones.
    del graph.value_info[:]
    return model, stats


def open_emulated_backend(folder: str | os.PathLike, manifest: Manifest) -> tuple[Backend, dict]:
    """ONNX Runtime (CPU) on the emulated copies of an fp16 folder's graphs; returns the backend and
    what the report says about the emulation."""
    import onnx

    from superslomo.runtime.onnxruntime_backend import OnnxRuntimeBackend

    if manifest.kind != "onnx" or manifest.precision != "fp16":
        raise SloMoError(
            f"fp16 emulation needs an fp16 ONNX folder, {folder} holds {manifest.kind} {manifest.precision}"
        )
    stats: dict[str, dict] = {}
    graphs = {}
    # The sessions hold the graphs in memory once built, so the copies live only as long as that.
    with tempfile.TemporaryDirectory(prefix="slomo-fp16-emulation-") as tmp:
        for graph in GRAPHS:
            model, graph_stats = emulate_fp16_storage(onnx.load(str(manifest.graph_path(folder, graph))))
            path = Path(tmp) / f"{graph}.onnx"
            onnx.save_model(model, str(path))
            graphs[graph] = replace(manifest.graphs[graph], file=path.name, sha256=file_sha256(path))
            stats[graph] = graph_stats.as_dict()
        backend = OnnxRuntimeBackend(tmp, manifest=replace(manifest, graphs=graphs)).activate()
    backend.manifest = manifest  # the folder under test, not the temporary copy
    backend.name = EMULATED_NAME
    return backend, {"measured": MEASURED, "not_measured": NOT_MEASURED, "graphs": stats}
