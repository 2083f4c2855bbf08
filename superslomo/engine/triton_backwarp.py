"""The backward warp as a Triton kernel: the body of the TensorRT BackWarp plugin.

Semantics are those of `superslomo.model.warp.backwarp` (DESIGN.md, "backward warp") in either
convention, chosen at compile time by the EXACT constexpr (one PTX per convention, no branch in
the kernel). Reference (EXACT=0): x = col + u, normalised 2(x/W - 0.5), then bilinear sampling with
align_corners=True and zero padding; the coordinate arithmetic mirrors grid_sample's steps
(normalise, then unnormalise) so the rounding matches PyTorch. Exact (EXACT=1): pixel x = col + u
itself, so zero flow reads every pixel back unchanged. Coordinates are fp32 whatever the image
type, so fp16 engines keep sub-pixel accuracy at 4K.

Argument order is (tensor inputs, int32 scalars, tensor output): TensorRT's AOT plugins pass the
extra scalar arguments between the input and output pointers. Indices are int32: N*C*H*W must
stay below 2**31 (4 frames of 3x2160x3840 use 5% of that).
"""

from __future__ import annotations

from typing import Any

from superslomo.errors import SloMoError

BLOCK = 256  # pixels per program; each program loops over the channels

TRITON_HINT = "install Triton: pip install triton (it comes with the 'tensorrt' extra on x86-64 Linux)"


def import_triton() -> tuple[Any, Any]:
    try:
        import triton
        import triton.language as tl
    except ImportError as error:
        raise SloMoError(f"Triton is not importable ({error}); {TRITON_HINT}") from None
    return triton, tl


def _define_kernel() -> Any:
    triton, tl = import_triton()

    @triton.jit
    def backwarp_kernel(
        image_ptr,
        flow_ptr,
        num_pixels,
        channels,
        height,
        width,
        out_ptr,
        BLOCK: tl.constexpr,  # type: ignore[name-defined]
        EXACT: tl.constexpr,  # type: ignore[name-defined]
    ):
        pid = tl.program_id(0)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        live = offs < num_pixels
        plane = height * width
        n = offs // plane
        rem = offs - n * plane
        row = rem // width
        col = rem - row * width

        flow_at = flow_ptr + n * 2 * plane + rem
        u = tl.load(flow_at, mask=live, other=0.0).to(tl.float32)
        v = tl.load(flow_at + plane, mask=live, other=0.0).to(tl.float32)
        wf = width.to(tl.float32)
        hf = height.to(tl.float32)
        if EXACT:
            ix = col.to(tl.float32) + u
            iy = row.to(tl.float32) + v
        else:
            # grid_sample's two steps, kept separate so the rounding matches the PyTorch reference.
            gx = 2.0 * ((col.to(tl.float32) + u) / wf - 0.5)
            gy = 2.0 * ((row.to(tl.float32) + v) / hf - 0.5)
            ix = (gx + 1.0) * 0.5 * (wf - 1.0)
            iy = (gy + 1.0) * 0.5 * (hf - 1.0)
        # Far-away samples are all padding; clamping first keeps the int32 conversion defined.
        ix = tl.minimum(tl.maximum(ix, -2.0), wf + 1.0)
        iy = tl.minimum(tl.maximum(iy, -2.0), hf + 1.0)
        x0f = tl.floor(ix)
        y0f = tl.floor(iy)
        wx1 = ix - x0f
        wy1 = iy - y0f
        wx0 = 1.0 - wx1
        wy0 = 1.0 - wy1
        x0 = x0f.to(tl.int32)
        y0 = y0f.to(tl.int32)
        x1 = x0 + 1
        y1 = y0 + 1
        in_x0 = (x0 >= 0) & (x0 < width)
        in_x1 = (x1 >= 0) & (x1 < width)
        in_y0 = (y0 >= 0) & (y0 < height)
        in_y1 = (y1 >= 0) & (y1 < height)
        m00 = live & in_y0 & in_x0
        m01 = live & in_y0 & in_x1
        m10 = live & in_y1 & in_x0
        m11 = live & in_y1 & in_x1
        at00 = y0 * width + x0
        at01 = y0 * width + x1
        at10 = y1 * width + x0
        at11 = y1 * width + x1

        image_n = image_ptr + n * channels * plane
        out_n = out_ptr + n * channels * plane + rem
        for c in range(0, channels):
            src = image_n + c * plane
            p00 = tl.load(src + at00, mask=m00, other=0.0).to(tl.float32)
            p01 = tl.load(src + at01, mask=m01, other=0.0).to(tl.float32)
            p10 = tl.load(src + at10, mask=m10, other=0.0).to(tl.float32)
            p11 = tl.load(src + at11, mask=m11, other=0.0).to(tl.float32)
            value = wy0 * (wx0 * p00 + wx1 * p01) + wy1 * (wx0 * p10 + wx1 * p11)
            tl.store(out_n + c * plane, value.to(out_ptr.dtype.element_ty), mask=live)

    return backwarp_kernel


