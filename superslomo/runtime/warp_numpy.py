"""The BackWarp op in numpy: ONNX Runtime's implementation of the `superslomo::BackWarp` node
(the `--warp plugin` export), so that variant runs end to end without a GPU."""

from __future__ import annotations

import numpy as np


def backwarp_numpy(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Bilinear sample of image [N,C,H,W] at (col + u, row + v), coordinates in float32 and
    normalised as 2(x/W - 0.5) with align_corners=True (pixel x (W-1)/W); zero outside."""
    n, c, h, w = image.shape
    flow = flow.astype(np.float32, copy=False)
    cols = np.arange(w, dtype=np.float32)[None, None, :]
    rows = np.arange(h, dtype=np.float32)[None, :, None]
    gx = np.float32(2.0) * ((cols + flow[:, 0]) / np.float32(w) - np.float32(0.5))
    gy = np.float32(2.0) * ((rows + flow[:, 1]) / np.float32(h) - np.float32(0.5))
    px = (gx + np.float32(1.0)) * np.float32(0.5) * np.float32(w - 1)
    py = (gy + np.float32(1.0)) * np.float32(0.5) * np.float32(h - 1)
    x0 = np.floor(px)
    y0 = np.floor(py)
    fx, fy = px - x0, py - y0
    x0 = x0.astype(np.int64)
    y0 = y0.astype(np.int64)
    out = np.zeros((n, c, h, w), dtype=np.float32)
    batch = np.arange(n)[:, None, None]
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            values = image[batch, :, np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]  # [N,H,W,C]
            out += (values * (wx * wy * inside)[..., None]).transpose(0, 3, 1, 2).astype(np.float32)
    return out.astype(image.dtype, copy=False)
