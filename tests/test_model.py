"""The network against an independent re-computation of DESIGN.md's formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from superslomo.model import MEAN, backwarp, flow_coefficients, load_checkpoint, super_slomo
from tests.conftest import public_format_checkpoint


def numpy_backwarp(image: np.ndarray, flow: np.ndarray, exact: bool = False) -> np.ndarray:
    """g(I, F) by hand: x = col + u normalised as 2(x/W - 0.5), sampled with align_corners=True,
    i.e. at pixel x (W-1)/W; bilinear, zero outside. exact: at pixel x itself."""
    n, c, h, w = image.shape
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = np.zeros_like(image, dtype=np.float64)
    sx, sy = (1.0, 1.0) if exact else ((w - 1) / w, (h - 1) / h)
    for b in range(n):
        px = (cols + flow[b, 0]) * sx
        py = (rows + flow[b, 1]) * sy
        x0, y0 = np.floor(px).astype(int), np.floor(py).astype(int)
        for dy in (0, 1):
            for dx in (0, 1):
                xi, yi = x0 + dx, y0 + dy
                weight = (1 - np.abs(px - xi)) * (1 - np.abs(py - yi))
                inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
                values = image[b][:, np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]
                out[b] += values * (weight * inside)[None]
    return out


def test_warp_matches_hand_computation_on_random_flows():
    rng = np.random.default_rng(0)
    image = rng.random((2, 3, 12, 17)).astype(np.float32)
    flow = (rng.standard_normal((2, 2, 12, 17)) * 4).astype(np.float32)  # some samples fall outside
    got = backwarp(torch.from_numpy(image), torch.from_numpy(flow)).numpy()
    np.testing.assert_allclose(got, numpy_backwarp(image, flow), atol=2e-6)


def test_warp_of_a_known_shift_keeps_the_align_corners_scaling():
    width = 64
    ramp = np.tile(np.arange(width, dtype=np.float32), (1, 1, 8, 1))  # value = column index
    flow = np.zeros((1, 2, 8, width), np.float32)
    flow[:, 0] = 3.0
    got = backwarp(torch.from_numpy(ramp), torch.from_numpy(flow)).numpy()[0, 0, 0]
    cols = np.arange(width)
    expected = (cols + 3.0) * (width - 1) / width  # sampling position, not col + 3
    inside = expected <= width - 1
    np.testing.assert_allclose(got[inside], expected[inside], atol=1e-4)
    assert got[-1] == pytest.approx(0.0)  # zero padding past the edge
    # The scaling is real: a naive col + 3 would differ by 3/64 px at column 0 and more to the right.
    assert abs(got[40] - 43.0) > 0.5


@pytest.mark.parametrize("t", [0.1, 0.25, 0.5, 0.9])
def test_flow_coefficients(t):
    c00, c01, c10, c11 = (float(c) for c in flow_coefficients(torch.tensor(t)))
    assert c00 == pytest.approx(-(1 - t) * t)
    assert c01 == pytest.approx(t * t)
    assert c10 == pytest.approx((1 - t) ** 2)
    assert c11 == pytest.approx(-t * (1 - t))


def _conv(x, state, name, leaky=True):
    w, b = state[f"{name}.weight"], state[f"{name}.bias"]
    y = F.conv2d(x, w, b, padding=w.shape[-1] // 2)
    return torch.where(y > 0, y, 0.1 * y) if leaky else y


def _upsample2(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 with align_corners=False by hand: output pixel i samples input (i + 0.5)/2 - 0.5."""
    n, c, h, w = x.shape

    def axis(size):
        pos = np.clip((np.arange(2 * size) + 0.5) / 2 - 0.5, 0, size - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, size - 1)
        return torch.from_numpy(lo), torch.from_numpy(hi), torch.from_numpy(pos - lo).float()

    ylo, yhi, fy = axis(h)
    xlo, xhi, fx = axis(w)
    rows = x[:, :, ylo] * (1 - fy)[:, None] + x[:, :, yhi] * fy[:, None]
    return rows[..., xlo] * (1 - fx) + rows[..., xhi] * fx


def _unet(x, state, prefix):
    s = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
    x = _conv(x, s, "conv1")
    skips = [_conv(x, s, "conv2")]
    x = skips[0]
    for i in range(1, 6):
        x = F.avg_pool2d(x, 2)
        x = _conv(_conv(x, s, f"down{i}.conv1"), s, f"down{i}.conv2")
        skips.append(x)
    x = skips.pop()
    for i in range(1, 6):
        x = _conv(_upsample2(x), s, f"up{i}.conv1")
        x = _conv(torch.cat((x, skips.pop()), 1), s, f"up{i}.conv2")
    return _conv(x, s, "conv3")  # LeakyReLU after the last conv too


def reference_forward(state, frame0, frame1, t, exact=False):
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    i0, i1 = frame0 - mean, frame1 - mean
    out = _unet(torch.cat((i0, i1), 1), state, "flow_net")
    f01, f10 = out[:, :2], out[:, 2:4]
    t = t.view(-1, 1, 1, 1)
    ft0 = -(1 - t) * t * f01 + t * t * f10
    ft1 = (1 - t) ** 2 * f01 - t * (1 - t) * f10

    def g(img, flow):
        return torch.from_numpy(numpy_backwarp(img.double().numpy(), flow.double().numpy(), exact)).float()

    o = _unet(torch.cat((i0, i1, f01, f10, ft1, ft0, g(i1, ft1), g(i0, ft0)), 1), state, "interp_net")
    ft0r, ft1r = o[:, 0:2] + ft0, o[:, 2:4] + ft1
    v0 = torch.sigmoid(o[:, 4:5])
    v1 = 1 - v0
    num = (1 - t) * v0 * g(i0, ft0r) + t * v1 * g(i1, ft1r)
    return num / ((1 - t) * v0 + t * v1) + mean, (f01, f10)


