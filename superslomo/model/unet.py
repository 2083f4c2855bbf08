"""The U-Net of Super SloMo, with the public checkpoint's parameter names."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

NEGATIVE_SLOPE = 0.1


def _conv(in_channels: int, out_channels: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel, stride=1, padding=(kernel - 1) // 2)


class Down(nn.Module):
    """Average-pool by 2, then two convolutions."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int) -> None:
        super().__init__()
        self.conv1 = _conv(in_channels, out_channels, kernel)
        self.conv2 = _conv(out_channels, out_channels, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, 2)
        x = F.leaky_relu(self.conv1(x), NEGATIVE_SLOPE)
        return F.leaky_relu(self.conv2(x), NEGATIVE_SLOPE)


class Up(nn.Module):
    """Bilinear x2 upsampling, a convolution, concatenation with the skip, a convolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = _conv(in_channels, out_channels, 3)
        self.conv2 = _conv(2 * out_channels, out_channels, 3)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        x = F.leaky_relu(self.conv1(x), NEGATIVE_SLOPE)
        return F.leaky_relu(self.conv2(torch.cat((x, skip), 1)), NEGATIVE_SLOPE)


class UNet(nn.Module):
    """Five pooling levels; `width` is the base channel count (32 in the paper and checkpoint)."""

    def __init__(self, in_channels: int, out_channels: int, width: int = 32) -> None:
        super().__init__()
        w = width
        self.conv1 = _conv(in_channels, w, 7)
        self.conv2 = _conv(w, w, 7)
        self.down1 = Down(w, 2 * w, 5)
        self.down2 = Down(2 * w, 4 * w, 3)
        self.down3 = Down(4 * w, 8 * w, 3)
        self.down4 = Down(8 * w, 16 * w, 3)
        self.down5 = Down(16 * w, 16 * w, 3)
        self.up1 = Up(16 * w, 16 * w)
        self.up2 = Up(16 * w, 8 * w)
        self.up3 = Up(8 * w, 4 * w)
        self.up4 = Up(4 * w, 2 * w)
        self.up5 = Up(2 * w, w)
        self.conv3 = _conv(w, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv1(x), NEGATIVE_SLOPE)
        s1 = F.leaky_relu(self.conv2(x), NEGATIVE_SLOPE)
        s2 = self.down1(s1)
        s3 = self.down2(s2)
        s4 = self.down3(s3)
        s5 = self.down4(s4)
        x = self.down5(s5)
        x = self.up1(x, s5)
        x = self.up2(x, s4)
        x = self.up3(x, s3)
        x = self.up4(x, s2)
        x = self.up5(x, s1)
        return F.leaky_relu(self.conv3(x), NEGATIVE_SLOPE)
