"""The two graphs' fixed interface (DESIGN.md decision 1), shared by export, engines and runtimes.

flow:   frame0, frame1 [N,3,H,W] float32 in [0,1] -> flow01, flow10 [N,2,H,W] (pixels, channel 0 = x)
interp: frame0, frame1, flow01, flow10, t [N]     -> frame_t [N,3,H,W]
A uint8-I/O folder takes and gives frames as [N,H,W,3] uint8 instead (`manifest.io == "uint8"`).
"""

from __future__ import annotations

FLOW_INPUTS = ("frame0", "frame1")
FLOW_OUTPUTS = ("flow01", "flow10")
INTERP_INPUTS = ("frame0", "frame1", "flow01", "flow10", "t")
INTERP_OUTPUTS = ("frame_t",)
GRAPH_INPUTS = {"flow": FLOW_INPUTS, "interp": INTERP_INPUTS}
GRAPH_OUTPUTS = {"flow": FLOW_OUTPUTS, "interp": INTERP_OUTPUTS}

# Five 2x poolings in the U-Net: H and W of every graph input are multiples of this.
SIZE_MULTIPLE = 32

# The BackWarp custom op: its ONNX domain and TensorRT plugin namespace are the same name.
PLUGIN_NAMESPACE = "superslomo"
PLUGIN_NAME = "BackWarp"
PLUGIN_ID = f"{PLUGIN_NAMESPACE}::{PLUGIN_NAME}"
