"""Train Super SloMo in one short window on a lent GPU (`make gpu-train`), from a pack.

    python tools/gpu_train.py --pack runs/pack --out "$OUT"              # H100/H200, ~9 minutes
    python tools/gpu_train.py --pack runs/pack --out /tmp/dry --device cpu --steps 3 --batch 2 --crop 64

Runs where our venv does not: it needs torch and numpy (and safetensors to write the project's
format; without it the weights go into a .pt state dict), with the repository on PYTHONPATH or
installed with `pip install --no-deps -e .`. The pack (tools/make_train_pack.py) carries the frames,
the validation triplets with their baselines, and the teacher's weights; nothing is downloaded.

What it does, in one wall-clock budget (--minutes, everything included):
1. frames onto the device as uint8, crops cut there (the host would not keep up with the GPU);
2. the batch: with --batch auto, a probe times one step at batch 8, 16, 32, ... until memory
   runs out or passes 85% of the device, and keeps the smallest batch within 10% of the best
   throughput. The largest batch that fits (--batch max) processes no more samples per second
   past that knee, it only divides the number of optimizer steps a 10-minute window allows;
3. Adam with a linear warm-up and a cosine decay over the time budget, bf16 autocast for the
   U-Nets (the warp samples in float32 whatever the autocast: model/warp.py), channels-last, the
   teacher in float32 outside autocast (bf16 flows would be ~0.5 px coarse at 100 px);
4. validation on the pack's held-out triplets every --validate-seconds, next to the blend and
   minterpolate figures computed when the pack was made;
5. the checkpoint (fp32, project format) and the losses JSON written to --out every
   --save-seconds and at the end; --max-file-mib splits a checkpoint too large for the channel
   that carries files back into numbered parts, which tools/ship_if_better.py joins.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for entry in (str(ROOT), str(ROOT / "tools")):
    if entry not in sys.path:
        sys.path.insert(0, entry)

import numpy as np  # noqa: E402
import torch  # noqa: E402

CHECKPOINT_NAME = "gpu_train.safetensors"
LOSSES_NAME = "gpu_train_losses.json"
BATCH_CANDIDATES = (8, 16, 32, 64, 128, 256, 512, 1024)
MEMORY_FRACTION = 0.85
KNEE = 0.9
BASE_LR, BASE_BATCH, MAX_LR = 1e-4, 4, 5e-4
WARMUP_FRACTION = 0.05
FINAL_LR_FRACTION = 0.1
# Seconds kept back from the budget for the final validation and save.
RESERVE_SECONDS = 25.0


class DeviceSampler:
    """(I0, It, I1, t, real) crops cut from frame runs that live on the device.

    The same sampling as model/train.py's FramePool (gaps 2..max_gap with k/gap, or with
    `teacher_frames` consecutive frames at a random t for the teacher; time reversal and flips),
    with the index choices made on the host and the pixels never leaving the device.
    """

    def __init__(
        self,
        clips: list[np.ndarray],
        crop: tuple[int, int],
        max_gap: int,
        teacher_frames: float,
        any_t: bool,
        device: torch.device,
        seed: int,
    ):
        self.crop_h, self.crop_w = crop
        usable = [c for c in clips if len(c) >= 3 and c.shape[1] >= self.crop_h and c.shape[2] >= self.crop_w]
        if not usable:
            raise SystemExit(f"error: no frame run of the pack is at least {self.crop_w}x{self.crop_h}")
        self.clips = [torch.from_numpy(np.ascontiguousarray(c)).to(device) for c in usable]
        lengths = np.array([len(c) for c in usable], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        self.max_gap = max_gap
        self.teacher_frames = teacher_frames
        self.any_t = any_t
        self.device = device
        self.rng = np.random.default_rng(seed)

    def _one(self):
        rng = self.rng
        clip = self.clips[rng.choice(len(self.clips), p=self.weights)]
        from_teacher = bool(self.teacher_frames and rng.random() < self.teacher_frames)
        if from_teacher:
            gap, k = 1, 1
            t = float(rng.uniform(0.05, 0.95)) if self.any_t else float(rng.choice((0.25, 0.5, 0.75)))
        else:
            gap = int(rng.integers(2, min(self.max_gap, len(clip) - 1) + 1))
            k = int(rng.integers(1, gap))
            t = k / gap
        start = int(rng.integers(0, len(clip) - gap))
        y = int(rng.integers(0, clip.shape[1] - self.crop_h + 1))
        x = int(rng.integers(0, clip.shape[2] - self.crop_w + 1))
        window = clip[start : start + gap + 1, y : y + self.crop_h, x : x + self.crop_w]
        f0, ft, f1 = window[0], window[k], window[gap]
        if rng.random() < 0.5:
            f0, f1, t = f1, f0, 1.0 - t
        dims = [d for d, flip in ((1, rng.random() < 0.5), (0, rng.random() < 0.5)) if flip]
        frames = torch.stack((f0, ft, f1))
        if dims:
            frames = torch.flip(frames, [d + 1 for d in dims])
        return frames, t, not from_teacher

    def batch(self, size: int):
        items = [self._one() for _ in range(size)]
        frames = torch.stack([item[0] for item in items])  # [N,3,H,W,C] uint8
        frames = frames.permute(1, 0, 4, 2, 3).float().div_(255.0)
        f0, ft, f1 = (frames[i].contiguous(memory_format=torch.channels_last) for i in range(3))
        t = torch.tensor([item[1] for item in items], dtype=torch.float32, device=self.device)
        real = torch.tensor([item[2] for item in items], device=self.device)
        ft = ft * real.view(-1, 1, 1, 1)  # no true frame: zeros until the teacher's replaces them
        return f0, ft, f1, t, real


def learning_rate(peak: float, progress: float) -> float:
    if progress < WARMUP_FRACTION:
        return peak * max(progress / WARMUP_FRACTION, 0.01)
    span = (progress - WARMUP_FRACTION) / (1.0 - WARMUP_FRACTION)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(span, 1.0)))
    return peak * (FINAL_LR_FRACTION + (1.0 - FINAL_LR_FRACTION) * cosine)


def split_file(path: Path, max_mib: float) -> list[Path]:
    """Cut `path` into parts of at most `max_mib` (path.part00, ...) and remove it; [] if it fits."""
    limit = int(max_mib * (1 << 20))
    if path.stat().st_size <= limit:
        return []
    for old in path.parent.glob(path.name + ".part*"):
        old.unlink()
    parts = []
    with open(path, "rb") as handle:
        for index, block in enumerate(iter(lambda: handle.read(limit), b"")):
            part = path.with_name(f"{path.name}.part{index:02d}")
            part.write_bytes(block)
            parts.append(part)
    path.unlink()
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pack", default="runs/pack")
    parser.add_argument(
        "--out", default=os.environ.get("OUT") or "runs/gpu", help="default: $OUT, else runs/gpu"
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--minutes", type=float, default=9.0, help="wall-clock budget, start-up included")
    parser.add_argument("--steps", type=int, default=None, help="stop after this many steps (dry runs)")
    parser.add_argument(
        "--batch", default="auto", help="auto (throughput knee), max (largest that fits) or N"
    )
    parser.add_argument("--max-batch", type=int, default=BATCH_CANDIDATES[-1])
    parser.add_argument("--crop", type=int, default=224, help="crop height (a multiple of 32)")
    parser.add_argument("--crop-width", type=int, default=None, help="default: square")
    parser.add_argument("--width", type=int, default=16, help="network width (16 ships on CPUs; 32 = paper)")
    parser.add_argument(
        "--init", default=None, help="start from this checkpoint's weights (its warp is kept)"
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"peak learning rate; default {BASE_LR:g} x sqrt(batch / {BASE_BATCH}), at most {MAX_LR:g}",
    )
    parser.add_argument("--max-gap", type=int, default=4)
    parser.add_argument("--teacher", choices=("pack", "none"), default="pack", help="use the pack's teacher")
    parser.add_argument("--distill-weight", type=float, default=None)
    parser.add_argument("--teacher-frames", type=float, default=None)
    parser.add_argument("--teacher-mask", type=float, default=None)
    parser.add_argument(
        "--amp", choices=("bf16", "none"), default=None, help="default: bf16 on cuda, none on cpu"
    )
    parser.add_argument("--validate-seconds", type=float, default=90.0)
    parser.add_argument("--save-seconds", type=float, default=120.0)
    parser.add_argument(
        "--max-file-mib", type=float, default=None, help="split a larger checkpoint into parts"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    began = time.monotonic()
    budget = 60.0 * args.minutes

    from make_train_pack import load_pack

    from superslomo.model.checkpoint import checkpoint_metadata, file_sha256, load_checkpoint, save_checkpoint
    from superslomo.model.slomo import SuperSloMo
    from superslomo.training.loop import (
        DISTILL_WEIGHT,
        NEW_MODEL_WARP,
        TEACHER_FRAMES,
        TEACHER_MASK_THRESHOLD,
        TeacherSettings,
        ValidationSet,
        loss_weights,
        merge_targets,
        teacher_targets,
        training_loss,
        validation_line,
    )

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device here; pass --device cpu for a dry run")
    amp = (args.amp or ("bf16" if device.type == "cuda" else "none")) == "bf16"
    crop = (args.crop, args.crop_width or args.crop)
    if min(crop) < 32 or crop[0] % 32 or crop[1] % 32:
        raise SystemExit(f"error: crops must be multiples of 32, got {crop[1]}x{crop[0]}")
    torch.manual_seed(args.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    pack = load_pack(args.pack)
    print(
        f"pack {args.pack}: {len(pack.clips)} runs, {len(pack.validation)} validation triplets "
        f"({time.monotonic() - began:.0f} s)",
        flush=True,
    )

    if args.init:
        model = load_checkpoint(args.init)
        init_meta = checkpoint_metadata(args.init)
        start_steps, start_samples = int(init_meta.get("trained_steps", 0)), int(init_meta.get("samples", 0))
    else:
        model = SuperSloMo(width=args.width, warp=NEW_MODEL_WARP)
        start_steps = start_samples = 0
    model = model.to(device).to(memory_format=torch.channels_last).train()

    teacher = settings = None
    if args.teacher == "pack" and pack.teacher_state is not None:
        from superslomo.training.teacher import teacher_from_state_dict

        variant = pack.manifest["teacher"]["variant"]
        teacher = teacher_from_state_dict(pack.teacher_state, variant, source=f"{args.pack}/teacher.pt")
        teacher = teacher.to(device)
        settings = TeacherSettings(
            variant,
            DISTILL_WEIGHT if args.distill_weight is None else args.distill_weight,
            TEACHER_FRAMES if args.teacher_frames is None else args.teacher_frames,
            TEACHER_MASK_THRESHOLD if args.teacher_mask is None else args.teacher_mask,
            sha256=pack.manifest["teacher"]["source_sha256"],
        )
    sampler = DeviceSampler(
        pack.clips,
        crop,
        args.max_gap,
        settings.teacher_frames if settings else 0.0,
        getattr(teacher, "any_t", True),
        device,
        args.seed,
    )
    validation = ValidationSet(
        pack.validation,
        baselines=pack.manifest["validation"]["baselines"],
        source=pack.manifest["validation"]["source"],
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=BASE_LR)

    def step(size: int, lr: float) -> dict:
        for group in optimizer.param_groups:
            group["lr"] = lr
        f0, ft, f1, t, real = sampler.batch(size)
        targets = None
        if teacher is not None and settings is not None:
            targets = teacher_targets(
                teacher, f0, f1, t, real, ft, model.config.warp, settings.mask_threshold
            )
            ft = merge_targets(ft, real, targets)
        weight = settings.distill_weight if settings else 0.0
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, parts = training_loss(model, f0, ft, f1, t, targets, weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item(), **parts}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    probe: list[dict] = []
    if args.batch in ("auto", "max"):
        saved_model = copy.deepcopy(model.state_dict())
        saved_optimizer = copy.deepcopy(optimizer.state_dict())
        total = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None
        for size in [b for b in BATCH_CANDIDATES if b <= args.max_batch]:
            try:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                step(size, 0.0)  # cudnn picks its algorithms for this shape
                sync()
                tick = time.perf_counter()
                for _ in range(2):
                    step(size, 0.0)
                sync()
                seconds = (time.perf_counter() - tick) / 2
            except torch.cuda.OutOfMemoryError:
                probe.append({"batch": size, "fits": False})
                break
            finally:
                optimizer.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            peak = torch.cuda.max_memory_allocated(device) if total else None
            row = {
                "batch": size,
                "fits": True,
                "seconds": round(seconds, 4),
                "samples_per_s": round(size / seconds, 1),
                "peak_gib": round(peak / 2**30, 2) if peak else None,
            }
            probe.append(row)
            print(
                f"probe: batch {size}: {row['samples_per_s']} samples/s, peak {row['peak_gib']} GiB",
                flush=True,
            )
            if total and peak > MEMORY_FRACTION * total:
                break
            if device.type != "cuda" or time.monotonic() - began > 0.25 * budget:
                break
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optimizer)
        fitting = [row for row in probe if row["fits"]]
        if total:  # the last probe may have fitted only just: keep headroom for fragmentation
            roomy = [row for row in fitting if row["peak_gib"] * 2**30 <= MEMORY_FRACTION * total]
            fitting = roomy or fitting[:1]
        if not fitting:
            raise SystemExit("error: not even the smallest batch fits")
        if args.batch == "max":
            batch = fitting[-1]["batch"]
        else:
            best = max(row["samples_per_s"] for row in fitting)
            batch = next(row["batch"] for row in fitting if row["samples_per_s"] >= KNEE * best)
    else:
        batch = int(args.batch)
    peak_lr = args.lr or min(MAX_LR, BASE_LR * math.sqrt(batch / BASE_BATCH))
    print(
        f"batch {batch}, peak learning rate {peak_lr:.2e}, amp {'bf16' if amp else 'off'}, "
        f"teacher {settings.variant if settings else 'none'}",
        flush=True,
    )

    history: dict = {
        "trainer": "tools/gpu_train.py",
        "args": vars(args),
        "batch": batch,
        "peak_lr": peak_lr,
        "probe": probe,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "losses": [],
        "validation": [],
        "steps": 0,
        "samples": 0,
    }
    checkpoint_path = out / CHECKPOINT_NAME

    def save(final: bool = False) -> None:
        last = history["validation"][-1] if history["validation"] else None
        meta = {
            "trainer": "tools/gpu_train.py",
            "trained_steps": start_steps + history["steps"],
            "samples": start_samples + history["samples"],
            "train_seconds": round(history.get("train_seconds", 0.0), 1),
            "device": history["device"],
            "batch": batch,
            "peak_learning_rate": peak_lr,
            "schedule": "linear warm-up, cosine to 10% over the budget",
            "crop": list(crop),
            "amp": "bf16" if amp else "none",
            "init": {"path": args.init, "sha256": file_sha256(args.init)} if args.init else None,
            "data": [clip["source"] for clip in pack.manifest["clips"]],
            "pack_frames_sha256": pack.manifest.get("frames_sha256"),
            "teacher": settings.to_metadata() if settings else None,
            "loss_weights": loss_weights(settings),
            "validation_data": pack.manifest["validation"]["source"],
            "validation": last,
        }
        try:
            save_checkpoint(model, checkpoint_path, metadata=meta)
            written = checkpoint_path
        except ImportError:  # no safetensors here: a plain state dict that weights_only loading accepts
            written = checkpoint_path.with_suffix(".pt")
            torch.save(
                {
                    "state_dict": model.state_dict(),
                    "config": json.dumps(model.config.to_dict()),
                    "metadata": json.dumps(meta),
                },
                written,
            )
        parts = split_file(written, args.max_file_mib) if args.max_file_mib else []
        history["checkpoint"] = [p.name for p in parts] or [written.name]
        tmp = out / (LOSSES_NAME + ".tmp")
        tmp.write_text(json.dumps({**history, "final": final}, indent=1))
        os.replace(tmp, out / LOSSES_NAME)

    train_start = time.monotonic()
    end = began + budget - RESERVE_SECONDS
    last_validation = last_save = last_log = train_start
    sums: dict[str, float] = {}
    count = 0
    while True:
        now = time.monotonic()
        progress = (now - train_start) / max(end - train_start, 1e-6)
        if args.steps is not None:
            progress = max(progress, history["steps"] / args.steps)
        if progress >= 1.0:
            break
        lr = learning_rate(peak_lr, progress)
        parts = step(batch, lr)
        history["steps"] += 1
        history["samples"] += batch
        count += 1
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value
        now = time.monotonic()
        if now - last_log > 10.0 or (args.steps is not None and history["steps"] >= args.steps):
            row = {
                "step": history["steps"],
                "seconds": round(now - began, 1),
                "lr": lr,
                **{k: v / count for k, v in sums.items()},
            }
            history["losses"].append(row)
            print(
                f"step {row['step']} ({row['seconds']} s): loss {row['loss']:.3f}, rec {row['rec']:.4f}"
                + (f", distill {row['distill']:.3f}" if "distill" in row else ""),
                flush=True,
            )
            sums, count, last_log = {}, 0, now
        history["train_seconds"] = now - train_start
        if now - last_validation > args.validate_seconds:
            result = {"step": history["steps"], **validation.evaluate(model)}
            history["validation"].append(result)
            print(validation_line(history["steps"], result), flush=True)
            last_validation = time.monotonic()
        if now - last_save > args.save_seconds:
            save()
            last_save = time.monotonic()
    if count:
        history["losses"].append(
            {
                "step": history["steps"],
                "seconds": round(time.monotonic() - began, 1),
                **{k: v / count for k, v in sums.items()},
            }
        )
    result = {"step": history["steps"], **validation.evaluate(model)}
    history["validation"].append(result)
    print(validation_line(history["steps"], result), flush=True)
    save(final=True)
    print(
        f"wrote {', '.join(history['checkpoint'])} and {LOSSES_NAME} to {out}: {history['steps']} steps, "
        f"{history['samples']} samples in {time.monotonic() - began:.0f} s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
