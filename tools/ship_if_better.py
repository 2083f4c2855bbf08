"""Ship a trained checkpoint as the default model only if it beats the shipped one (`make ship-check`).

    python tools/ship_if_better.py runs/gpu/gpu_train.safetensors            # evaluate, ship if better
    python tools/ship_if_better.py OUT/gpu_train.safetensors.part00 --dry-run  # parts are joined first

The candidate is converted to fp16 first (what ships; once: runs/ship/<stem>-fp16.safetensors, kept
while its source is the same file), then `slomo eval` (the path users get:
exported to ONNX, run on onnxruntime) measures it and the shipped default on every evaluation set,
with the linear blend and ffmpeg's minterpolate beside them. It ships when it beats the shipped
model's PSNR on every set and minterpolate's on `ucf101_adacof`. Measure the converted file's
scale table first (`slomo scales runs/ship/<stem>-fp16.safetensors --write ...`, docs/scales.md), or
the candidate is judged at full scale where the shipped model runs at its table's. When it ships,
the fp16 file goes into superslomo/weights/ with its scale table, the previous default moves to
runs/retired/ with the files of its weights record bound to its sha256 (scale table, accuracy
report; superslomo/apps/weights.py), its calibration clip is kept for the new model, and the model
card's History section gets a row with both models' figures. Exit 0: shipped (or would ship, with
--dry-run); 1: not better; 2: usage or input error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from superslomo.apps.weights import DEFAULT, WEIGHTS_DIR, WeightsRecord, record_for  # noqa: E402

EVALUATION_SETS = ("ucf101_adacof", "toflow_low_frame_rate")
MUST_BEAT_MINTERPOLATE = ("ucf101_adacof",)
WEIGHTS = WEIGHTS_DIR
CARD = DEFAULT.card or WEIGHTS / "MODEL_CARD.md"


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def join_parts(path: Path, into: Path) -> Path:
    """The checkpoint itself, or the file its parts (NAME.part00, NAME.part01, ...) join into."""
    if path.name.endswith(".part00"):
        path = path.with_name(path.name[: -len(".part00")])
    if path.is_file():
        return path
    parts = sorted(path.parent.glob(path.name + ".part[0-9][0-9]"))
    if not parts:
        fail(f"checkpoint not found: {path}")
    joined = into / path.name
    with open(joined, "wb") as handle:
        for part in parts:
            handle.write(part.read_bytes())
    return joined


def as_fp16_checkpoint(source: Path, into: Path) -> Path:
    """The candidate as it would ship: the project's format, fp16 weights (a .pt state dict from a
    machine without safetensors is converted too)."""
    import torch

    from superslomo.model.checkpoint import checkpoint_metadata, file_sha256, load_checkpoint, save_checkpoint
    from superslomo.model.slomo import ModelConfig, SuperSloMo

    if source.suffix == ".pt":
        data = torch.load(source, map_location="cpu", weights_only=True)
        config = ModelConfig.from_dict(json.loads(data["config"]))
        model = SuperSloMo(width=config.width, warp=config.warp)
        model.load_state_dict(data["state_dict"])
        meta = json.loads(data["metadata"])
    else:
        model = load_checkpoint(source)
        meta = checkpoint_metadata(source)
    target = into / f"{source.stem}-fp16.safetensors"
    source_sha256 = file_sha256(source)
    # Converted once: safetensors writes its header's keys in no fixed order, so a second
    # conversion would get another sha256 and lose what was measured on the first (its scale table).
    if target.is_file() and checkpoint_metadata(target).get("source_sha256") == source_sha256:
        return target
    meta = {"source": source.name, "source_sha256": source_sha256, **meta}
    save_checkpoint(model, target, metadata=meta, dtype=torch.float16)
    return target


def run_eval(data: Path, report: Path, model: Path | None, minterpolate: bool) -> dict:
    command = [sys.executable, "-m", "superslomo.cli", "eval", "--data", str(data), "--report", str(report)]
    if model is not None:
        command += ["--model", str(model)]
    if not minterpolate:
        command.append("--no-minterpolate")
    print("$ " + " ".join(command), file=sys.stderr, flush=True)
    done = subprocess.run(command, cwd=ROOT, text=True, capture_output=True)
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
        fail(f"slomo eval failed on {data}: {last}")
    return json.loads(report.read_text())


def decide(figures: dict[str, dict]) -> tuple[bool, list[str]]:
    """figures[set] = {"candidate", "shipped", "minterpolate", "blend"} PSNRs; (ship?, reasons)."""
    reasons = []
    for name, row in figures.items():
        if row["candidate"] <= row["shipped"]:
            reasons.append(
                f"{name}: {row['candidate']:.2f} dB does not beat the shipped {row['shipped']:.2f} dB"
            )
        if name in MUST_BEAT_MINTERPOLATE and row["candidate"] <= row["minterpolate"]:
            reasons.append(
                f"{name}: {row['candidate']:.2f} dB does not beat minterpolate's {row['minterpolate']:.2f} dB"
            )
    return not reasons, reasons


def history_row(date: str, old: Path, new: Path, figures: dict[str, dict]) -> str:
    def cells(key: str) -> str:
        return " / ".join(f"{figures[name][key]:.2f}" for name in EVALUATION_SETS)

    return (
        f"| {date} | `{old.name}`: {cells('shipped')} | `{new.name}`: {cells('candidate')} | "
        f"{cells('minterpolate')} | {cells('blend')} |"
    )


def record_history(row: str) -> None:
    sets = " / ".join(f"`{n}`" for n in EVALUATION_SETS)
    header = (
        "\n## History\n\nEach time `tools/ship_if_better.py` replaced the default model. PSNR (dB) "
        f"through `slomo eval`, {sets}.\n\n"
        "| date | replaced model | new model | minterpolate | linear blend |\n"
        "| --- | --- | --- | --- | --- |\n"
    )
    text = CARD.read_text() if CARD.is_file() else "# Shipped model\n"
    if "\n## History\n" not in text:
        text = text.rstrip("\n") + "\n" + header
    CARD.write_text(text.rstrip("\n") + "\n" + row + "\n")


def retire(old: WeightsRecord, new: WeightsRecord, retired: Path) -> list[Path]:
    """Move the old model's checkpoint and the files bound to its sha256 (scale table, accuracy
    report) into `retired` (a copy of the checkpoint when the new one takes its name); the
    calibration clip is footage, not weights: the new model keeps it. Returns what moved."""
    retired.mkdir(parents=True, exist_ok=True)
    moved = []
    shutil.copy2(old.checkpoint, retired / old.checkpoint.name)
    moved.append(old.checkpoint)
    if old.checkpoint.resolve() != new.checkpoint.resolve():
        old.checkpoint.unlink()
    for path in (old.scales, old.precision):
        if path.is_file():
            shutil.move(path, retired / path.name)
            moved.append(path)
    if old.calibration.is_file() and old.calibration.resolve() != new.calibration.resolve():
        shutil.move(old.calibration, new.calibration)
    return moved


def shipped_name(candidate: Path) -> str:
    """The shipped file's name: slomo<width>."""
    from superslomo.model.checkpoint import inspect_checkpoint

    return f"slomo{inspect_checkpoint(candidate).width}"


