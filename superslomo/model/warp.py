"""The backward warp g(image, flow) as a torch.library custom op, in two conventions.

Being an opaque op (rather than inline grid_sample) lets the exporter lower it to either standard
ONNX GridSample or a single `superslomo::BackWarp` node for a TensorRT plugin, and lets both
lowerings keep the sampling coordinates in float32 whatever the precision of the image.

Both conventions sample `image` bilinearly at x = col + u, y = row + v with zeros outside; they
differ in where pixel centres sit:
- "reference": what the public weights were trained with. x is normalised as 2(x/W - 0.5) and
  sampled with align_corners=True, so the pixel actually read is x (W-1)/W: zero flow is not the
  identity but a shift growing from 0 px at the left/top edge to 1 px at the right/bottom. Kept
  as it is for checkpoint parity.
- "exact": pixel i is at coordinate i, so zero flow returns the image unchanged and an integer
  flow moves it by whole pixels. In ONNX this is GridSample with align_corners=0 and
  x_norm = (2x + 1)/W - 1 (pixel centres at (i + 0.5)/W, which has no 0/0 at W = 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from superslomo.errors import SloMoError

CONVENTIONS = ("reference", "exact")
DEFAULT_CONVENTION = "reference"  # what a checkpoint means when it does not say


class WarpConventionError(SloMoError, ValueError):
    """A SloMoError for the CLI's one-line message; a ValueError for config parsers."""


def check_convention(convention: object) -> str:
    if convention not in CONVENTIONS:
        raise WarpConventionError(
            f"warp convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}"
        )
    return convention  # type: ignore[return-value]


def _pixel_coordinates(flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flow = flow.float()
    _, _, height, width = flow.shape
    cols = torch.arange(width, dtype=torch.float32, device=flow.device).view(1, 1, width)
    rows = torch.arange(height, dtype=torch.float32, device=flow.device).view(1, height, 1)
    return cols + flow[:, 0], rows + flow[:, 1]


def sampling_grid(flow: torch.Tensor, convention: str = DEFAULT_CONVENTION) -> torch.Tensor:
    """Normalised grid_sample coordinates [N,H,W,2] for a pixel flow [N,2,H,W], computed in fp32.

    The reference network normalises x as 2(x/W - 0.5) (not 2x/(W-1) - 1) and samples with
    align_corners=True; the mismatch is part of what the public weights were trained on. The exact
    convention's grid is for align_corners=False (what the ONNX lowering feeds GridSample).
    """
    check_convention(convention)
    _, _, height, width = flow.shape
    x, y = _pixel_coordinates(flow)
    if convention == "exact":
        grid_x = (2.0 * x + 1.0) / width - 1.0
        grid_y = (2.0 * y + 1.0) / height - 1.0
    else:
        grid_x = 2.0 * (x / width - 0.5)
        grid_y = 2.0 * (y / height - 0.5)
    return torch.stack((grid_x, grid_y), dim=3)


def backwarp_reference(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """The reference convention, exactly as the public network computes it."""
    grid = sampling_grid(flow).to(image.dtype)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def backwarp_exact(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """The exact convention, sampled in pixel coordinates.

    Not via grid_sample: its normalise/unnormalise round trip is not exact in float32 (about
    1e-4 px at 4K), and here zero flow must give the input back bit for bit. The taps are weighted
    and summed as grid_sample and the numpy op do; at an integer position three weights are 0.
    """
    n, c, height, width = image.shape
    x, y = _pixel_coordinates(flow)
    # Far-away samples read only padding; clamping first keeps the integer conversion defined.
    x = x.clamp(-2.0, width + 1.0)
    y = y.clamp(-2.0, height + 1.0)
    x0f, y0f = torch.floor(x), torch.floor(y)
    fx, fy = x - x0f, y - y0f
    # Zeros around the image stand for the padding: every tap of a clamped position, x0 in
    # [-2, W+1] and x0 + 1, lands inside, so no masks or index clamps are needed (5x faster on
    # a CPU than masking each tap).
    pitch = width + 5
    padded = F.pad(image.float(), (2, 3, 2, 3)).reshape(n, c, (height + 5) * pitch)
    base = ((y0f.long() + 2) * pitch + (x0f.long() + 2)).view(n, 1, height * width)
    # A NaN flow has no integer position; keep its index valid so the NaN shows in the output
    # instead of an indexing error.
    base = base.clamp(0, (height + 4) * pitch - 2)
    taps = ((0, (1 - fx) * (1 - fy)), (1, fx * (1 - fy)), (pitch, (1 - fx) * fy), (pitch + 1, fx * fy))
    out = None
    for offset, weight in taps:
        values = padded.gather(2, (base + offset).expand(n, c, height * width)).view(n, c, height, width)
        term = values * weight.unsqueeze(1)
        out = term if out is None else out + term
    return out.to(image.dtype)


def backwarp_eager(
    image: torch.Tensor, flow: torch.Tensor, convention: str = DEFAULT_CONVENTION
) -> torch.Tensor:
    """The warp in plain PyTorch ops (what the custom op runs and differentiates)."""
    if check_convention(convention) == "exact":
        return backwarp_exact(image, flow)
    return backwarp_reference(image, flow)


@torch.library.custom_op("superslomo::backwarp", mutates_args=())
def backwarp(image: torch.Tensor, flow: torch.Tensor, convention: str = DEFAULT_CONVENTION) -> torch.Tensor:
    """Sample `image` [N,C,H,W] at (col + u, row + v) for `flow` [N,2,H,W] in pixels."""
    return backwarp_eager(image, flow, convention)


@backwarp.register_fake
def _backwarp_fake(
    image: torch.Tensor, flow: torch.Tensor, convention: str = DEFAULT_CONVENTION
) -> torch.Tensor:
    torch._check(flow.shape[1] == 2, lambda: "flow must have 2 channels")
    check_convention(convention)
    return torch.empty_like(image)


def _backwarp_setup_context(ctx, inputs, output) -> None:
    image, flow, convention = inputs
    ctx.save_for_backward(image, flow)
    ctx.convention = convention


def _backwarp_backward(ctx, grad_output):
    image, flow = ctx.saved_tensors
    needs = ctx.needs_input_grad[:2]
    with torch.enable_grad():
        image_ = image.detach().requires_grad_(needs[0])
        flow_ = flow.detach().requires_grad_(needs[1])
        out = backwarp_eager(image_, flow_, ctx.convention)
        wanted = [t for t, need in zip((image_, flow_), needs, strict=False) if need]
        grads = iter(torch.autograd.grad(out, wanted, grad_output)) if wanted else iter(())
    return (*(next(grads) if need else None for need in needs), None)


backwarp.register_autograd(_backwarp_backward, setup_context=_backwarp_setup_context)
