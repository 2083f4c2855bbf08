"""The weights record (apps/weights.py): the shipped model's files and facts in one place, and
one rule naming the files beside any checkpoint, which every job reads through."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from superslomo.apps import weights
from superslomo.contracts.files import file_sha256

ROOT = Path(__file__).resolve().parents[1]
HD = {"flow": 0.25, "interp": 0.5}


def write_table(path: Path, sha: str) -> None:
    bands = [{"band": "720p", "from_height": 600, "scales": HD}]
    path.write_text(json.dumps({"sha256": sha, "bands": bands}))


def write_report(path: Path, sha: str) -> None:
    path.write_text(json.dumps({"sha256": sha, "candidates": {"openvino/bf16": {"drop_db": 0.0}}}))


@pytest.fixture
def checkpoint(tmp_path):
    """A stand-in checkpoint: the record and its files care about its name and its sha256 only."""
    path = tmp_path / "mine.safetensors"
    path.write_bytes(b"my weights")
    return path


def test_the_default_record_is_the_shipped_file_with_its_files_and_figures():
    from superslomo.apps.models import default_model

    record = weights.DEFAULT
    assert weights.SHIPPED[record.name] is record
    for key, path in record.files().items():
        assert path.is_file(), f"{key}: {path}"
    assert record.sha256 == file_sha256(record.checkpoint) and record.matches()
    assert default_model() == record.checkpoint and weights.record_for(default_model()) is record
    # The sibling files carry the same sha256 (read_table / accuracy_report check it per job).
    assert json.loads(record.scales.read_text())["sha256"] == record.sha256
    assert json.loads(record.precision.read_text())["sha256"] == record.sha256
    # The headline figures are the card's, and the recipe is where the record says.
    card = record.card.read_text()
    assert "## Training recipe" in card and "Training recipe" in record.recipe
    ucf = next(m for m in record.metrics if m.data == "ucf101_adacof")
    assert f"| {ucf.psnr:.2f} /" in card and f"| {ucf.baselines['linear blend']:.2f} /" in card
    assert f"{ucf.baselines['minterpolate']:.2f} dB on `ucf101_adacof`" in card


def test_a_record_pinned_to_other_bytes_vouches_for_nothing(checkpoint):
    record = weights.WeightsRecord.for_checkpoint(checkpoint, sha256="0" * 64)
    assert not record.matches()
    assert not weights.WeightsRecord.for_checkpoint(checkpoint).matches()  # no pin: a user's file


def test_a_user_checkpoints_record_finds_its_files_by_the_one_rule(checkpoint, tmp_path):
    from superslomo.apps import models

    record = weights.record_for(checkpoint)
    assert record.name == "mine" and record.sha256 is None and record.metrics == ()
    assert record.scales.parent == record.precision.parent == record.calibration.parent == tmp_path
    assert {p.name for p in (record.scales, record.precision, record.calibration)} == {
        "mine" + weights.SCALES_SUFFIX,
        "mine" + weights.REPORT_SUFFIX,
        "mine" + weights.CALIBRATION_SUFFIX,
    }
    folder = tmp_path / "onnx"
    folder.mkdir()
    sha = file_sha256(checkpoint)
    write_table(record.scales, sha)
    write_report(record.precision, sha)
    assert models.job_scales(checkpoint, (1280, 720)) == HD
    assert models.job_scales_words(checkpoint, (1280, 720)).startswith(f"720p band of {record.scales.name}:")
    assert models.accuracy_report(folder, checkpoint).drops == {"openvino/bf16": 0.0}
    # Files of other weights are ignored, as before the record.
    write_table(record.scales, "0" * 64)
    write_report(record.precision, "0" * 64)
    assert models.job_scales(checkpoint, (1280, 720)) is None
    assert models.accuracy_report(folder, checkpoint).drops == {}


def test_changing_the_rule_in_one_place_changes_what_jobs_read(checkpoint, tmp_path, monkeypatch):
    from superslomo.apps import models, scales

    sha = file_sha256(checkpoint)
    monkeypatch.setattr(weights, "SCALES_SUFFIX", ".table.json")
    monkeypatch.setattr(weights, "REPORT_SUFFIX", ".report.json")
    write_table(tmp_path / "mine.table.json", sha)
    write_report(tmp_path / "mine.report.json", sha)
    folder = tmp_path / "onnx"
    folder.mkdir()
    assert models.job_scales(checkpoint, (1280, 720)) == HD
    assert models.accuracy_report(folder, checkpoint).drops == {"openvino/bf16": 0.0}
    assert scales.write_table(checkpoint, {"bands": []}, "slomo scales") == tmp_path / "mine.table.json"


def test_the_default_record_is_what_jobs_of_the_default_model_read(checkpoint, tmp_path, monkeypatch):
    """A shipped record may name its files anywhere: the default model, its scale table, its
    accuracy report and its INT8 calibration clip are all read from the record."""
    from superslomo.apps import models, scales

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    record = weights.WeightsRecord(
        name="house",
        checkpoint=checkpoint,
        scales=elsewhere / "table.json",
        precision=elsewhere / "report.json",
        calibration=elsewhere / "clip.mp4",
        sha256=file_sha256(checkpoint),
    )
    monkeypatch.setattr(weights, "DEFAULT", record)
    monkeypatch.setattr(weights, "SHIPPED", {"house": record})
    assert models.default_model() == checkpoint
    write_table(record.scales, record.sha256)
    write_report(record.precision, record.sha256)
    folder = tmp_path / "onnx"
    folder.mkdir()
    assert models.job_scales(models.default_model(), (1280, 720)) == HD
    assert "720p band of table.json" in models.job_scales_words(checkpoint, (1280, 720))
    assert models.accuracy_report(folder, checkpoint).drops == {"openvino/bf16": 0.0}
    assert scales.table_path(checkpoint) == record.scales

    calibrated = []
    monkeypatch.setattr(
        models, "quantize_for_cpu", lambda fp32, target, footage, say: calibrated.append(footage)
    )
    assert models._shipped_int8(checkpoint, tmp_path / "abc-fp32", None) is None  # no clip: no INT8
    record.calibration.write_bytes(b"clip")
    models._shipped_int8(checkpoint, tmp_path / "abc-fp32", None)
    assert calibrated == [[record.calibration]]


def test_ship_if_better_retires_the_old_records_files(tmp_path):
    tools = str(ROOT / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    ship = importlib.import_module("ship_if_better")

    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    old = weights.record_for(weights_dir / "old16.safetensors")
    for path in (old.checkpoint, old.scales, old.precision, old.calibration):
        path.write_bytes(path.name.encode())
    new = weights.record_for(weights_dir / "slomo16.safetensors")
    moved = ship.retire(old, new, tmp_path / "retired")
    assert moved == [old.checkpoint, old.scales, old.precision]
    assert sorted(p.name for p in (tmp_path / "retired").iterdir()) == sorted(p.name for p in moved)
    # What stays beside the new checkpoint: the calibration clip (footage, not weights), renamed.
    assert [p.name for p in weights_dir.iterdir()] == [new.calibration.name]


def test_the_suffixes_are_written_only_in_the_records_module():
    package = ROOT / "superslomo"
    suffixes = (".precision.json", ".scales.json", ".calibration.mp4")
    found = sorted(
        str(path.relative_to(ROOT))
        for path in package.rglob("*.py")
        if any(suffix in path.read_text() for suffix in suffixes)
    )
    assert found == ["superslomo/apps/weights.py"]


def test_slomo_info_prints_the_shipped_record_and_only_for_the_shipped_path(tmp_path):
    import shutil

    from typer.testing import CliRunner

    from superslomo.cli import app

    shipped = CliRunner().invoke(app, ["info", str(weights.DEFAULT.checkpoint), "--json"])
    assert shipped.exit_code == 0, shipped.output
    record = json.loads(shipped.output)["record"]
    assert record["name"] == weights.DEFAULT.name
    assert record["files"]["scales"] == str(weights.DEFAULT.scales)
    ucf = next(m for m in weights.DEFAULT.metrics if m.data == "ucf101_adacof")
    assert any(line.startswith(f"ucf101_adacof: {ucf.psnr:.2f} dB") for line in record["metrics"])
    # A copy elsewhere is a user's checkpoint: its own files (none here), no shipped figures.
    copy = shutil.copy(weights.DEFAULT.checkpoint, tmp_path / "copy.safetensors")
    mine = CliRunner().invoke(app, ["info", str(copy), "--json"])
    assert mine.exit_code == 0 and "record" not in json.loads(mine.output)


def test_ship_converts_once_names_by_width_and_carries_the_scale_table(tmp_path):
    import shutil

    import torch

    from superslomo.model.checkpoint import save_checkpoint
    from superslomo.model.slomo import SuperSloMo

    tools = str(ROOT / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    ship = importlib.import_module("ship_if_better")
    torch.manual_seed(0)
    source = tmp_path / "candidate.safetensors"
    save_checkpoint(SuperSloMo(width=4, warp="exact"), source)
    work = tmp_path / "work"
    work.mkdir()
    converted = ship.as_fp16_checkpoint(source, work)
    table = weights.record_for(converted).scales
    table.write_text(json.dumps({"model": converted.name, "sha256": file_sha256(converted), "bands": []}))
    # A second run of the tool evaluates the same bytes, so the table measured on them still binds.
    again = ship.as_fp16_checkpoint(source, work)
    assert again == converted and file_sha256(again) == json.loads(table.read_text())["sha256"]
    assert ship.shipped_name(converted) == "slomo4"
    target = tmp_path / "weights" / "slomo4.safetensors"
    target.parent.mkdir()
    shutil.copy2(converted, target)
    carried = ship.carry_scale_table(converted, target)
    assert carried == weights.record_for(target).scales
    data = json.loads(carried.read_text())
    assert data["model"] == "slomo4.safetensors" and data["sha256"] == file_sha256(target)
