"""The BackWarp Triton kernel on the CPU (TRITON_INTERPRET=1) against the PyTorch warp in both
conventions, and its ahead-of-time compilation to PTX for a Jetson Orin target (no GPU needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton", reason="Triton not installed (pip install triton; `make setup` installs it)")

from superslomo.model.warp import backwarp, backwarp_reference  # noqa: E402


@pytest.fixture()
def interpreted(monkeypatch):
    """The kernel, defined under Triton's CPU interpreter (the choice is made at decoration)."""
    from superslomo.engine import triton_backwarp

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("TRITON_DEFAULT_FP_FUSION", "0")
    try:
        from triton import knobs

        monkeypatch.setattr(knobs.runtime, "interpret", True)
    except (ImportError, AttributeError):
        pass
    monkeypatch.setattr(triton_backwarp, "_KERNEL", None)
    yield triton_backwarp.backwarp_triton
    triton_backwarp._KERNEL = None


@pytest.mark.parametrize("convention", ["reference", "exact"])
@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (2, 3, 7, 9), (1, 5, 13, 6)])
def test_kernel_matches_pytorch_fp32(interpreted, shape, convention):
    gen = torch.Generator().manual_seed(sum(shape))
    n, c, h, w = shape
    image = torch.rand(shape, generator=gen)
    # Up to twice the frame size: many samples fall outside and must read as zeros.
    flow = (torch.rand((n, 2, h, w), generator=gen) - 0.5) * 4 * max(h, w)
    out = interpreted(image, flow, convention=convention)
    ref = backwarp(image, flow, convention)
    assert out.dtype == torch.float32
    assert (ref == 0).any(), "the test should exercise zero padding"
    torch.testing.assert_close(out, ref, atol=2e-6, rtol=0)


def test_kernel_zero_flow_is_identity_and_huge_flow_is_zero(interpreted):
    image = torch.rand(1, 3, 5, 7)
    zero = torch.zeros(1, 2, 5, 7)
    # x*(W-1)/W is not x: the reference's normalisation shifts samples slightly; match it, not identity.
    torch.testing.assert_close(interpreted(image, zero), backwarp_reference(image, zero), atol=2e-6, rtol=0)
    huge = torch.full((1, 2, 5, 7), 1e9)
    for convention in ("reference", "exact"):
        assert torch.count_nonzero(interpreted(image, huge, convention=convention)) == 0
        assert torch.count_nonzero(interpreted(image, -huge, convention=convention)) == 0
    # The exact convention's identity is zero flow, bit for bit.
    assert torch.equal(interpreted(image, zero, convention="exact"), image)
    shift = torch.zeros(1, 2, 5, 7)
    shift[:, 0] = 2.0  # read two columns to the right: the interior moves by exactly two pixels
    assert torch.equal(interpreted(image, shift, convention="exact")[..., :5], image[..., 2:])


def test_kernel_fp16_image_exact_convention(interpreted):
    gen = torch.Generator().manual_seed(8)
    image = torch.rand((1, 3, 9, 11), generator=gen).half()
    flow = (torch.rand((1, 2, 9, 11), generator=gen) - 0.5) * 12
    out = interpreted(image, flow, convention="exact")
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), backwarp(image.float(), flow, "exact"), atol=1e-3, rtol=0)


def test_kernel_fp16_image_keeps_fp32_coordinates(interpreted):
    gen = torch.Generator().manual_seed(7)
    image = torch.rand((1, 3, 9, 11), generator=gen).half()
    flow = (torch.rand((1, 2, 9, 11), generator=gen) - 0.5) * 12
    out = interpreted(image, flow)
    assert out.dtype == torch.float16
    # Reference in fp32 (fp32 coordinates); the only difference left is rounding the result to fp16.
    ref = backwarp_reference(image.float(), flow)
    torch.testing.assert_close(out.float(), ref, atol=1e-3, rtol=0)


def test_kernel_rejects_bad_inputs(interpreted):
    from superslomo.errors import SloMoError

    with pytest.raises(SloMoError):
        interpreted(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4))
    with pytest.raises(SloMoError):
        interpreted(torch.rand(1, 3, 4, 4), torch.rand(1, 2, 4, 4).half())
    with pytest.raises(SloMoError, match="unknown warp convention"):
        interpreted(torch.rand(1, 3, 4, 4), torch.rand(1, 2, 4, 4), convention="sideways")


AOT_SCRIPT = """
from triton.backends.compiler import GPUTarget
from superslomo.engine.triton_backwarp import compile_backwarp, kernel_signature
import hashlib
for kind in ("fp32", "fp16"):
    for convention in ("reference", "exact"):
        c = compile_backwarp(kind, GPUTarget("cuda", 87, 32), convention=convention)
        ptx = c.asm["ptx"]
        entry = ptx[ptx.index(".entry"):ptx.index(")", ptx.index(".entry"))]
        params = entry.count(".param")
        digest = hashlib.sha256(ptx.encode()).hexdigest()[:12]
        print(kind, convention, c.metadata.name, c.metadata.num_warps, c.metadata.shared, params, digest)
"""


def test_kernel_compiles_ahead_of_time_to_ptx_without_a_gpu():
    env = {k: v for k, v in __import__("os").environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "0"
    result = subprocess.run(
        [sys.executable, "-c", AOT_SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    if result.returncode != 0 and "ptxas" in result.stderr.lower():
        pytest.skip(f"Triton's bundled ptxas unavailable here: {result.stderr.strip()[-200:]}")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line.split() for line in result.stdout.strip().splitlines()]
    assert [line[:2] for line in lines] == [
        ["fp32", "reference"],
        ["fp32", "exact"],
        ["fp16", "reference"],
        ["fp16", "exact"],
    ]
    for _, _, name, warps, shared, params, _ in lines:
        assert name == "backwarp_kernel"
        assert int(warps) * 32 > 0 and int(shared) >= 0
        # 2 inputs + 4 int32 scalars + 1 output, then Triton's trailing scratch pointers (if any);
        # the convention is a compile-time constant, not a kernel argument.
        assert int(params) >= 7 and params == lines[0][5]
    # One PTX per convention: the plugin embeds the one its node asks for.
    assert len({line[6] for line in lines}) == 4
