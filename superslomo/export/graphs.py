"""The two exported graphs as modules: the network plus the I/O contract around it."""

from __future__ import annotations

import torch
import torch.nn as nn

from superslomo.model.scaled import flow_at, synthesize_at
from superslomo.model.slomo import SuperSloMo


def _frames_in(frame: torch.Tensor, io: str) -> torch.Tensor:
    if io == "uint8":  # NHWC uint8 over PCIe: a quarter of the float32 bytes
        return frame.permute(0, 3, 1, 2).to(torch.float32) / 255.0
    return frame


class FlowGraph(nn.Module):
    """frame0, frame1 -> flow01, flow10 (pixels, channel 0 = x); scale < 1: the network runs on
    the pair downscaled (model/scaled.py), the flows come out at full size."""

    def __init__(self, model: SuperSloMo, io: str = "float32", scale: float = 1.0) -> None:
        super().__init__()
        self.model, self.io, self.scale = model, io, scale

    def forward(self, frame0: torch.Tensor, frame1: torch.Tensor):
        return flow_at(self.model, _frames_in(frame0, self.io), _frames_in(frame1, self.io), self.scale)


class InterpGraph(nn.Module):
    """frame0, frame1, flow01, flow10, t[N] -> frame_t, clamped to [0,1] (or uint8 NHWC)."""

    def __init__(self, model: SuperSloMo, io: str = "float32", scale: float = 1.0) -> None:
        super().__init__()
        self.model, self.io, self.scale = model, io, scale

    def forward(self, frame0, frame1, flow01, flow10, t):
        frame0, frame1 = _frames_in(frame0, self.io), _frames_in(frame1, self.io)
        frame = synthesize_at(self.model, frame0, frame1, flow01, flow10, t, self.scale)
        frame = frame.clamp(0.0, 1.0)
        if self.io == "uint8":
            return (frame * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1)
        return frame
