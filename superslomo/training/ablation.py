"""Each lever of the campaign's recipe measured on its own, at equal CPU minutes.

    python -m superslomo.training.ablation --minutes 8      # every variant, one after another

Every variant starts from the same checkpoint (default: the recipe's `init`), with a fresh
optimiser, trains `--minutes` wall minutes on the recipe's one thread with the recipe's options
but one lever changed, and is judged by the recipe's validation at the end of its window (the clip
the campaign validates on; never an evaluation set): its weight average where it keeps one, and
its raw weights, which is what compares variants in a short window. The table is written
to `<out>/table.md` and printed; training/README.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from superslomo.errors import SloMoError
from superslomo.model.checkpoint import checkpoint_metadata, load_checkpoint
from superslomo.training.campaign import load_recipe, recipe_config
from superslomo.training.loop import ValidationSet, train, validation_triplets

RECIPE_VARIANT = "the recipe"
VARIANTS: dict[str, dict] = {
    RECIPE_VARIANT: {},
    "without synthetic motion": {"synthetic": 0.0},
    "without teacher labels": {"labelled": 0.0},
    "with the census loss (0.1)": {"census_weight": 0.1},
    "the paper's losses only": {"synthetic": 0.0, "labelled": 0.0, "ema_decay": 0.0},
}


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def run_ablation(
    minutes: float,
    root: Path = Path("."),
    start: Path | None = None,
    out: Path = Path("runs/ablation"),
    variants: dict[str, dict] | None = None,
) -> list[dict]:
    """Train and judge each variant from `start`; returns the table's rows."""
    root = root.resolve()
    recipe = load_recipe(root)
    start = start or root / recipe["init"]
    if not start.is_file():
        raise SloMoError(f"ablation: no starting checkpoint at {start}")
    out = root / out
    out.mkdir(parents=True, exist_ok=True)
    start_steps = int(checkpoint_metadata(start).get("trained_steps", 0))
    rows = []
    validation = None  # the raw weights' judge: one set of triplets and baselines for all variants
    for name, changes in (variants or VARIANTS).items():
        checkpoint = out / f"{_slug(name)}.safetensors"
        for stale in out.glob(checkpoint.name + "*"):  # a fresh optimiser: no state of an earlier run
            stale.unlink()
        shutil.copyfile(start, checkpoint)
        config = recipe_config(root, recipe, checkpoint, minutes, log=out / f"{_slug(name)}.jsonl", **changes)
        history = train(config)
        judged = history["validation"][-1]
        row = {
            "variant": name,
            "changes": changes,
            "steps": history["steps"] - start_steps,
            "psnr": judged["psnr"],
            "blend_psnr": judged.get("blend_psnr"),
            "minterpolate_psnr": judged.get("minterpolate_psnr"),
        }
        if config.ema_decay:
            # A short window's average still leans on the start (0.999^700 ~ 0.5): judge the raw
            # weights too, or every variant looks like its starting point.
            if validation is None:
                triplets = validation_triplets(config.validation, config.validation_count)
                validation = ValidationSet(triplets, source=config.validation)
            row["raw_psnr"] = validation.evaluate(load_checkpoint(checkpoint))["psnr"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    table = markdown_table(rows, minutes, start)
    (out / "table.md").write_text(table)
    (out / "rows.json").write_text(json.dumps(rows, indent=1) + "\n")
    return rows


def markdown_table(rows: list[dict], minutes: float, start: Path) -> str:
    lines = [
        f"Each variant: {minutes:g} min on one thread from `{start.name}` with a fresh optimiser, judged "
        "at the window's end: the weight average (what the campaign keeps) and the raw weights.",
        "",
        "| variant | steps | average dB | raw dB | raw vs the recipe's raw |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    recipe = next((r for r in rows if r["variant"] == RECIPE_VARIANT), None)
    for row in rows:
        averaged = row["psnr"] if "raw_psnr" in row else None
        raw = row.get("raw_psnr", row["psnr"])
        versus = "" if recipe is None else f"{raw - recipe.get('raw_psnr', recipe['psnr']):+.2f}"
        shown = "-" if averaged is None else f"{averaged:.2f}"
        lines.append(f"| {row['variant']} | {row['steps']} | {shown} | {raw:.2f} | {versus} |")
    first = rows[0] if rows else {}
    if first.get("blend_psnr") is not None:
        beside = f"linear blend {first['blend_psnr']:.2f} dB"
        if first.get("minterpolate_psnr") is not None:
            beside += f", minterpolate {first['minterpolate_psnr']:.2f} dB"
        lines += ["", f"On the same triplets: {beside}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, required=True, help="training minutes per variant")
    parser.add_argument("--start", type=Path, default=None, help="default: the recipe's init")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--only", action="append", default=None, help="a variant's name (repeatable)")
    args = parser.parse_args(argv)
    if not args.minutes > 0:
        parser.error(f"--minutes must be positive, got {args.minutes}")
    chosen = VARIANTS
    if args.only:
        missing = [n for n in args.only if n not in VARIANTS]
        if missing:
            parser.error(f"unknown variant {missing[0]!r}; choose from {', '.join(map(repr, VARIANTS))}")
        chosen = {n: VARIANTS[n] for n in args.only}
    try:
        rows = run_ablation(args.minutes, start=args.start, out=args.out, variants=chosen)
    except SloMoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(markdown_table(rows, args.minutes, args.start or Path(load_recipe(Path(".").resolve())["init"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
