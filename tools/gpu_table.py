#!/usr/bin/env python3
"""Print the short table of a `make gpu-check` run from the JSON lines the GPU tests wrote."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(path: str = "out/gpu-check/results.jsonl") -> int:
    file = Path(path)
    if not file.is_file():
        print(
            "gpu-check: no GPU results "
            "(no GPU or no TensorRT here: the gpu tests were skipped; see reasons above)"
        )
        return 0
    rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    print(f"{'test':22s} {'model':8s} {'precision':9s} {'max abs err':>12s} {'tolerance':>10s}")
    for r in rows:
        print(
            f"{r['test']:22s} {r['model']:8s} {r['precision']:9s} {r['max_abs']:12.2e} {r['tolerance']:10.1e}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
