"""How the `superslomo::backwarp` custom op becomes ONNX, in either warp convention.

`gridsample`: standard GridSample (opset 16-19 spelling `bilinear`), zero padding. The reference
convention normalises 2(x/W - 0.5) with align_corners=1 (as the public weights were trained); the
exact one (2x + 1)/W - 1 with align_corners=0, which puts pixel i at i (identity = zero flow, up
to GridSample's float32 normalise/unnormalise round trip: at most ~4e-6 px up to 128 px wide,
~1e-4 px at 4K). The grid is computed from the pixel flow in float32 and the sampling itself runs in float32
even inside an fp16 graph: fp16 has a 0.5 px step above 1024, so fp16 coordinates blur and shift
4K output (the classic flow-warp artefact on TensorRT fp16 engines).
`plugin`: one `superslomo::BackWarp` node (domain version 1) for the TensorRT plugin, with a string
attribute `convention`; it always receives float32 image and flow, so coordinates stay float32
there too. A node without the attribute (graphs exported before it existed) means reference.
"""

from __future__ import annotations

import onnx
import onnxscript
from onnxscript import FLOAT, FLOAT16
from onnxscript import opset17 as op

from superslomo.contracts.graph_io import PLUGIN_NAME, PLUGIN_NAMESPACE

PLUGIN_VERSION = 1
CONVENTION_ATTRIBUTE = "convention"
DEFAULT_CONVENTION = "reference"


def _backwarp_schema() -> onnx.defs.OpSchema:
    """Declare the node to onnx so the checker and onnxscript know its signature."""
    try:
        return onnx.defs.get_schema(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE)
    except onnx.defs.SchemaError:
        pass
    Param = onnx.defs.OpSchema.FormalParameter
    schema = onnx.defs.OpSchema(
        PLUGIN_NAME,
        PLUGIN_NAMESPACE,
        PLUGIN_VERSION,
        doc="Backward warp: bilinear sample of image at (col + u, row + v), zeros outside; coordinates in "
        "float32. convention=reference: normalised 2(x/W - 0.5) with align_corners=1 (the public Super "
        "SloMo weights'); convention=exact: pixel i at coordinate i (zero flow is the identity).",
        inputs=[Param("image", "T"), Param("flow", "tensor(float)")],
        outputs=[Param("output", "T")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "image type")],
        attributes=[
            onnx.defs.OpSchema.Attribute(
                CONVENTION_ATTRIBUTE,
                onnx.helper.make_attribute(CONVENTION_ATTRIBUTE, DEFAULT_CONVENTION),
                "reference | exact",
            )
        ],
    )
    onnx.defs.register_schema(schema)
    return onnx.defs.get_schema(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE)


plugin_opset = onnxscript.values.Opset(domain=PLUGIN_NAMESPACE, version=PLUGIN_VERSION)
_backwarp_op = onnxscript.values.Op(plugin_opset, PLUGIN_NAME, _backwarp_schema())


def _check(convention: str) -> None:
    if convention not in ("reference", "exact"):
        raise ValueError(f"unknown warp convention {convention!r}")


def _grid(flow, coords_type, convention: str):
    """Normalised sampling grid [N,H,W,2]: reference 2((col + u)/W - 0.5), 2((row + v)/H - 0.5);
    exact (2(col + u) + 1)/W - 1, (2(row + v) + 1)/H - 1 (for align_corners=0)."""
    flow = op.Cast(flow, to=coords_type)
    shape = op.Shape(flow)
    height = op.Gather(shape, op.Constant(value_int=2))
    width = op.Gather(shape, op.Constant(value_int=3))
    zero = op.Constant(value_int=0)
    one = op.Constant(value_int=1)
    cols = op.Cast(op.Range(zero, width, one), to=coords_type)
    rows = op.Unsqueeze(op.Cast(op.Range(zero, height, one), to=coords_type), op.Constant(value_ints=[1]))
    u = op.Slice(flow, op.Constant(value_ints=[0]), op.Constant(value_ints=[1]), op.Constant(value_ints=[1]))
    v = op.Slice(flow, op.Constant(value_ints=[1]), op.Constant(value_ints=[2]), op.Constant(value_ints=[1]))
    two = op.Cast(op.Constant(value_float=2.0), to=coords_type)
    if convention == "exact":
        one_c = op.Cast(op.Constant(value_float=1.0), to=coords_type)
        wc, hc = op.Cast(width, to=coords_type), op.Cast(height, to=coords_type)
        grid_x = op.Sub(op.Div(op.Add(op.Mul(two, op.Add(cols, u)), one_c), wc), one_c)
        grid_y = op.Sub(op.Div(op.Add(op.Mul(two, op.Add(rows, v)), one_c), hc), one_c)
    else:
        half = op.Cast(op.Constant(value_float=0.5), to=coords_type)
        grid_x = op.Mul(two, op.Sub(op.Div(op.Add(cols, u), op.Cast(width, to=coords_type)), half))
        grid_y = op.Mul(two, op.Sub(op.Div(op.Add(rows, v), op.Cast(height, to=coords_type)), half))
    return op.Transpose(op.Concat(grid_x, grid_y, axis=1), perm=[0, 2, 3, 1])


def _gridsample(image, flow, coords_type, convention: str):
    _check(convention)
    grid = _grid(flow, coords_type, convention)
    align_corners = 0 if convention == "exact" else 1
    sampled = op.GridSample(
        op.Cast(image, to=coords_type),
        grid,
        align_corners=align_corners,
        mode="bilinear",
        padding_mode="zeros",
    )
    return op.CastLike(sampled, image)


def backwarp_gridsample(image, flow, convention: str = DEFAULT_CONVENTION):
    return _gridsample(image, flow, FLOAT.dtype, convention)


def backwarp_gridsample_fp16_coords(image, flow, convention: str = DEFAULT_CONVENTION):
    """The naive lowering (coordinates in fp16), kept only to measure what fp32 coordinates buy."""
    return _gridsample(image, flow, FLOAT16.dtype, convention)


def backwarp_plugin(image, flow, convention: str = DEFAULT_CONVENTION):
    _check(convention)
    # Written even when it is the default, so the graph says which warp it computes.
    warped = _backwarp_op(
        op.Cast(image, to=FLOAT.dtype), op.Cast(flow, to=FLOAT.dtype), convention=convention
    )
    return op.CastLike(warped, image)


LOWERINGS = {
    "gridsample": backwarp_gridsample,
    "plugin": backwarp_plugin,
    "gridsample-fp16-coords": backwarp_gridsample_fp16_coords,
}