def test_public_checkpoint_matches_independent_reference(tmp_path):
    torch.manual_seed(0)
    model = super_slomo()  # width 32: the public checkpoint's shapes
    with torch.no_grad():
        model.flow_net.conv3.weight.mul_(30.0)  # real-sized flows, so the warp matters
        model.interp_net.conv3.weight.mul_(10.0)
    path = public_format_checkpoint(model, tmp_path / "SuperSloMo.ckpt")
    loaded = load_checkpoint(path)
    assert not loaded.training
    state = {k: v.clone() for k, v in loaded.state_dict().items()}
    frame0, frame1 = torch.rand(2, 3, 32, 64), torch.rand(2, 3, 32, 64)
    t = torch.tensor([0.2, 0.7])
    with torch.no_grad():
        got = loaded(frame0, frame1, t)
        flows = loaded.flow(frame0, frame1)
        expected, expected_flows = reference_forward(state, frame0, frame1, t)
    assert flows[0].abs().max() > 0.5, "flows too small for the warp to be exercised"
    torch.testing.assert_close(flows[0], expected_flows[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(flows[1], expected_flows[1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=1e-4)


def test_exact_warp_model_matches_independent_reference():
    """A model declaring the exact warp uses it in all four warps (hand computation at pixel col + u)."""
    torch.manual_seed(1)
    model = super_slomo(width=8, warp="exact").eval()
    with torch.no_grad():
        model.flow_net.conv3.weight.mul_(30.0)
        model.interp_net.conv3.weight.mul_(10.0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    frame0, frame1 = torch.rand(2, 3, 32, 64), torch.rand(2, 3, 32, 64)
    t = torch.tensor([0.3, 0.6])
    with torch.no_grad():
        got = model(frame0, frame1, t)
        assert model.flow(frame0, frame1)[0].abs().max() > 0.5, "flows too small for the warp to be exercised"
        expected, _ = reference_forward(state, frame0, frame1, t, exact=True)
        as_reference, _ = reference_forward(state, frame0, frame1, t, exact=False)
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=1e-4)
    # The two conventions differ by up to a pixel of sampling position: the test can tell them apart.
    assert (got - as_reference).abs().max() > 1e-2


def test_upsampling_is_bilinear_without_align_corners():
    x = torch.rand(1, 2, 5, 7)
    torch.testing.assert_close(
        F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False), _upsample2(x)
    )


def test_forward_is_flow_then_synthesize(small_model):
    f0, f1, t = torch.rand(3, 3, 64, 96), torch.rand(3, 3, 64, 96), torch.tensor([0.1, 0.5, 0.8])
    with torch.no_grad():
        flow01, flow10 = small_model.flow(f0, f1)
        assert flow01.shape == (3, 2, 64, 96)
        torch.testing.assert_close(small_model(f0, f1, t), small_model.synthesize(f0, f1, flow01, flow10, t))


def test_width_option_scales_parameters():
    full = sum(p.numel() for p in super_slomo().parameters())
    quarter = sum(p.numel() for p in super_slomo(width=16).parameters())
    assert full == 39_610_473  # the paper's network (both U-Nets)
    assert 0.24 < quarter / full < 0.26


def test_backwarp_is_a_registered_custom_op_with_fake_kernel():
    from torch._subclasses.fake_tensor import FakeTensorMode

    assert hasattr(torch.ops.superslomo, "backwarp")
    with FakeTensorMode():
        out = torch.ops.superslomo.backwarp(torch.empty(2, 3, 8, 8), torch.empty(2, 2, 8, 8))
    assert out.shape == (2, 3, 8, 8)


@pytest.mark.parametrize("convention", ["reference", "exact"])
def test_backwarp_gradients_match_an_inline_grid_sample(convention):
    """Training goes through the custom op's registered backward; check it against autograd of
    the warp written inline (float64 coordinates), for both the image and the flow. The exact
    convention is grid_sample with pixel centres at (x + 0.5)/W and align_corners=False."""
    torch.manual_seed(3)
    image = torch.rand(2, 3, 9, 11, requires_grad=True)
    flow = (torch.randn(2, 2, 9, 11) * 2).requires_grad_()
    weights = torch.rand(2, 3, 9, 11)
    (backwarp(image, flow, convention) * weights).sum().backward()
    image2 = image.detach().double().requires_grad_()
    flow2 = flow.detach().double().requires_grad_()
    cols = torch.arange(11, dtype=torch.float64).view(1, 1, 11)
    rows = torch.arange(9, dtype=torch.float64).view(1, 9, 1)
    x, y = cols + flow2[:, 0], rows + flow2[:, 1]
    if convention == "exact":
        grid = torch.stack(((2 * x + 1) / 11 - 1, (2 * y + 1) / 9 - 1), 3)
    else:
        grid = torch.stack((2 * (x / 11 - 0.5), 2 * (y / 9 - 0.5)), 3)
    out = F.grid_sample(
        image2, grid, mode="bilinear", padding_mode="zeros", align_corners=convention == "reference"
    )
    forward = backwarp(image, flow, convention).detach().double()
    torch.testing.assert_close(forward, out.detach(), atol=1e-5, rtol=0)
    (out * weights.double()).sum().backward()
    torch.testing.assert_close(image.grad.double(), image2.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(flow.grad.double(), flow2.grad, atol=1e-4, rtol=1e-3)
