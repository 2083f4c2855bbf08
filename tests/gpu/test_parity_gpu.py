"""`slomo parity` on TensorRT engines: the same code path as ONNX Runtime, through TensorRTBackend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from superslomo.cli import main

pytestmark = pytest.mark.gpu
# Parity batches three times per pair (N = 3) through the interp engine; the flow engine runs N = 1.
PROFILE = ("1x64x64", "3x64x96", "3x128x160")


@pytest.fixture(scope="module")
def folders(small_model, tmp_path_factory):
    from superslomo.contracts.shapes import parse_profiles
    from superslomo.engine.builder import build_engines
    from superslomo.export import ExportOptions, export_model
    from superslomo.model import save_checkpoint

    root = tmp_path_factory.mktemp("parity-gpu")
    checkpoint = root / "small.safetensors"
    save_checkpoint(small_model, checkpoint)
    engines = {}
    for precision in ("fp32", "fp16"):
        export_model(small_model, root / f"onnx-{precision}", ExportOptions(precision=precision))
        engines[precision] = root / f"engine-{precision}"
        build_engines(
            root / f"onnx-{precision}",
            engines[precision],
            parse_profiles(*PROFILE),
            timing_cache=root / "timing.cache",
            builder_level=1,
        )
    return root, checkpoint, engines


def _parity(capsys, folder: Path, checkpoint: Path, report: Path, *args: str) -> tuple[int, dict, str]:
    try:
        main(
            [
                "parity",
                str(folder),
                "--against",
                str(checkpoint),
                "--backend",
                "tensorrt",
                "--sizes",
                "96x64",
                "--report",
                str(report),
                *args,
            ]
        )
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 0
    err = capsys.readouterr().err
    return code, json.loads(report.read_text()) if report.exists() else {}, err


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engines_pass_parity_with_their_precision_defaults(folders, tmp_path, capsys, precision):
    _root, checkpoint, engines = folders
    code, report, err = _parity(capsys, engines[precision], checkpoint, tmp_path / "r.json")
    # TensorRT's kernels round differently from PyTorch's even in fp32; its default gate must
    # still hold, or the gate is too tight for the backend it is meant for.
    assert code == 0, err
    assert report["backend"] == "tensorrt" and report["kind"] == "tensorrt" and report["passed"]


def test_engine_built_from_a_1_minus_t_graph_fails(folders, tmp_path, capsys):
    import shutil

    from superslomo.contracts.shapes import parse_profiles
    from superslomo.engine.builder import build_engines
    from tests.test_parity import _flip_t

    root, checkpoint, _ = folders
    onnx_dir = shutil.copytree(root / "onnx-fp32", tmp_path / "onnx")
    _flip_t(onnx_dir)
    build_engines(onnx_dir, tmp_path / "engine", parse_profiles(*PROFILE), builder_level=1)
    code, report, err = _parity(capsys, tmp_path / "engine", checkpoint, tmp_path / "r.json")
    assert code == 1 and "frame_t" in report["failed"] and "frame_t" in err
