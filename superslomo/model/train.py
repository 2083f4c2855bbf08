"""Training Super SloMo on frame runs from videos and frame folders (CPU or GPU).

Losses follow the paper: L1 reconstruction, warping loss and flow smoothness; the perceptual
term needs VGG16 weights, which only a user can supply (nothing is downloaded).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from superslomo.errors import Interrupted, SloMoError
from superslomo.eval.datasets import iter_triplets
from superslomo.eval.metrics import blend, psnr
from superslomo.model.checkpoint import checkpoint_metadata, load_checkpoint, save_checkpoint
from superslomo.model.slomo import SuperSloMo
from superslomo.model.warp import backwarp
from superslomo.video.frames import iter_source_frames

# Relative loss weights of the paper (lambda_r = 0.8, lambda_w = 0.4 on 0..255 images; the
# smoothness term is on pixel flows and stays at weight 1).
RECONSTRUCTION_WEIGHT = 204.0
WARP_WEIGHT = 102.0
SMOOTHNESS_WEIGHT = 1.0
# A pair whose mean absolute difference exceeds this is a scene cut, not motion.
CUT_MEAN_ABS_DIFF = 0.25


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
    extra: dict = field(default_factory=dict)


def _downscale(frame: np.ndarray, max_side: int) -> np.ndarray:
    height, width = frame.shape[:2]
    factor = int(math.ceil(max(height, width) / max_side))
    if factor <= 1:
        return frame
    h, w = height // factor * factor, width // factor * factor
    return frame[:h, :w].reshape(h // factor, factor, w // factor, factor, 3).mean(axis=(1, 3)).astype(np.uint8)


class FramePool:
    """Runs of consecutive frames held in memory, sampled as (I0, It, I1, t) crops."""

    def __init__(self, sources: Sequence[str], crop: int | tuple[int, int], max_gap: int, max_side: int, per_source: int,
                 seed: int,
                 static_fraction: float = 0.0):
        # (height, width). Wide crops matter for this network: the reference warp's identity is a
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
        self.rng = np.random.default_rng(seed)
        self.clips: list[np.ndarray] = []
        for source in sources:
            frames = [_downscale(f, max_side) for f in iter_source_frames(source, max_frames=per_source)]
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

    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        for _ in range(50):
            clip = self.clips[self.rng.choice(len(self.clips), p=self.weights)]
            gap = int(self.rng.integers(2, min(self.max_gap, len(clip) - 1) + 1))
            start = int(self.rng.integers(0, len(clip) - gap))
            k = int(self.rng.integers(1, gap))
            h, w = clip.shape[1:3]
            y = int(self.rng.integers(0, h - self.crop_h + 1))
            x = int(self.rng.integers(0, w - self.crop_w + 1))
            window = clip[start : start + gap + 1, y : y + self.crop_h, x : x + self.crop_w]
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
                f0, ft, f1 = f0[:, ::-1], ft[:, ::-1], f1[:, ::-1]
            if self.rng.random() < 0.5:
                f0, ft, f1 = f0[::-1], ft[::-1], f1[::-1]
            return f0, ft, f1, t
        raise SloMoError("training data looks like scene cuts only")

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        items = [self.sample() for _ in range(size)]

        def stack(i: int) -> torch.Tensor:
            array = np.stack([np.ascontiguousarray(item[i]) for item in items])
            return torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(255.0)

        return stack(0), stack(1), stack(2), torch.tensor([item[3] for item in items], dtype=torch.float32)


def _smoothness(flow: torch.Tensor) -> torch.Tensor:
    return (flow[:, :, :, 1:] - flow[:, :, :, :-1]).abs().mean() + (flow[:, :, 1:] - flow[:, :, :-1]).abs().mean()


def training_loss(model: SuperSloMo, f0: torch.Tensor, ft: torch.Tensor, f1: torch.Tensor, t: torch.Tensor):
    flow01, flow10 = model.flow(f0, f1)
    out = model.synthesize_with_intermediates(f0, f1, flow01, flow10, t)
    reconstruction = F.l1_loss(out["frame_t"], ft)
    warp = (
        F.l1_loss(backwarp(f0, out["flow_t0"]), ft)
        + F.l1_loss(backwarp(f1, out["flow_t1"]), ft)
        + F.l1_loss(backwarp(f1, flow01), f0)
        + F.l1_loss(backwarp(f0, flow10), f1)
    )
    smooth = _smoothness(flow01) + _smoothness(flow10)
    total = RECONSTRUCTION_WEIGHT * reconstruction + WARP_WEIGHT * warp + SMOOTHNESS_WEIGHT * smooth
    return total, {"rec": reconstruction.item(), "warp": warp.item(), "smooth": smooth.item()}


def _pad32(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % 32, (-w) % 32
    return F.pad(x, (0, pw, 0, ph), mode="replicate"), h, w


@torch.no_grad()
def validate(model: SuperSloMo, path: str) -> dict[str, float]:
    model.eval()
    scores, baseline = [], []
    for triplet in iter_triplets(path):
        f0 = torch.from_numpy(triplet.frame0).permute(2, 0, 1)[None].float() / 255.0
        f1 = torch.from_numpy(triplet.frame1).permute(2, 0, 1)[None].float() / 255.0
        p0, h, w = _pad32(f0)
        p1, _, _ = _pad32(f1)
        out = model(p0, p1, torch.tensor([triplet.t]))[0, :, :h, :w].clamp(0, 1)
        frame = (out.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
        scores.append(psnr(frame, triplet.target))
        baseline.append(psnr(blend(triplet.frame0, triplet.frame1, triplet.t), triplet.target))
    model.train()
    return {"psnr": float(np.mean(scores)), "blend_psnr": float(np.mean(baseline)), "items": len(scores)}


def _state_paths(output: Path) -> Path:
    return output.with_name(output.name + ".train.pt")


def train(config: TrainConfig) -> dict:
    from tqdm import tqdm

    if config.vgg16_weights:
        raise SloMoError("the perceptual (VGG16) loss is not implemented yet; train without --vgg16-weights")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    output = Path(config.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    history: dict = {"steps": 0, "seconds": 0.0, "samples": 0, "validation": []}
    if config.resume:
        model = load_checkpoint(config.resume)
        state_path = _state_paths(Path(config.resume))
    else:
        model = SuperSloMo(width=config.width)
        state_path = None
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    if state_path is not None and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate
        history = json.loads(state["history"])
    elif config.resume:
        # The optimizer state is lost (e.g. only the shipped weights survive), but the step count
        # and validation record in the checkpoint's metadata still describe this model's training.
        meta = checkpoint_metadata(config.resume)
        history["steps"] = int(meta.get("trained_steps", 0))
        history["seconds"] = float(meta.get("train_seconds", 0.0))
        history["samples"] = int(meta.get("samples", 0))
        if meta.get("validation"):
            history["validation"].append(meta["validation"])
    pool = FramePool(config.data, (config.crop, config.crop_width or config.crop), config.max_gap, config.max_side, config.frames_per_source,
                     config.seed + history["steps"], config.static_fraction)

    def save() -> None:
        meta = {
            "trained_steps": history["steps"],
            "train_seconds": round(history["seconds"], 1),
            "samples": history["samples"],
            "crop": [config.crop, config.crop_width or config.crop],
            "batch": config.batch,
            "learning_rate": config.learning_rate,
            "max_side": config.max_side,
            "static_fraction": config.static_fraction,
            "data": [str(p) for p in config.data],
            "validation": history["validation"][-1] if history["validation"] else None,
        }
        save_checkpoint(model, output, metadata=meta)
        tmp = _state_paths(output).with_suffix(".tmp")
        torch.save({"optimizer": optimizer.state_dict(), "history": json.dumps(history)}, tmp)
        os.replace(tmp, _state_paths(output))

    log = open(config.log, "a") if config.log else None
    start_step = history["steps"]
    bar = tqdm(total=config.steps, initial=start_step, desc="train", disable=None)
    try:
        while history["steps"] < config.steps:
            began = time.perf_counter()
            f0, ft, f1, t = pool.batch(config.batch)
            loss, parts = training_loss(model, f0, ft, f1, t)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history["steps"] += 1
            history["samples"] += config.batch
            history["seconds"] += time.perf_counter() - began
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.2f}", rec=f"{parts['rec']:.4f}")
            if log:
                log.write(json.dumps({"step": history["steps"], "loss": loss.item(), **parts}) + "\n")
                log.flush()
            step = history["steps"]
            if config.validation and (step % config.validate_every == 0 or step == config.steps):
                result = {"step": step, **validate(model, config.validation)}
                history["validation"].append(result)
                bar.write(f"step {step}: validation PSNR {result['psnr']:.2f} dB (blend {result['blend_psnr']:.2f} dB)")
                if log:
                    log.write(json.dumps({"validation": result}) + "\n")
            if step % config.save_every == 0 or step == config.steps:
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
