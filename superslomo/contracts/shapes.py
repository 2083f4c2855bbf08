"""Optimisation profiles: NxHxW shapes, validation, and splitting a range into several profiles.

Torch- and TensorRT-free so that the CLI can reject a bad `--min/--opt/--max` before any GPU work,
and so that the runtime can choose a profile from the manifest alone.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from superslomo.contracts.graph_io import SIZE_MULTIPLE
from superslomo.errors import SloMoError

_SHAPE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*[xX]\s*(\d+)\s*$")


class ProfileError(SloMoError):
    pass


@dataclass(frozen=True, order=True)
class Shape:
    """One engine shape: batch N, height H, width W (NxHxW on the command line)."""

    n: int
    h: int
    w: int

    def __str__(self) -> str:
        return f"{self.n}x{self.h}x{self.w}"

    def fits_in(self, low: Shape, high: Shape) -> bool:
        return all(
            lo <= v <= hi for v, lo, hi in zip(self.astuple(), low.astuple(), high.astuple(), strict=False)
        )

    def astuple(self) -> tuple[int, int, int]:
        return (self.n, self.h, self.w)

    @property
    def pixels(self) -> int:
        return self.n * self.h * self.w


@dataclass(frozen=True)
class Profile:
    min: Shape
    opt: Shape
    max: Shape

    def contains(self, shape: Shape) -> bool:
        return shape.fits_in(self.min, self.max)

    def to_json(self) -> dict[str, list[int]]:
        return {
            "min": list(self.min.astuple()),
            "opt": list(self.opt.astuple()),
            "max": list(self.max.astuple()),
        }

    @classmethod
    def from_json(cls, data: Any) -> Profile:
        try:
            return cls(*(Shape(*(int(v) for v in data[key])) for key in ("min", "opt", "max")))
        except (KeyError, TypeError, ValueError):
            raise ProfileError(f"malformed profile in manifest: {data!r}") from None

    def __str__(self) -> str:
        return f"min {self.min}, opt {self.opt}, max {self.max}"


def parse_shape(text: str, what: str = "shape") -> Shape:
    """`"2x736x1280"` -> Shape(2, 736, 1280); H and W must be positive multiples of 32."""
    match = _SHAPE.match(str(text))
    if not match:
        raise ProfileError(f"{what} must be NxHxW (batch x height x width), e.g. 1x736x1280; got {text!r}")
    shape = Shape(*(int(g) for g in match.groups()))
    if shape.n < 1:
        raise ProfileError(f"{what} {shape}: batch must be at least 1")
    for name, value in (("height", shape.h), ("width", shape.w)):
        if value < SIZE_MULTIPLE or value % SIZE_MULTIPLE:
            raise ProfileError(
                f"{what} {shape}: {name} {value} must be a positive multiple of {SIZE_MULTIPLE} "
                f"(the runtime pads frames up to it)"
            )
    return shape


def make_profile(low: Shape, opt: Shape, high: Shape) -> Profile:
    for axis, (lo, op, hi) in zip(
        ("batch", "height", "width"),
        zip(low.astuple(), opt.astuple(), high.astuple(), strict=False),
        strict=False,
    ):
        if not lo <= op <= hi:
            raise ProfileError(
                f"profile {axis}: need min <= opt <= max, got {lo}, {op}, {hi} (from {low}, {opt}, {high})"
            )
    return Profile(low, opt, high)


def _round_up(value: float, multiple: int) -> int:
    return int(math.ceil(value / multiple - 1e-9)) * multiple


def split_profiles(base: Profile, count: int, multiple: int = SIZE_MULTIPLE) -> list[Profile]:
    """Cover base.min..base.max with `count` profiles of growing maximum size.

    TensorRT tunes kernels per profile, so a 720p stream run on a profile whose range reaches 4K
    pays for the wide range; nested profiles (same min, larger and larger max) let the runtime pick
    the tightest one. Sizes grow geometrically in pixel count, the way video resolutions do; the
    maxima in between are rounded up to `multiple`, the folder's size multiple (128 for a network
    at 1/4 scale), so they are sizes its frames pad to.
    """
    if count < 1:
        raise ProfileError(f"--profiles must be at least 1, got {count}")
    if count == 1:
        return [base]
    lo, hi = base.min, base.max
    maxima: list[Shape] = []
    for k in range(1, count + 1):
        f = k / count
        h = _round_up(lo.h * (hi.h / lo.h) ** f, multiple)
        w = _round_up(lo.w * (hi.w / lo.w) ** f, multiple)
        shape = Shape(hi.n, min(max(h, lo.h), hi.h), min(max(w, lo.w), hi.w))
        if not maxima or shape != maxima[-1]:
            maxima.append(shape)
    if maxima[-1] != hi:
        maxima[-1] = hi
    profiles = []
    for top in maxima:
        axes = zip(base.opt.astuple(), lo.astuple(), top.astuple(), strict=False)
        opt = Shape(*(min(max(o, low), t) for o, low, t in axes))
        profiles.append(Profile(lo, opt, top))
    return profiles


def parse_profiles(
    min_text: str, opt_text: str, max_text: str, count: int = 1, multiple: int = SIZE_MULTIPLE
) -> list[Profile]:
    """`count` nested profiles over --min..--max; `multiple`: the model folder's size multiple."""
    base = make_profile(
        parse_shape(min_text, "--min"), parse_shape(opt_text, "--opt"), parse_shape(max_text, "--max")
    )
    return split_profiles(base, count, multiple)


def choose_profile(profiles: list[Profile], shape: Shape) -> int:
    """Index of the smallest profile (by max pixel count) that admits `shape`.

    The smallest admitting profile is the one TensorRT tuned closest to this size.
    """
    fitting = [(p.max.pixels, i) for i, p in enumerate(profiles) if p.contains(shape)]
    if not fitting:
        ranges = "; ".join(str(p) for p in profiles) or "none"
        raise ProfileError(
            f"shape {shape} (NxHxW, after padding) is outside every engine profile ({ranges}); "
            "rebuild with `slomo build-engine --min/--max` covering it, or use a smaller batch/size"
        )
    return min(fitting)[1]


def tensor_shape(name: str, shape: Shape, io: str = "float32") -> tuple[int, ...]:
    """The shape of one graph I/O tensor at engine shape NxHxW (names fixed by DESIGN.md, decision 1)."""
    n, h, w = shape.astuple()
    if name in ("frame0", "frame1", "frame_t"):
        return (n, h, w, 3) if io == "uint8" else (n, 3, h, w)
    if name in ("flow01", "flow10"):
        return (n, 2, h, w)
    if name == "t":
        return (n,)
    raise ProfileError(f"unknown graph tensor {name!r}")
