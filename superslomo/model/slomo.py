"""Super SloMo (Jiang et al., CVPR 2018): bidirectional flow, then arbitrary-time synthesis."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from superslomo.model.unet import UNet
from superslomo.model.warp import DEFAULT_CONVENTION, backwarp, check_convention

# The public weights were trained on inputs with this per-channel mean removed (std 1).
MEAN = (0.429, 0.431, 0.397)
DEFAULT_WIDTH = 32


@dataclass(frozen=True)
class ModelConfig:
    width: int = DEFAULT_WIDTH
    # The backward warp's convention (warp.py): "reference" for the public weights and for any
    # config written before the field existed; "exact" for models trained here since.
    warp: str = DEFAULT_CONVENTION

    def __post_init__(self) -> None:
        check_convention(self.warp)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        if not isinstance(data, dict):
            raise TypeError(f"config must be a JSON object, got {type(data).__name__}")
        width = data.get("width", DEFAULT_WIDTH)
        if not isinstance(width, int) or isinstance(width, bool) or not 1 <= width <= 256:
            raise ValueError(f"config width must be an integer in 1..256, got {width!r}")
        return cls(width=width, warp=check_convention(data.get("warp", DEFAULT_CONVENTION)))


def flow_coefficients(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(c00, c01, c10, c11) with F_t0 = c00 F01 + c01 F10 and F_t1 = c10 F01 + c11 F10."""
    return -(1 - t) * t, t * t, (1 - t) * (1 - t), -t * (1 - t)


class SuperSloMo(nn.Module):
    def __init__(self, width: int = DEFAULT_WIDTH, warp: str = DEFAULT_CONVENTION) -> None:
        super().__init__()
        self.config = ModelConfig(width=width, warp=warp)
        self.flow_net = UNet(6, 4, width)
        self.interp_net = UNet(20, 5, width)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)

    @staticmethod
    def _run_unet(net: UNet, x: torch.Tensor) -> torch.Tensor:
        """Run a U-Net in the dtype of its weights (fp16 after `.half()` for fp16 export) while
        the normalisation, flow algebra, warps and fusion stay in float32."""
        dtype = net.conv1.weight.dtype
        return net(x.to(dtype)).to(x.dtype)

    def flow(self, frame0: torch.Tensor, frame1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bidirectional optical flow in pixels (channel 0 = x) between two frames in [0,1]."""
        out = self._run_unet(self.flow_net, torch.cat((frame0 - self.mean, frame1 - self.mean), 1))
        return out[:, 0:2], out[:, 2:4]

    def synthesize(
        self,
        frame0: torch.Tensor,
        frame1: torch.Tensor,
        flow01: torch.Tensor,
        flow10: torch.Tensor,
        t: torch.Tensor,
    ) -> torch.Tensor:
        return self.synthesize_with_intermediates(frame0, frame1, flow01, flow10, t)["frame_t"]

    def synthesize_with_intermediates(
        self,
        frame0: torch.Tensor,
        frame1: torch.Tensor,
        flow01: torch.Tensor,
        flow10: torch.Tensor,
        t: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """The frame at time t plus what training losses need (warps and refined flows)."""
        t = t.to(frame0.dtype).view(-1, 1, 1, 1)
        i0 = frame0 - self.mean
        i1 = frame1 - self.mean
        c00, c01, c10, c11 = flow_coefficients(t)
        flow_t0 = c00 * flow01 + c01 * flow10
        flow_t1 = c10 * flow01 + c11 * flow10
        warp = self.config.warp
        g_i0_ft0 = backwarp(i0, flow_t0, warp)
        g_i1_ft1 = backwarp(i1, flow_t1, warp)
        out = self._run_unet(
            self.interp_net, torch.cat((i0, i1, flow01, flow10, flow_t1, flow_t0, g_i1_ft1, g_i0_ft0), 1)
        )
        flow_t0_refined = out[:, 0:2] + flow_t0
        flow_t1_refined = out[:, 2:4] + flow_t1
        visibility_t0 = torch.sigmoid(out[:, 4:5])
        visibility_t1 = 1 - visibility_t0
        warped0 = backwarp(i0, flow_t0_refined, warp)
        warped1 = backwarp(i1, flow_t1_refined, warp)
        weight0 = (1 - t) * visibility_t0
        weight1 = t * visibility_t1
        frame_t = (weight0 * warped0 + weight1 * warped1) / (weight0 + weight1) + self.mean
        return {
            "frame_t": frame_t,
            "flow_t0": flow_t0_refined,
            "flow_t1": flow_t1_refined,
        }

    def forward(self, frame0: torch.Tensor, frame1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        flow01, flow10 = self.flow(frame0, frame1)
        return self.synthesize(frame0, frame1, flow01, flow10, t)


def super_slomo(width: int = DEFAULT_WIDTH, warp: str = DEFAULT_CONVENTION) -> SuperSloMo:
    """The network with random weights; width 32 is the paper's (checkpoint-compatible) size."""
    return SuperSloMo(width=width, warp=warp)
