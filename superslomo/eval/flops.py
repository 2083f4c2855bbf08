"""Analytic FLOP count of Super SloMo at a frame size (torch-free, so runtime-only machines can
print the roofline too).

What is counted: every convolution, as 2 x MACs (a multiply and an add per weight per output
pixel) plus one add per output for the bias, at the spatial size of its pyramid level. What is
not: LeakyReLU, average pooling, bilinear upsampling, concatenation, the flow algebra, the four
backward warps and the fusion. Those are a few operations per pixel per channel, well under 1%
of the convolutions for any width >= 4 (`elementwise_flops` gives the estimate so the claim can
be checked), and they are memory-bound anyway, so they belong to the bandwidth side of the
roofline, not the compute side.

The layer table follows DESIGN.md's reference network; tests check it against the PyTorch
module's own convolutions so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from superslomo.contracts.frames import padded_size
from superslomo.errors import SloMoError

LEVELS = 5  # pooling levels: sizes must be multiples of 2**LEVELS
FLOW_CHANNELS = (6, 4)  # U-Net(6, 4) on cat(I0, I1)
INTERP_CHANNELS = (20, 5)  # U-Net(20, 5) on the 20-channel stack of DESIGN.md


@dataclass(frozen=True)
class Conv:
    name: str  # parameter prefix in the PyTorch module / public checkpoint
    cin: int
    cout: int
    kernel: int
    level: int  # 0 = full resolution, k = divided by 2**k

    def macs(self, height: int, width: int) -> int:
        pixels = (height >> self.level) * (width >> self.level)
        return pixels * self.cout * self.cin * self.kernel * self.kernel

    def flops(self, height: int, width: int) -> int:
        pixels = (height >> self.level) * (width >> self.level)
        return 2 * self.macs(height, width) + pixels * self.cout  # + bias


def unet_convs(cin: int, cout: int, width: int = 32) -> list[Conv]:
    """The convolutions of U-Net(cin, cout) at base width `width`, in execution order."""
    w = width
    convs = [Conv("conv1", cin, w, 7, 0), Conv("conv2", w, w, 7, 0)]
    downs = [(w, 2 * w, 5), (2 * w, 4 * w, 3), (4 * w, 8 * w, 3), (8 * w, 16 * w, 3), (16 * w, 16 * w, 3)]
    for k, (a, b, kernel) in enumerate(downs, start=1):
        convs += [Conv(f"down{k}.conv1", a, b, kernel, k), Conv(f"down{k}.conv2", b, b, kernel, k)]
    ups = [(16 * w, 16 * w), (16 * w, 8 * w), (8 * w, 4 * w), (4 * w, 2 * w), (2 * w, w)]
    for k, (a, b) in enumerate(ups, start=1):
        level = LEVELS - k  # up1 upsamples level 5 to level 4
        convs += [Conv(f"up{k}.conv1", a, b, 3, level), Conv(f"up{k}.conv2", 2 * b, b, 3, level)]
    convs.append(Conv("conv3", w, cout, 3, 0))
    return convs


def _check(width: int, height: int, model_width: int) -> None:
    if width < 1 or height < 1 or model_width < 1:
        raise SloMoError(f"sizes and width must be positive, got {width}x{height}, width {model_width}")


def unet_flops(cin: int, cout: int, model_width: int, width: int, height: int) -> int:
    _check(width, height, model_width)
    h, w = padded_size(height, width)
    return sum(c.flops(h, w) for c in unet_convs(cin, cout, model_width))


def elementwise_flops(model_width: int, width: int, height: int) -> int:
    """Rough count of what `unet_flops` leaves out, per pair (flow) plus one interpolated frame:
    ~1 op per activation for LeakyReLU and ~4 per output for pooling/upsampling in both U-Nets,
    and ~20 per pixel per channel for the 4 bilinear warps and the fusion."""
    h, w = padded_size(height, width)
    total = 0
    for cin, cout in (FLOW_CHANNELS, INTERP_CHANNELS):
        for conv in unet_convs(cin, cout, model_width):
            total += 5 * (h >> conv.level) * (w >> conv.level) * conv.cout
    return total + 20 * 3 * 4 * h * w


@dataclass(frozen=True)
class ModelFlops:
    width: int
    height: int
    model_width: int
    flow: int  # per frame pair
    interp: int  # per interpolated frame

    def per_frame(self, times: int = 1) -> float:
        """FLOPs per interpolated frame when one pair yields `times` new frames (flow amortised)."""
        return self.flow / times + self.interp

    @property
    def padded(self) -> tuple[int, int]:
        return padded_size(self.height, self.width)[::-1]  # (width, height), as sizes are written


def model_flops(model_width: int, width: int, height: int) -> ModelFlops:
    """FLOPs of the flow graph (once per pair) and the interpolation graph (once per new frame)."""
    return ModelFlops(
        width,
        height,
        model_width,
        unet_flops(*FLOW_CHANNELS, model_width, width, height),
        unet_flops(*INTERP_CHANNELS, model_width, width, height),
    )
