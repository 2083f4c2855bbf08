"""Super SloMo with its networks run on the pair downscaled, warps at full scale (HD and up).

The two U-Nets cost nearly all of a pair's time and grow with the pixel count; the flow field
they estimate is smooth, and the frame's detail comes from warping the full-size frames, not
from the networks. So the flow network runs on the pair downscaled by its scale (box means), the
synthesis network on the pair downscaled by its own, as on any smaller video, and only their
outputs (the refined flows at t and the visibility map) are upsampled (bilinear) to warp and fuse
the full-size frames. RIFE does the same at HD and 4K. The I/O of both graphs is unchanged:
full-size frames in, full-size flows and frame out; the frame size must be a multiple of the
networks' multiple divided by the smaller scale.

A "reference" model's flows hold its warp's 0..1 px ramp (warp.py), which belongs to the width
the flow was made at, not to the motion: flows cross scales as true displacements.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from superslomo.contracts.manifest import SCALES
from superslomo.model.slomo import SuperSloMo, flow_coefficients
from superslomo.model.warp import backwarp


def _ramp(flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _, _, height, width = flow.shape
    cols = torch.arange(width, dtype=torch.float32, device=flow.device).view(1, 1, width)
    rows = torch.arange(height, dtype=torch.float32, device=flow.device).view(1, height, 1)
    return cols, rows


def to_displacement(flow: torch.Tensor, convention: str) -> torch.Tensor:
    """A flow of the model's convention -> where each pixel samples, minus where it is (pixels)."""
    if convention == "exact":
        return flow
    _, _, height, width = flow.shape
    cols, rows = _ramp(flow)
    x = flow[:, 0] * ((width - 1) / width) - cols / width
    y = flow[:, 1] * ((height - 1) / height) - rows / height
    return torch.stack((x, y), 1)


def from_displacement(displacement: torch.Tensor, convention: str) -> torch.Tensor:
    if convention == "exact":
        return displacement
    _, _, height, width = displacement.shape
    cols, rows = _ramp(displacement)
    x = (displacement[:, 0] * width + cols) / (width - 1)
    y = (displacement[:, 1] * height + rows) / (height - 1)
    return torch.stack((x, y), 1)


def _factor(scale: float) -> int:
    if scale not in SCALES[1:]:
        raise ValueError(f"scale must be one of {SCALES[1:]}, got {scale!r}")
    return round(1 / scale)


def _upsample(tensor: torch.Tensor, factor: int) -> torch.Tensor:
    return F.interpolate(tensor, scale_factor=float(factor), mode="bilinear", align_corners=False)


def downscale_flow(flow: torch.Tensor, convention: str, factor: int = 2) -> torch.Tensor:
    displacement = F.avg_pool2d(to_displacement(flow, convention), factor) / factor
    return from_displacement(displacement, convention)


def upscale_flow(flow: torch.Tensor, convention: str, factor: int = 2) -> torch.Tensor:
    return from_displacement(factor * _upsample(to_displacement(flow, convention), factor), convention)


def scaled_flow(model: SuperSloMo, frame0: torch.Tensor, frame1: torch.Tensor, scale: float):
    """The model's flow of a full-size pair, estimated on the pair downscaled to `scale`."""
    factor = _factor(scale)
    flow01, flow10 = model.flow(F.avg_pool2d(frame0, factor), F.avg_pool2d(frame1, factor))
    convention = model.config.warp
    return upscale_flow(flow01, convention, factor), upscale_flow(flow10, convention, factor)


def scaled_synthesize(
    model: SuperSloMo,
    frame0: torch.Tensor,
    frame1: torch.Tensor,
    flow01: torch.Tensor,
    flow10: torch.Tensor,
    t: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """The frame at t: the synthesis network on the pair downscaled to `scale` (as
    SuperSloMo.synthesize computes it there), its refined flows and visibility upsampled,
    full-size frames warped and fused."""
    factor = _factor(scale)
    convention = model.config.warp
    t = t.to(frame0.dtype).view(-1, 1, 1, 1)
    c00, c01, c10, c11 = flow_coefficients(t)
    small0 = F.avg_pool2d(frame0, factor) - model.mean
    small1 = F.avg_pool2d(frame1, factor) - model.mean
    small01 = downscale_flow(flow01, convention, factor)
    small10 = downscale_flow(flow10, convention, factor)
    flow_t0 = c00 * small01 + c01 * small10
    flow_t1 = c10 * small01 + c11 * small10
    warped_t0 = backwarp(small0, flow_t0, convention)
    warped_t1 = backwarp(small1, flow_t1, convention)
    out = model._run_unet(
        model.interp_net,
        torch.cat((small0, small1, small01, small10, flow_t1, flow_t0, warped_t1, warped_t0), 1),
    )
    refined_t0 = upscale_flow(out[:, 0:2] + flow_t0, convention, factor)
    refined_t1 = upscale_flow(out[:, 2:4] + flow_t1, convention, factor)
    visibility_t0 = torch.sigmoid(_upsample(out[:, 4:5], factor))
    weight0 = (1 - t) * visibility_t0
    weight1 = t * (1 - visibility_t0)
    warped0 = backwarp(frame0 - model.mean, refined_t0, convention)
    warped1 = backwarp(frame1 - model.mean, refined_t1, convention)
    return (weight0 * warped0 + weight1 * warped1) / (weight0 + weight1) + model.mean


def flow_at(model: SuperSloMo, frame0: torch.Tensor, frame1: torch.Tensor, scale: float = 1.0):
    """SuperSloMo.flow at full scale, scaled_flow below it: what a graph of that scale computes."""
    return model.flow(frame0, frame1) if scale == 1.0 else scaled_flow(model, frame0, frame1, scale)


def synthesize_at(model: SuperSloMo, frame0, frame1, flow01, flow10, t, scale: float = 1.0) -> torch.Tensor:
    if scale == 1.0:
        return model.synthesize(frame0, frame1, flow01, flow10, t)
    return scaled_synthesize(model, frame0, frame1, flow01, flow10, t, scale)
