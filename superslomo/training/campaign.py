"""A training campaign: one recipe that resumes across sessions, in windows of a given length.

The recipe is `training/campaign.json` (committed): the data, the validation clip, the training
options and where the best model is kept. The working state (checkpoint, Adam's moments, logs) lives
in `runs/campaign/` (ignored) while a session runs. The best model so far (by the recipe's
validation) is one fp16 file in the repository, replaced only when a validation beats it, so the
next session starts from it even on a fresh machine, and the history grows by one file version per
improvement.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from superslomo.errors import SloMoError
from superslomo.model.checkpoint import checkpoint_metadata, save_checkpoint
from superslomo.training.loop import TrainConfig, train

RECIPE = Path("training/campaign.json")
RUN_FOLDER = Path("runs/campaign")
CHECKPOINT_NAME = "latest.safetensors"
# Options of the recipe's "train" object that are TrainConfig fields; anything else is refused so
# a typo does not silently train with a default.
TRAIN_KEYS = {
    "crop",
    "batch",
    "max_side",
    "learning_rate",
    "validate_every",
    "save_minutes",
    "threads",
    "synthetic",
    "flow_weight",
    "census_weight",
    "ema_decay",
    "teacher",
    "max_gap",
    "frames_per_source",
    "validation_count",
    "photos",
    "labels",
    "labelled",
}


def load_recipe(root: Path) -> dict:
    path = root / RECIPE
    if not path.is_file():
        raise SloMoError(f"no campaign recipe at {path}")
    recipe = json.loads(path.read_text())
    unknown = set(recipe.get("train", {})) - TRAIN_KEYS
    if unknown:
        raise SloMoError(f"{path}: unknown training option(s) {', '.join(sorted(unknown))}")
    return recipe


def best_psnr(path: Path) -> float | None:
    """The validation PSNR recorded in a checkpoint's metadata, if any."""
    if not path.is_file():
        return None
    validation = checkpoint_metadata(path).get("validation") or {}
    value = validation.get("psnr")
    return float(value) if value is not None else None


def _start_checkpoint(root: Path, recipe: dict, run: Path) -> Path:
    """The working checkpoint: the run folder's own when a window already ran on this machine,
    else a copy of the best kept in the repository, else the recipe's starting point."""
    latest = run / CHECKPOINT_NAME
    if latest.is_file():
        return latest
    run.mkdir(parents=True, exist_ok=True)
    for candidate in (root / recipe["best"], root / recipe["init"]):
        if candidate.is_file():
            shutil.copyfile(candidate, latest)
            return latest
    raise SloMoError(f"campaign: neither {recipe['best']} nor {recipe['init']} exists")


def _present(root: Path, paths: list[str]) -> list[str]:
    """The recipe's photo folders that exist on this machine (`make training-data` makes them)."""
    found = [str(root / p) for p in paths if (root / p).exists()]
    for missing in sorted(set(paths) - {str(Path(p).relative_to(root)) for p in found}):
        print(f"campaign: no photos in {missing} (make training-data); training without them")
    return found


def _labels(root: Path, options: dict) -> dict:
    """The recipe's teacher labels when they were made on this machine (`make training-data`);
    without them the window trains on the other levers and says so."""
    if not options.get("labelled"):
        return {}
    path = root / options["labels"]
    if not (path / "labels.npz").is_file():
        print(
            f"campaign: no teacher labels in {options['labels']} (make training-data); training without them"
        )
        return {}
    return {"labels": str(path), "labelled": float(options["labelled"])}


def recipe_config(
    root: Path,
    recipe: dict,
    checkpoint: Path,
    minutes: float,
    log: Path | None = None,
    on_validation=None,
    **changes,
) -> TrainConfig:
    """The recipe as a training run of `minutes` that resumes `checkpoint` and writes it back;
    `changes` override the recipe's training options (an ablation turns one lever at a time)."""
    options = {**recipe.get("train", {}), **changes}
    unknown = set(changes) - TRAIN_KEYS
    if unknown:
        raise SloMoError(f"unknown training option(s) {', '.join(sorted(unknown))}")
    return TrainConfig(
        data=[str(root / p) for p in recipe["data"]],
        output=str(checkpoint),
        resume=str(checkpoint),
        validation=str(root / recipe["validation"]),
        steps=10**9,
        max_minutes=minutes,
        log=str(log) if log else None,
        on_validation=on_validation,
        **{k: v for k, v in options.items() if k not in ("photos", "labels", "labelled")},
        photos=_present(root, options.get("photos", [])),
        **_labels(root, options),
    )


def run_window(minutes: float, root: Path = Path("."), run: Path | None = None) -> dict:
    """Train for `minutes` from where the campaign stands; keep the best model in the repository."""
    root = root.resolve()
    recipe = load_recipe(root)
    run = root / (run or RUN_FOLDER)
    latest = _start_checkpoint(root, recipe, run)
    best_path = root / recipe["best"]
    # The bar: the best kept so far, else what the starting checkpoint scored on the same triplets.
    kept = [best_psnr(best_path) or best_psnr(root / recipe["init"])]

    def keep_if_better(model, result: dict, metadata: dict) -> None:
        if kept[0] is not None and result["psnr"] <= kept[0]:
            return
        # fp16 halves the file; a resumed run loads it into fp32 (Adam's moments stay in runs/).
        save_checkpoint(model, best_path, metadata=metadata, dtype=torch.float16)
        kept[0] = result["psnr"]
        print(
            f"campaign: step {result['step']} is the best so far "
            f"({result['psnr']:.2f} dB): kept in {recipe['best']}"
        )

    config = recipe_config(
        root, recipe, latest, minutes, log=run / "train.jsonl", on_validation=keep_if_better
    )
    began = time.monotonic()
    history = train(config)
    return {"steps": history["steps"], "minutes": (time.monotonic() - began) / 60, "best_psnr": kept[0]}


def start_background(minutes: float, root: Path = Path(".")) -> tuple[int, Path]:
    """Start a window as a niced background process that outlives this one; returns (pid, log)."""
    root = root.resolve()
    load_recipe(root)  # refuse a bad recipe here, not in a log nobody reads
    run = root / RUN_FOLDER
    run.mkdir(parents=True, exist_ok=True)
    log = run / "train.out"
    command = [sys.executable, "-m", "superslomo.cli", "campaign", "--minutes", str(minutes), "--foreground"]
    with open(log, "a") as out:
        process = subprocess.Popen(
            ["nice", "-n", "19", *command],
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the starting shell does not reach it
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return process.pid, log
