"""How the `superslomo::backwarp` custom op becomes ONNX.

`gridsample`: standard GridSample (opset 16-19 spelling `bilinear`), zero padding,
align_corners=1. The grid is computed from the pixel flow in float32 and the sampling itself
runs in float32 even inside an fp16 graph: fp16 has a 0.5 px step above 1024, so fp16
coordinates blur and shift 4K output (the classic flow-warp artefact on TensorRT fp16 engines).
`plugin`: one `superslomo::BackWarp` node (domain version 1) for the TensorRT plugin; it always
receives float32 image and flow, so coordinates stay float32 there too.
"""

from __future__ import annotations

import onnx
import onnxscript
from onnxscript import FLOAT, FLOAT16
from onnxscript import opset17 as op

PLUGIN_DOMAIN = "superslomo"
PLUGIN_OP = "BackWarp"
PLUGIN_VERSION = 1


def _backwarp_schema() -> onnx.defs.OpSchema:
    """Declare the node to onnx so the checker and onnxscript know its signature."""
    try:
        return onnx.defs.get_schema(PLUGIN_OP, PLUGIN_VERSION, PLUGIN_DOMAIN)
    except onnx.defs.SchemaError:
        pass
    Param = onnx.defs.OpSchema.FormalParameter
    schema = onnx.defs.OpSchema(
        PLUGIN_OP,
        PLUGIN_DOMAIN,
        PLUGIN_VERSION,
        doc="Backward warp: bilinear sample of image at (col + u, row + v), zeros outside, "
        "normalised 2(x/W - 0.5) with align_corners=1; coordinates in float32.",
        inputs=[Param("image", "T"), Param("flow", "tensor(float)")],
        outputs=[Param("output", "T")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "image type")],
    )
    onnx.defs.register_schema(schema)
    return onnx.defs.get_schema(PLUGIN_OP, PLUGIN_VERSION, PLUGIN_DOMAIN)


plugin_opset = onnxscript.values.Opset(domain=PLUGIN_DOMAIN, version=PLUGIN_VERSION)
_backwarp_op = onnxscript.values.Op(plugin_opset, PLUGIN_OP, _backwarp_schema())


def _grid(flow, coords_type):
    """Normalised sampling grid [N,H,W,2]: 2((col + u)/W - 0.5), 2((row + v)/H - 0.5)."""
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
    half = op.Cast(op.Constant(value_float=0.5), to=coords_type)
    grid_x = op.Mul(two, op.Sub(op.Div(op.Add(cols, u), op.Cast(width, to=coords_type)), half))
    grid_y = op.Mul(two, op.Sub(op.Div(op.Add(rows, v), op.Cast(height, to=coords_type)), half))
    return op.Transpose(op.Concat(grid_x, grid_y, axis=1), perm=[0, 2, 3, 1])


def backwarp_gridsample(image, flow):
    grid = _grid(flow, FLOAT.dtype)
    sampled = op.GridSample(op.Cast(image, to=FLOAT.dtype), grid, align_corners=1, mode="bilinear", padding_mode="zeros")
    return op.CastLike(sampled, image)


def backwarp_gridsample_fp16_coords(image, flow):
    """The naive lowering (coordinates in fp16), kept only to measure what fp32 coordinates buy."""
    grid = _grid(flow, FLOAT16.dtype)
    sampled = op.GridSample(op.Cast(image, to=FLOAT16.dtype), grid, align_corners=1, mode="bilinear", padding_mode="zeros")
    return op.CastLike(sampled, image)


def backwarp_plugin(image, flow):
    warped = _backwarp_op(op.Cast(image, to=FLOAT.dtype), op.Cast(flow, to=FLOAT.dtype))
    return op.CastLike(warped, image)


LOWERINGS = {
    "gridsample": backwarp_gridsample,
    "plugin": backwarp_plugin,
    "gridsample-fp16-coords": backwarp_gridsample_fp16_coords,
}