_KERNEL: Any = None


def backwarp_kernel() -> Any:
    """The @triton.jit kernel (defined on first use: importing this module needs no Triton)."""
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _define_kernel()
    return _KERNEL


def kernel_signature(image_type: str) -> dict[str, str]:
    """Triton signature for ahead-of-time compilation; image_type is "fp32" or "fp16"."""
    if image_type not in ("fp32", "fp16"):
        raise SloMoError(f"BackWarp supports fp32 and fp16 images, not {image_type}")
    return {
        "image_ptr": f"*{image_type}",
        "flow_ptr": "*fp32",
        "num_pixels": "i32",
        "channels": "i32",
        "height": "i32",
        "width": "i32",
        "out_ptr": f"*{image_type}",
        # Listed although they are also passed in `constexprs`: Triton releases between about 3.3
        # and 3.8 read argument types positionally from the signature and need every argument in it.
        "BLOCK": "constexpr",
        "EXACT": "constexpr",
    }


CONVENTIONS = ("reference", "exact")


def exact_flag(convention: str) -> int:
    """The EXACT constexpr for a warp convention (a SloMoError for one this kernel does not know)."""
    if convention not in CONVENTIONS:
        raise SloMoError(
            f"BackWarp: unknown warp convention {convention!r}; this build knows "
            f"{', '.join(CONVENTIONS)} (upgrade superslomo-trt)"
        )
    return int(convention == "exact")


def grid_size(num_pixels: int, block: int = BLOCK) -> int:
    return (num_pixels + block - 1) // block


def backwarp_triton(image: Any, flow: Any, block: int = BLOCK, convention: str = "reference") -> Any:
    """Run the kernel on torch tensors (CUDA, or CPU under TRITON_INTERPRET=1); for tests and checks."""
    import torch

    exact = exact_flag(convention)
    if (
        image.dim() != 4
        or flow.dim() != 4
        or flow.shape[1] != 2
        or image.shape[0] != flow.shape[0]
        or image.shape[2:] != flow.shape[2:]
    ):
        raise SloMoError(
            "backwarp: image [N,C,H,W] and flow [N,2,H,W] expected, "
            f"got {tuple(image.shape)} and {tuple(flow.shape)}"
        )
    if image.dtype not in (torch.float32, torch.float16) or flow.dtype != torch.float32:
        raise SloMoError(
            f"backwarp: image must be float32/float16 and flow float32, got {image.dtype} and {flow.dtype}"
        )
    image = image.contiguous()
    flow = flow.contiguous()
    out = torch.empty_like(image)
    n, c, h, w = image.shape
    pixels = n * h * w
    if image.numel() >= 2**31:
        raise SloMoError("backwarp: tensor too large for int32 indexing")
    backwarp_kernel()[(grid_size(pixels, block),)](
        image, flow, pixels, c, h, w, out, BLOCK=block, EXACT=exact
    )
    return out


def compile_backwarp(
    image_type: str, target: Any = None, block: int = BLOCK, convention: str = "reference"
) -> Any:
    """Compile the kernel ahead of time to PTX (no GPU needed when `target` is given)."""
    triton, _ = import_triton()
    constexprs = {"BLOCK": block, "EXACT": exact_flag(convention)}
    source = triton.compiler.ASTSource(
        fn=backwarp_kernel(), signature=kernel_signature(image_type), constexprs=constexprs
    )
    compiled = triton.compile(source, target=target) if target is not None else triton.compile(source)
    # Newer Triton appends scratch-buffer pointers to every kernel; TensorRT's AOT launcher does
    # not supply them, which is only safe while the kernel asks for no scratch memory.
    for field in ("global_scratch_size", "profile_scratch_size"):
        if getattr(compiled.metadata, field, 0):
            raise SloMoError(
                f"the compiled BackWarp kernel needs {field}={getattr(compiled.metadata, field)}; "
                "TensorRT's AOT plugins cannot provide scratch memory"
            )
    return compiled
