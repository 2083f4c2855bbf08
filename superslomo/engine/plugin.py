"""The `superslomo::BackWarp` TensorRT plugin (tensorrt.plugin, TensorRT >= 10.9).

Only an ahead-of-time implementation is registered: the Triton kernel is compiled to PTX while the
engine is built and embedded in the plan, so the engine runs without Python (trtexec, a C++ app,
or our runtime without Triton installed). The ONNX parser maps a node to this plugin when the node's
op is `BackWarp` and it carries `plugin_namespace="superslomo"` and `aot=1` (see onnx_prep.py).

The node's string attribute `convention` ("reference" | "exact", the warp convention of the model,
model/warp.py) reaches the plugin as a field and selects which kernel is compiled into the plan;
onnx_prep.py writes "reference" on nodes from before the attribute existed. AOT plugins do not
serialise attributes into the engine, which is fine: the choice is baked into the embedded PTX.
"""

# No `from __future__ import annotations` here: tensorrt.plugin inspects these functions'
# annotations at registration and needs real types, not strings.

from superslomo.contracts.graph_io import PLUGIN_ID
from superslomo.contracts.tensorrt_version import check_plugin_supported, import_tensorrt, tensorrt_version

_registered = False


def _field_text(value: str) -> str:
    # A string attribute travels as a char field; depending on the writer it may carry the C
    # string's terminating NUL, which must not make "exact" unrecognisable.
    return value.rstrip("\x00").strip()


def register_backwarp_plugin() -> None:
    """Register the plugin with tensorrt.plugin (idempotent: the registry is process-wide)."""
    global _registered
    if _registered:
        return
    trt = import_tensorrt()
    check_plugin_supported(tensorrt_version(trt))
    import tensorrt.plugin as trtp

    from superslomo.engine.triton_backwarp import BLOCK, compile_backwarp, exact_flag

    @trtp.register(PLUGIN_ID)
    def backwarp_desc(image: trtp.TensorDesc, flow: trtp.TensorDesc, convention: str) -> trtp.TensorDesc:
        exact_flag(_field_text(convention))  # an unknown convention fails the build here, with its name
        return image.like()

    @trtp.autotune(PLUGIN_ID)
    def backwarp_autotune(
        image: trtp.TensorDesc, flow: trtp.TensorDesc, outputs: tuple[trtp.TensorDesc]
    ) -> list[trtp.AutoTuneCombination]:
        # image and output share fp32|fp16; the flow (coordinates) is always fp32.
        return [trtp.AutoTuneCombination("FP32|FP16, FP32, FP32|FP16", "LINEAR")]

    @trtp.aot_impl(PLUGIN_ID)
    def backwarp_aot(
        image: trtp.TensorDesc,
        flow: trtp.TensorDesc,
        convention: str,
        outputs: tuple[trtp.TensorDesc],
        tactic: int,
    ) -> tuple[str | bytes, str | bytes, trtp.KernelLaunchParams, trtp.SymExprs]:
        image_type = "fp32" if image.dtype == trt.float32 else "fp16"
        compiled = compile_backwarp(image_type, convention=_field_text(convention))
        shape = image.shape_expr
        pixels = shape[0] * shape[2] * shape[3]
        launch = trtp.KernelLaunchParams()
        launch.grid_x = trtp.cdiv(pixels, BLOCK)
        launch.block_x = compiled.metadata.num_warps * 32
        launch.shared_mem = compiled.metadata.shared
        scalars = trtp.SymIntExprs.from_tuple(
            [trtp.SymInt32(e) for e in (pixels, shape[1], shape[2], shape[3])]
        )
        return compiled.metadata.name, compiled.asm["ptx"], launch, scalars

    _registered = True
