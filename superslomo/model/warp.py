"""The backward warp g(image, flow) as a torch.library custom op.

Being an opaque op (rather than inline grid_sample) lets the exporter lower it to either standard
ONNX GridSample or a single `superslomo::BackWarp` node for a TensorRT plugin, and lets both
lowerings keep the sampling coordinates in float32 whatever the precision of the image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sampling_grid(flow: torch.Tensor) -> torch.Tensor:
    """Normalised grid_sample coordinates [N,H,W,2] for a pixel flow [N,2,H,W], computed in fp32.

    The reference network normalises x as 2(x/W - 0.5) (not 2x/(W-1) - 1) and samples with
    align_corners=True; the mismatch is part of what the public weights were trained on.
    """
    flow = flow.float()
    _, _, height, width = flow.shape
    cols = torch.arange(width, dtype=torch.float32, device=flow.device).view(1, 1, width)
    rows = torch.arange(height, dtype=torch.float32, device=flow.device).view(1, height, 1)
    x = cols + flow[:, 0]
    y = rows + flow[:, 1]
    grid_x = 2.0 * (x / width - 0.5)
    grid_y = 2.0 * (y / height - 0.5)
    return torch.stack((grid_x, grid_y), dim=3)


def backwarp_reference(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    grid = sampling_grid(flow).to(image.dtype)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


@torch.library.custom_op("superslomo::backwarp", mutates_args=())
def backwarp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample `image` [N,C,H,W] at (col + u, row + v) for `flow` [N,2,H,W] in pixels."""
    return backwarp_reference(image, flow)


@backwarp.register_fake
def _backwarp_fake(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    torch._check(flow.shape[1] == 2, lambda: "flow must have 2 channels")
    return torch.empty_like(image)


def _backwarp_setup_context(ctx, inputs, output) -> None:
    image, flow = inputs
    ctx.save_for_backward(image, flow)


def _backwarp_backward(ctx, grad_output):
    image, flow = ctx.saved_tensors
    with torch.enable_grad():
        image_ = image.detach().requires_grad_(ctx.needs_input_grad[0])
        flow_ = flow.detach().requires_grad_(ctx.needs_input_grad[1])
        out = backwarp_reference(image_, flow_)
        wanted = [t for t, need in zip((image_, flow_), ctx.needs_input_grad) if need]
        grads = iter(torch.autograd.grad(out, wanted, grad_output)) if wanted else iter(())
    return tuple(next(grads) if need else None for need in ctx.needs_input_grad)


backwarp.register_autograd(_backwarp_backward, setup_context=_backwarp_setup_context)
