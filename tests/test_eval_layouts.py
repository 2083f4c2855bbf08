"""Middlebury's split trees (other-data/ + other-gt-interp/, input/ + gt/, --gt DIR): inputs and
ground truth are paired by sequence, and inputs without ground truth give a one-line error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from superslomo.errors import SloMoError
from superslomo.eval.datasets import iter_pairs, iter_triplets
from superslomo.eval.metrics import blend
from superslomo.eval.quality import run_eval
from tests.conftest import shared_data
from tests.test_eval_quality import run_cli

# Each sequence has its own size, so a target paired with another sequence's inputs cannot pass
# unnoticed: it either differs in size or is not that pair's blend.
SEQUENCES = {"Dimetrodon": (40, 56), "Venus": (48, 64), "Walking": (36, 52)}


def _png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def _split_set(inputs: Path, gt: Path | None, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Inputs as Middlebury ships them (frame07..frame14), ground truth = the blend of frame10/11."""
    rng = np.random.default_rng(seed)
    pairs = {}
    for name, (height, width) in SEQUENCES.items():
        frames = {i: rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for i in range(7, 15)}
        for index, frame in frames.items():
            _png(inputs / name / f"frame{index:02d}.png", frame)
        if gt is not None:
            _png(gt / name / "frame10i11.png", blend(frames[10], frames[11]))
        pairs[name] = (frames[10], frames[11])
    return pairs


def _assert_paired(result: dict) -> None:
    assert result["layout"] == "middlebury" and result["count"] == len(SEQUENCES)
    assert [item["name"] for item in result["items"]] == sorted(SEQUENCES, key=lambda n: (len(n), n))
    for item in result["items"]:
        height, width = SEQUENCES[item["name"]]
        assert item["size"] == f"{width}x{height}"
        assert item["baseline"]["ie"] < 0.01  # the target is exactly this pair's blend


def test_official_middlebury_split_is_paired_by_sequence(tmp_path):
    root = tmp_path / "middlebury"
    _split_set(root / "other-data", root / "other-gt-interp")
    result = run_eval(root, None, minterpolate=False)
    _assert_paired(result)
    assert result["ground_truth"] == str(root / "other-gt-interp")
    # The inputs folder itself finds its sibling ground truth too.
    _assert_paired(run_eval(root / "other-data", None, minterpolate=False))


def test_input_and_gt_trees_and_an_explicit_gt(tmp_path):
    root = tmp_path / "set"
    pairs = _split_set(root / "input", root / "gt")
    _assert_paired(run_eval(root, None, minterpolate=False))
    # Ground truth somewhere else entirely, named with gt=.
    elsewhere = tmp_path / "downloads" / "interp-truth"
    _split_set(tmp_path / "bare" / "input", elsewhere)
    result = run_eval(tmp_path / "bare" / "input", None, gt=elsewhere, minterpolate=False)
    _assert_paired(result)
    assert result["ground_truth"] == str(elsewhere)
    # The frames that were read are frame10 and frame11, not neighbours like frame09 or frame12.
    for triplet in iter_triplets(root, gt=root / "gt"):
        expected0, expected1 = pairs[triplet.name]
        assert np.array_equal(triplet.frame0, expected0) and np.array_equal(triplet.frame1, expected1)


def test_pairs_are_read_without_ground_truth(tmp_path):
    # Parity needs only the inputs: a split set without its ground truth still gives its pairs.
    pairs = _split_set(tmp_path / "input", None)
    read = {name: (f0, f1) for name, f0, f1 in iter_pairs(tmp_path / "input")}
    assert set(read) == set(SEQUENCES)
    for name, (f0, f1) in read.items():
        assert np.array_equal(f0, pairs[name][0]) and np.array_equal(f1, pairs[name][1])


def test_missing_ground_truth_is_one_line_exit_2(tmp_path, capsys):
    _split_set(tmp_path / "eval" / "input", None)
    # A missing model too: the ground truth must be checked before a model is opened.
    code, _out, err = run_cli(
        capsys,
        "eval",
        "--data",
        str(tmp_path / "eval" / "input"),
        "--model",
        str(tmp_path / "missing.safetensors"),
    )
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "no ground truth" in err and "--gt DIR" in err
    # The same from the root of a split tree whose gt/ is absent, and with an explicit layout.
    for args in (
        ["--data", str(tmp_path / "eval")],
        ["--data", str(tmp_path / "eval" / "input"), "--layout", "middlebury"],
    ):
        code, _out, err = run_cli(capsys, "eval", *args, "--model", str(tmp_path / "missing.safetensors"))
        assert code == 2 and err.count("\n") == 1 and "no ground truth" in err


def test_missing_ground_truth_on_the_real_middlebury_inputs(capsys, tmp_path):
    data = shared_data("middlebury_eval", "input")
    code, _out, err = run_cli(
        capsys, "eval", "--data", str(data), "--model", str(tmp_path / "missing.safetensors")
    )
    assert code == 2 and err.count("\n") == 1 and "no ground truth" in err and "--gt" in err


def test_gt_for_a_sequence_that_is_not_there_names_it(tmp_path):
    _split_set(tmp_path / "input", tmp_path / "gt")
    (tmp_path / "gt" / "Venus" / "frame10i11.png").unlink()
    with pytest.raises(SloMoError, match=r"for 1 of 3 sequence\(s\): Venus$"):
        run_eval(tmp_path, None, minterpolate=False)


def test_gt_is_refused_where_the_layout_holds_its_own(tmp_path):
    ucf = tmp_path / "ucf" / "1"
    for index in range(3):
        _png(ucf / f"frame{index}.png", np.full((32, 32, 3), 40 * index, np.uint8))
    with pytest.raises(SloMoError, match="holds no <seq>/frame10,frame11"):
        run_eval(tmp_path / "ucf", None, gt=tmp_path / "ucf", minterpolate=False)
    with pytest.raises(SloMoError, match="the ucf layout holds its own ground truth"):
        run_eval(tmp_path / "ucf", None, layout="ucf", gt=tmp_path / "ucf", minterpolate=False)


def test_eval_command_takes_gt(small_model, tmp_path, capsys):
    import json

    from superslomo.model import save_checkpoint

    checkpoint = tmp_path / "small.safetensors"
    save_checkpoint(small_model, checkpoint)
    _split_set(tmp_path / "inputs", tmp_path / "truth")
    report = tmp_path / "eval.json"
    code, out, err = run_cli(
        capsys,
        "eval",
        "--data",
        str(tmp_path / "inputs"),
        "--gt",
        str(tmp_path / "truth"),
        "--model",
        str(checkpoint),
        "--backend",
        "torch",
        "--report",
        str(report),
    )
    assert code == 0, err
    result = json.loads(report.read_text())
    _assert_paired(result)
    assert f"ground truth from {tmp_path / 'truth'}" in out and "ffmpeg minterpolate" in out
    assert {"psnr", "ssim", "ie"} <= set(result["minterpolate"]) and "minterpolate" in result["items"][0]
