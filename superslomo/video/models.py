"""Which model `slomo interpolate` uses when none is named (torch-free: paths only)."""

from __future__ import annotations

from pathlib import Path

from superslomo.errors import SloMoError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


def default_model(weights_dir: Path = WEIGHTS_DIR) -> Path:
    """The model shipped with the package: an exported ONNX folder (`weights/demo/`, runs on the
    embedded onnxruntime) if present, else a safetensors checkpoint (needs the torch extra)."""
    folder = weights_dir / "demo"
    if (folder / "manifest.json").is_file():
        return folder
    checkpoints = sorted(weights_dir.glob("*.safetensors")) if weights_dir.is_dir() else []
    if checkpoints:
        return checkpoints[0]
    raise SloMoError(
        f"no model given and none shipped in {weights_dir}; pass --model DIR (from `slomo export`) "
        "or --model CHECKPOINT"
    )
