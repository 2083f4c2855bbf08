"""The weights record: one model's files and facts in one place, torchvision-style.

A record names a checkpoint and everything that belongs to it: its scale table (`slomo scales`,
apps/scales.py), its accuracy report (what `--precision auto` may pick), its INT8 calibration clip
(quantized on the first `--precision int8`), and for a shipped model the sha256 it was measured
with, its model card, where its training recipe is documented and its headline figures.

The files beside a checkpoint are named by ONE rule, `WeightsRecord.for_checkpoint`: the
checkpoint's stem plus a suffix. Every place that reads or writes one of them asks `record_for`
(the shipped record when the path is a shipped checkpoint, else a record by that rule), so a
user's checkpoint gets the same treatment as the shipped one. A sibling file counts only when the
sha256 it carries is its checkpoint's (checked where it is read: apps/scales.py, apps/models.py).

Stdlib only: the CLI imports it to print its help.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"

# The one rule: a checkpoint's files are `<stem><suffix>` beside it.
SCALES_SUFFIX = ".scales.json"
REPORT_SUFFIX = ".precision.json"
CALIBRATION_SUFFIX = ".calibration.mp4"
# An exported model folder may hold its own accuracy report under this name.
FOLDER_REPORT = "precision.json"
# The shipped model as an exported ONNX folder, preferred when present (runs without PyTorch).
EXPORTED_FOLDER = "demo"


@dataclass(frozen=True)
class Metric:
    """A headline figure: the model's PSNR (dB) on an evaluation set through `slomo eval`, with the
    baselines measured on the same triplets."""

    data: str
    psnr: float
    baselines: Mapping[str, float] = field(default_factory=dict)

    def line(self) -> str:
        beside = ", ".join(f"{name} {value:.2f}" for name, value in self.baselines.items())
        return f"{self.data}: {self.psnr:.2f} dB" + (f" ({beside})" if beside else "")


@dataclass(frozen=True)
class WeightsRecord:
    """A checkpoint and its files. `sha256` is pinned for a shipped record (None for a user's
    checkpoint: nobody vouched for it); the facts below it apply only while the file matches it."""

    name: str
    checkpoint: Path
    scales: Path  # the scale table (apps/scales.py)
    precision: Path  # the accuracy report
    calibration: Path  # the INT8 calibration clip
    sha256: str | None = None
    card: Path | None = None
    recipe: str | None = None  # where the training recipe is documented
    metrics: tuple[Metric, ...] = ()

    @classmethod
    def for_checkpoint(cls, checkpoint: str | os.PathLike, **facts) -> WeightsRecord:
        """The record of any checkpoint: its files by the one rule (`<stem><suffix>` beside it)."""
        checkpoint = Path(checkpoint)

        def beside(suffix: str) -> Path:
            return checkpoint.with_name(checkpoint.stem + suffix)

        facts.setdefault("name", checkpoint.stem)
        return cls(
            checkpoint=checkpoint,
            scales=beside(SCALES_SUFFIX),
            precision=beside(REPORT_SUFFIX),
            calibration=beside(CALIBRATION_SUFFIX),
            **facts,
        )

    def files(self) -> dict[str, Path]:
        named = {
            "checkpoint": self.checkpoint,
            "scales": self.scales,
            "precision": self.precision,
            "calibration": self.calibration,
        }
        if self.card is not None:
            named["card"] = self.card
        return named

    def matches(self, sha256: str | None = None) -> bool:
        """Whether the checkpoint is the file this record was pinned to (`sha256`: its digest if
        already known). A record without a pin vouches for nothing, so False."""
        if self.sha256 is None or not self.checkpoint.is_file():
            return False
        if sha256 is None:
            from superslomo.contracts.files import file_sha256

            sha256 = file_sha256(self.checkpoint)
        return sha256 == self.sha256


SLOMO16 = WeightsRecord.for_checkpoint(
    WEIGHTS_DIR / "slomo16.safetensors",
    sha256="34badf8c79d6663fba639fc2c9daf81dfcb1363b6e18beb7344dbe21286f0a89",
    card=WEIGHTS_DIR / "MODEL_CARD.md",
    recipe="training/README.md (the campaign) and superslomo/weights/MODEL_CARD.md, 'Training recipe'",
    metrics=(
        Metric("ucf101_adacof", 33.14, MappingProxyType({"linear blend": 30.52, "minterpolate": 33.05})),
        Metric(
            "toflow_low_frame_rate", 32.38, MappingProxyType({"linear blend": 27.19, "minterpolate": 36.73})
        ),
    ),
)
# The registry of shipped models, and the one `slomo` runs when no --model is given. demo16 (shipped
# until 2026-12-03) is retired: docs/model_history/demo16.md.
SHIPPED: dict[str, WeightsRecord] = {"slomo16": SLOMO16}
DEFAULT = SLOMO16


def record_for(checkpoint: str | os.PathLike) -> WeightsRecord:
    """The record of this checkpoint: the shipped one when the path is a shipped checkpoint, else
    one by the rule of `WeightsRecord.for_checkpoint`."""
    path = Path(checkpoint)
    for record in SHIPPED.values():
        if record.checkpoint == path or record.checkpoint.resolve() == path.resolve():
            return record
    return WeightsRecord.for_checkpoint(path)


def shipped_checkpoint(weights_dir: Path = WEIGHTS_DIR) -> Path | None:
    """The shipped checkpoint: the default record's file, else (a folder given by hand, or the
    record's file replaced under another name) the first checkpoint in `weights_dir`."""
    if weights_dir == WEIGHTS_DIR and DEFAULT.checkpoint.is_file():
        return DEFAULT.checkpoint
    found = sorted(weights_dir.glob("*.safetensors")) if weights_dir.is_dir() else []
    return found[0] if found else None
