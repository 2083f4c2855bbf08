"""The BackWarp op in numpy: ONNX Runtime's implementation of the `superslomo::BackWarp` node
(the `--warp plugin` export), so that variant runs end to end without a GPU."""

from __future__ import annotations

import numpy as np

from superslomo.contracts.manifest import WARP_CONVENTIONS
from superslomo.errors import SloMoError


def backwarp_numpy(image: np.ndarray, flow: np.ndarray, convention: str = "reference") -> np.ndarray:
    """Bilinear sample of image [N,C,H,W] at (col + u, row + v), coordinates in float32, zero outside.

    reference: normalised as 2(x/W - 0.5) and read with align_corners=True (pixel x (W-1)/W), the
    public weights' warp, with grid_sample's two rounding steps; exact: pixel x itself, so zero
    flow returns the image unchanged."""
    if convention not in WARP_CONVENTIONS:
        raise SloMoError(
            f"BackWarp: unknown warp convention {convention!r} (this build knows "
            f"{', '.join(WARP_CONVENTIONS)}); upgrade superslomo-trt"
        )
    n, c, h, w = image.shape
    flow = flow.astype(np.float32, copy=False)
    cols = np.arange(w, dtype=np.float32)[None, None, :]
    rows = np.arange(h, dtype=np.float32)[None, :, None]
    if convention == "exact":
        px = cols + flow[:, 0]
        py = rows + flow[:, 1]
    else:
        gx = np.float32(2.0) * ((cols + flow[:, 0]) / np.float32(w) - np.float32(0.5))
        gy = np.float32(2.0) * ((rows + flow[:, 1]) / np.float32(h) - np.float32(0.5))
        px = (gx + np.float32(1.0)) * np.float32(0.5) * np.float32(w - 1)
        py = (gy + np.float32(1.0)) * np.float32(0.5) * np.float32(h - 1)
    # Far-away samples read only padding; clamping keeps the integer conversion defined.
    px = np.clip(px, np.float32(-2.0), np.float32(w + 1))
    py = np.clip(py, np.float32(-2.0), np.float32(h + 1))
    x0 = np.floor(px)
    y0 = np.floor(py)
    fx, fy = px - x0, py - y0
    x0 = x0.astype(np.int64)
    y0 = y0.astype(np.int64)
    out = np.zeros((n, c, h, w), dtype=np.float32)
    batch = np.arange(n)[:, None, None]
    # Each tap's weight is a product, summed in grid_sample's order (the PyTorch exact warp does
    # the same); at an integer position the other three weights are exactly 0.
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            values = image[batch, :, np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]  # [N,H,W,C]
            out += (values * (wx * wy * inside)[..., None]).transpose(0, 3, 1, 2).astype(np.float32)
    return out.astype(image.dtype, copy=False)
