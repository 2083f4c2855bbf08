"""`slomo eval`: quality on triplet data sets next to the linear blend and ffmpeg's minterpolate;
clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from superslomo.cli import main
from superslomo.eval.metrics import blend, interpolation_error, psnr, ssim
from tests.conftest import shared_data


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 0
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def checkpoint(small_model, tmp_path_factory) -> Path:
    from superslomo.model import save_checkpoint

    path = tmp_path_factory.mktemp("eval") / "small.safetensors"
    save_checkpoint(small_model, path)
    return path


def _write(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def _middlebury_set(root: Path, rng: np.random.Generator) -> Path:
    """Two sequences whose ground truth is exactly the blend: the baseline must score IE ~0."""
    for name in ("Alpha", "Beta"):
        f0 = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
        f1 = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
        _write(root / name / "frame10.png", f0)
        _write(root / name / "frame11.png", f1)
        _write(root / name / "frame10i11.png", blend(f0, f1))
    return root


def test_eval_reproduces_the_baselines_on_ucf101():
    from superslomo.eval.quality import run_eval
    from superslomo.video.frames import read_image

    data = shared_data("ucf101_adacof")
    result = run_eval(data, None)  # the baselines over the whole set; the model is tested below
    assert result["layout"] == "ucf" and result["count"] == 21 and len(result["items"]) == 21
    assert 30.3 < result["baseline"]["psnr"] < 30.7  # the published ~30.5 dB of blending on this set
    assert 0.85 < result["baseline"]["ssim"] < 0.95 and 5 < result["baseline"]["ie"] < 15
    # ffmpeg's minterpolate on this set, as measured with the ffmpeg command line: ~33.0 dB, SSIM 0.952.
    assert 32.7 < result["minterpolate"]["psnr"] < 33.3 and 0.945 < result["minterpolate"]["ssim"] < 0.96
    assert all("minterpolate" in item for item in result["items"])
    # Item figures are the metrics of the blend, recomputed here independently of the command.
    first = result["items"][0]
    folder = data / first["name"]
    f0, f2, target = (read_image(folder / f"frame{i}.png") for i in (0, 2, 1))
    assert first["baseline"]["psnr"] == pytest.approx(psnr(blend(f0, f2), target))
    assert first["baseline"]["ie"] == pytest.approx(interpolation_error(blend(f0, f2), target))


def test_eval_command_reports_model_and_baseline(checkpoint, tmp_path, capsys):
    data = shared_data("ucf101_adacof")
    report = tmp_path / "eval.json"
    code, out, err = run_cli(
        capsys,
        "eval",
        "--data",
        str(data),
        "--model",
        str(checkpoint),
        "--limit",
        "2",
        "--report",
        str(report),
    )
    assert code == 0, err
    result = json.loads(report.read_text())
    # measured as `slomo interpolate` runs it: the CPU runtime auto measured fastest here
    assert result["count"] == 2 and result["backend"].split()[0] in ("onnxruntime", "openvino")
    for key in ("psnr", "ssim", "ie"):
        assert np.isfinite(result[key]) and np.isfinite(result["baseline"][key]) and key in result["items"][0]
    assert result["psnr"] == pytest.approx(np.mean([i["psnr"] for i in result["items"]]))
    # A random-weight model is far from the ground truth; blending is not.
    assert result["psnr"] < result["baseline"]["psnr"]
    assert "linear blend" in out and "gain over blend" in out
    assert "ffmpeg minterpolate" in out and "gain over minterpolate" in out
    assert result["minterpolate"]["psnr"] == pytest.approx(
        np.mean([i["minterpolate"]["psnr"] for i in result["items"]])
    )


def test_eval_no_minterpolate_leaves_it_out(checkpoint, tmp_path, capsys):
    data = _middlebury_set(tmp_path / "mb", np.random.default_rng(2))
    report = tmp_path / "eval.json"
    code, out, err = run_cli(
        capsys,
        "eval",
        "--data",
        str(data),
        "--model",
        str(checkpoint),
        "--no-minterpolate",
        "--report",
        str(report),
    )
    assert code == 0, err
    result = json.loads(report.read_text())
    assert "minterpolate" not in result and all("minterpolate" not in item for item in result["items"])
    assert "ffmpeg minterpolate" not in out and "gain over minterpolate" not in out and "linear blend" in out


def test_eval_rejects_an_unknown_layout_before_loading_a_model(tmp_path, capsys):
    code, _out, err = run_cli(
        capsys,
        "eval",
        "--data",
        str(tmp_path),
        "--layout",
        "vimeo90k",
        "--model",
        str(tmp_path / "missing.safetensors"),
    )
    assert code == 2
    assert err.strip() == "error: unknown layout 'vimeo90k'; choose one of auto, middlebury, ucf, frames"


def test_eval_says_when_it_cannot_tell_the_layout(tmp_path, checkpoint, capsys):
    (tmp_path / "empty").mkdir()
    code, _out, err = run_cli(capsys, "eval", "--data", str(tmp_path / "empty"), "--model", str(checkpoint))
    assert code == 2 and "cannot tell the layout" in err and err.count("\n") == 1


def test_eval_on_a_generated_middlebury_set(small_model, tmp_path):
    from superslomo.eval.quality import run_eval
    from superslomo.eval.torch_backend import TorchBackend
    from superslomo.runtime import Interpolator

    data = _middlebury_set(tmp_path / "mb", np.random.default_rng(0))
    interp = Interpolator(TorchBackend(small_model))
    result = run_eval(data, interp, reference=interp, report=tmp_path / "r.json")
    assert result["layout"] == "middlebury" and {i["name"] for i in result["items"]} == {"Alpha", "Beta"}
    assert result["baseline"]["ie"] < 0.01 and result["baseline"]["ssim"] > 0.999
    assert result["ie"] > 1.0  # the random-weight model is not a blend
    assert result["vs_reference"]["psnr"] == float("inf")  # the same model as its own reference
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["vs_reference"]["psnr"] == "inf" and saved["count"] == 2


def test_eval_frames_layout_holds_out_every_other_frame(tmp_path):
    from superslomo.eval.quality import run_eval

    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(5)]
    for index, frame in enumerate(frames):
        _write(tmp_path / "clip" / f"{index:03d}.png", frame)
    result = run_eval(tmp_path / "clip", None, limit=5)  # baseline only
    assert result["layout"] == "frames" and result["count"] == 2 and "psnr" not in result
    expected = ssim(blend(frames[0], frames[2]), frames[1])
    assert result["items"][0]["baseline"]["ssim"] == pytest.approx(expected)