def carry_scale_table(candidate: Path, target: Path) -> Path | None:
    """The candidate's scale table (`slomo scales --write` on the converted file, before shipping,
    so that the evaluation ran it as jobs will), moved beside the shipped file under its name. The
    table stays bound to the same bytes (sha256); only its `model` field names the new file."""
    table_path, target_table = record_for(candidate).scales, record_for(target).scales
    if not table_path.is_file():
        return None
    table = json.loads(table_path.read_text())
    table["model"] = target.name
    target_table.write_text(json.dumps(table, indent=1) + "\n")
    return target_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoint, its .part00, or a .pt from gpu_train")
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument(
        "--name", default=None, help="file name in superslomo/weights (default: slomo<width>)"
    )
    parser.add_argument(
        "--work", type=Path, default=ROOT / "runs" / "ship", help="reports and converted files"
    )
    parser.add_argument("--dry-run", action="store_true", help="evaluate and decide, change nothing")
    args = parser.parse_args(argv)

    from superslomo.apps.models import default_model

    args.work.mkdir(parents=True, exist_ok=True)
    shipped = default_model()
    if not shipped.is_file():
        fail(f"the shipped default {shipped} is not a checkpoint; replace it by hand")
    candidate = as_fp16_checkpoint(join_parts(args.checkpoint, args.work), args.work)
    figures: dict[str, dict] = {}
    for name in EVALUATION_SETS:
        data = args.data_root / name
        if not data.exists():
            fail(f"evaluation set not found: {data}")
        base = run_eval(data, args.work / f"{name}-shipped.json", None, minterpolate=True)
        new = run_eval(data, args.work / f"{name}-candidate.json", candidate, minterpolate=False)
        figures[name] = {
            "candidate": new["psnr"],
            "shipped": base["psnr"],
            "minterpolate": base["minterpolate"]["psnr"],
            "blend": base["baseline"]["psnr"],
        }
    print(f"{'set':24s} {'candidate':>9s} {'shipped':>9s} {'minterp.':>9s} {'blend':>9s}")
    for name, row in figures.items():
        print(
            f"{name:24s} {row['candidate']:9.2f} {row['shipped']:9.2f} {row['minterpolate']:9.2f} "
            f"{row['blend']:9.2f}"
        )
    decision = {"candidate": str(args.checkpoint), "figures": figures}
    (args.work / "decision.json").write_text(json.dumps(decision, indent=1))
    ok, reasons = decide(figures)
    if not ok:
        print("not shipped:\n  " + "\n  ".join(reasons))
        return 1
    target = WEIGHTS / f"{Path(args.name or shipped_name(candidate)).stem}.safetensors"
    if args.dry_run:
        print(f"would ship {candidate} as {target} (replacing {shipped.name}); --dry-run changed nothing")
        return 0
    retired = ROOT / "runs" / "retired"
    retire(record_for(shipped), record_for(target), retired)
    shutil.copy2(candidate, target)
    carry_scale_table(candidate, target)
    record_history(history_row(datetime.date.today().isoformat(), shipped, target, figures))
    if default_model().resolve() != target.resolve():
        fail(f"shipped {target}, but the default model resolves to {default_model()}; check {WEIGHTS}", 1)
    print(
        f"shipped {target} (the previous {shipped.name} is in {retired}); History row added to {CARD}. "
        "Update the card's tables and recipe, the record in superslomo/apps/weights.py (SHIPPED, "
        "DEFAULT: file, sha256, metrics), and the tests that name the old file."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
