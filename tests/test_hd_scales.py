"""The networks on the pair downscaled (model/scaled.py): flows cross scales as true
displacements, the exported graphs keep full-size I/O and match PyTorch at their scales, and
a job takes the export of its frame size's band in the model's scale table (apps/scales.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest


@pytest.mark.parametrize("factor", [2, 4])
@pytest.mark.parametrize("convention", ["reference", "exact"])
def test_flows_cross_scales_as_displacements(convention, factor):
    import torch

    from superslomo.model.scaled import downscale_flow, from_displacement, to_displacement, upscale_flow

    height, width = 64, 96
    still = from_displacement(torch.zeros(1, 2, height, width), convention)
    if convention == "reference":  # the reference identity is a 0..1 px ramp at the flow's own size
        assert torch.allclose(still[0, 0, 0], torch.arange(width) / (width - 1), atol=1e-6)
    small = downscale_flow(still, convention, factor)
    smaller_still = from_displacement(torch.zeros(1, 2, height // factor, width // factor), convention)
    assert torch.allclose(small, smaller_still, atol=1e-5)
    assert torch.allclose(upscale_flow(small, convention, factor), still, atol=1e-5)
    moved = from_displacement(torch.full((1, 2, height, width), 3.0), convention)
    down = downscale_flow(moved, convention, factor)
    assert torch.allclose(to_displacement(down, convention), torch.tensor(3.0 / factor), atol=1e-5)
    back = to_displacement(upscale_flow(down, convention, factor), convention)
    assert torch.allclose(back, torch.tensor(3.0), atol=1e-4)


@pytest.mark.parametrize("scale", [0.5, 0.25])
def test_scaled_synthesis_of_a_still_pair_is_the_frame(scale):
    """Both frames equal and a network that refines nothing (zero last layer, visibility 0.5):
    the full-size frame comes back, so the upsampling touches the flows and masks, not the image."""
    import torch

    from superslomo.model import super_slomo
    from superslomo.model.scaled import from_displacement, scaled_synthesize

    model = super_slomo(width=4, warp="exact").eval()
    with torch.no_grad():
        model.interp_net.conv3.weight.zero_()
        model.interp_net.conv3.bias.zero_()
        frame = torch.rand(1, 3, 128, 128)
        still = from_displacement(torch.zeros(1, 2, 128, 128), "exact")
        out = scaled_synthesize(model, frame, frame, still, still, torch.tensor([0.3]), scale)
    assert torch.allclose(out, frame, atol=1e-5)


HD = {"flow": 0.25, "interp": 0.5}


@pytest.fixture(scope="module")
def reduced_model(tmp_path_factory, small_model):
    from superslomo.export.onnx_export import ExportOptions, export_model

    folder = tmp_path_factory.mktemp("onnx") / "reduced"
    export_model(small_model, folder, ExportOptions(flow_scale=HD["flow"], interp_scale=HD["interp"]))
    return folder


def test_reduced_export_keeps_full_size_io_and_matches_pytorch(reduced_model, small_model):
    from superslomo.contracts.manifest import read_manifest
    from superslomo.eval.torch_backend import TorchBackend
    from superslomo.runtime import Interpolator

    manifest = read_manifest(reduced_model)
    assert manifest.scales == HD and manifest.size_multiple == 128
    rng = np.random.default_rng(3)
    frame0 = rng.integers(0, 256, (80, 200, 3), np.uint8)  # pads to 128x256: a multiple of 128
    frame1 = np.roll(frame0, 2, axis=1)
    with (
        Interpolator.from_dir(reduced_model, "onnxruntime") as onnx,
        Interpolator(TorchBackend(small_model, scales=HD)) as reference,
        Interpolator(TorchBackend(small_model)) as full,
    ):
        got = onnx.interpolate(frame0, frame1, [0.25, 0.5])
        want = reference.interpolate(frame0, frame1, [0.25, 0.5])
        other = full.interpolate(frame0, frame1, [0.25, 0.5])
    assert got[0].shape == frame0.shape
    for a, b in zip(got, want, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # uint8 rounding of float32 parity
    assert any(np.abs(a.astype(int) - b.astype(int)).max() > 1 for a, b in zip(got, other, strict=True))


def test_parity_command_measures_a_reduced_folder_against_pytorch_at_its_scales(
    reduced_model, small_model, tmp_path
):
    from superslomo.eval.parity import run_parity
    from superslomo.model.checkpoint import save_checkpoint

    checkpoint = tmp_path / "small.safetensors"
    save_checkpoint(small_model, checkpoint)
    # raises CheckFailed if any output is off: a full-scale reference would be (see the test above)
    result = run_parity(reduced_model, checkpoint, backend="onnxruntime", sizes=[(128, 256)], pairs=1)
    assert result["passed"]


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("scales", {"flow": 0.125, "interp": 1.0}, "scales .* are unknown"),
        ("scales", {"flow": 0.5}, "scales .* are unknown"),
        ("size_multiple", 64, "size_multiple must be 128"),
    ],
)
def test_manifest_refuses_a_scale_or_multiple_it_does_not_know(reduced_model, tmp_path, field, value, words):
    from superslomo.contracts.manifest import ManifestError, read_manifest

    folder = tmp_path / "m"
    shutil.copytree(reduced_model, folder)
    data = json.loads((folder / "manifest.json").read_text())
    data[field] = value
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=words):
        read_manifest(folder)


def write_table(checkpoint, bands, sha=None):
    """A scale table as `slomo scales --write` leaves it (apps/scales.py), reduced to what jobs read."""
    from superslomo.apps.scales import table_path
    from superslomo.contracts.files import file_sha256

    rows = [{"band": name, "from_height": low, "scales": scales} for name, low, scales in bands]
    table_path(checkpoint).write_text(json.dumps({"sha256": sha or file_sha256(checkpoint), "bands": rows}))


FULL = {"flow": 1.0, "interp": 1.0}
HALF = {"flow": 0.5, "interp": 0.5}


def test_open_model_runs_the_scales_of_the_jobs_band_where_the_table_is_the_models(
    small_model, reduced_model, onnx_model, tmp_path, monkeypatch
):
    import superslomo.apps.models as models
    from superslomo.model.checkpoint import save_checkpoint

    monkeypatch.setenv("SLOMO_CACHE_DIR", str(tmp_path / "cache"))
    checkpoint = tmp_path / "small.safetensors"
    save_checkpoint(small_model, checkpoint)

    # The export cache itself is onnx_folder_for's (tested with the CLI); here: which one is asked for.
    asked = []

    def export(path, precision, say, scales, exported=None):
        asked.append(scales)
        return reduced_model if scales == HD else onnx_model

    monkeypatch.setattr(models, "onnx_folder_for", export)

    def label(size):
        interp, words = models.open_model(checkpoint, "onnxruntime", "fp32", size=size, say=None)
        interp.close()
        return words

    assert "scale" not in label((128, 720)) and asked[-1] is None  # no table: nobody measured it
    write_table(checkpoint, [("480p", 400, FULL), ("720p", 600, HD), ("2160p", 1620, HALF)])
    assert "720p band of small.scales.json: flow at 1/4 scale, synthesis at 1/2 scale" in label((128, 720))
    assert asked[-1] == HD
    assert "720p band" in label((128, 1080)) and asked[-1] == HD  # 1080 lines: no 1080p band, the 720p one
    assert "480p band of small.scales.json: full scale" in label((128, 480)) and asked[-1] is None
    label((128, 360))
    assert asked[-1] is None  # under the lowest band
    assert models.job_scales(checkpoint, (3840, 2160)) == HALF
    write_table(checkpoint, [("720p", 600, HD)], sha="0" * 64)
    # a table of other weights vouches for nothing
    assert "scale" not in label((128, 720)) and asked[-1] is None
    (tmp_path / "small.scales.json").write_text('{"sha256": 1, "bands": [{"scales": {"flow": 0.3}}]}')
    assert models.job_scales(checkpoint, (1280, 720)) is None  # malformed: full scale, no traceback


def test_build_engine_refuses_sizes_off_a_reduced_folders_multiple(reduced_model, tmp_path):
    """Before TensorRT is touched (so it runs here): a 1/4-scale network needs frames in
    multiples of 128, and the default --min 1x64x64 is not one."""
    from superslomo.contracts.shapes import parse_profiles
    from superslomo.engine.builder import BuildError, build_engines

    profiles = parse_profiles("1x64x64", "1x128x256", "1x256x256")
    with pytest.raises(BuildError, match=r"multiples of 128 .*--min 1x64x64 is not"):
        build_engines(reduced_model, tmp_path / "engines", profiles)


def test_model_folder_for_a_job_size_is_the_export_a_local_run_takes(small_model, tmp_path, monkeypatch):
    """What `--ray` hands its workers: the same HD export `slomo interpolate` runs locally."""
    import superslomo.apps.models as models
    from superslomo.model.checkpoint import save_checkpoint

    checkpoint = tmp_path / "small.safetensors"
    save_checkpoint(small_model, checkpoint)
    write_table(checkpoint, [("720p", 600, HD)])
    asked = []
    monkeypatch.setattr(models, "onnx_folder_for", lambda path, say, scales: asked.append(scales) or tmp_path)
    models.model_folder(checkpoint, size=(1280, 720))
    models.model_folder(checkpoint, size=(640, 360))
    models.model_folder(checkpoint)
    assert asked == [HD, None, None]
    assert models.model_folder(tmp_path) == tmp_path  # a folder is what it is


def test_eval_measures_the_model_as_interpolate_runs_it_unless_as_exported(
    small_model, reduced_model, onnx_model, tmp_path, monkeypatch, capsys
):
    """`slomo eval` scores what a user's job of the data's size runs; `--as-exported` the model
    as exported (full scale)."""
    from PIL import Image

    import superslomo.apps.models as models
    from superslomo.model.checkpoint import save_checkpoint
    from tests.test_eval_quality import run_cli

    checkpoint = tmp_path / "small.safetensors"
    save_checkpoint(small_model, checkpoint)
    write_table(checkpoint, [("720p", 600, HD)])

    def export(path, precision="fp32", say=None, scales=None, exported=None):
        return reduced_model if scales == HD else onnx_model

    monkeypatch.setattr(models, "onnx_folder_for", export)
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(5)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (720, 128, 3), np.uint8)).save(frames / f"{index:02d}.png")
    base = ["eval", "--data", str(frames), "--model", str(checkpoint), "--no-minterpolate"]
    code, out, err = run_cli(capsys, *base, "--backend", "onnxruntime")
    words = "720p band of small.scales.json: flow at 1/4 scale, synthesis at 1/2 scale"
    assert code == 0 and words in err, err
    code, out, err = run_cli(capsys, *base, "--as-exported")
    assert code == 0 and "scale" not in err, err


def test_triton_tensorrt_profiles_take_a_reduced_folders_multiple():
    from superslomo.serving.triton_repo import _ep_profile_shapes

    full = _ep_profile_shapes("flow", "float32", 4)
    reduced = _ep_profile_shapes("flow", "float32", 4, multiple=128)
    assert full["trt_profile_min_shapes"].startswith("frame0:1x3x64x64")
    assert reduced["trt_profile_min_shapes"].startswith("frame0:1x3x128x128")
    assert reduced["trt_profile_opt_shapes"].startswith("frame0:1x3x768x1280")
    assert reduced["trt_profile_max_shapes"].startswith("frame0:4x3x1152x1920")


def test_build_engine_profiles_in_between_land_on_a_reduced_folders_multiple(reduced_model, tmp_path):
    """`build-engine --profiles 3` on a 1/4-scale folder: the maxima between --min and --max are
    multiples of 128, so the sizes the user typed are all it checks (before TensorRT is needed)."""
    import importlib.util
    import subprocess
    import sys

    from superslomo.contracts.shapes import parse_profiles

    command = [sys.executable, "-m", "superslomo.cli", "build-engine", str(reduced_model)]
    result = subprocess.run(
        [*command, "-o", str(tmp_path / "e"), "--min", "1x128x128", "--opt", "1x384x640"]
        + ["--max", "1x1152x1920", "--profiles", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "must be multiples of 128" not in result.stderr, result.stderr
    if importlib.util.find_spec("tensorrt") is None:
        assert result.returncode == 2 and "superslomo-trt[tensorrt]" in result.stderr, result.stderr
    for profile in parse_profiles("1x128x128", "1x384x640", "1x1152x1920", 3, multiple=128):
        for shape in (profile.min, profile.opt, profile.max):
            assert shape.h % 128 == 0 and shape.w % 128 == 0, f"{profile}: {shape} is off 128"
