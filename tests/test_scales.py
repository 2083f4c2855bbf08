"""`slomo scales`: the per-band scale table of a model (apps/scales.py), its rule, and the file
every job of the checkpoint reads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_eval_quality import run_cli


def test_candidates_keep_flow_no_finer_than_synthesis_and_networks_under_the_line_cap():
    from superslomo.apps.scales import candidate_scales

    at_480 = candidate_scales(480)
    assert at_480[0] == {"flow": 0.25, "interp": 0.25}  # cheapest first
    assert {"flow": 1.0, "interp": 1.0} in at_480 and {"flow": 1.0, "interp": 0.5} not in at_480
    assert {"flow": 0.25, "interp": 1.0} not in at_480  # more than one octave apart
    at_2160 = candidate_scales(2160)
    assert all(s["interp"] * 2160 <= 1080 for s in at_2160) and len(at_2160) == 3


def test_the_band_takes_the_best_psnr_within_the_time_budget_else_the_fastest():
    from superslomo.apps.scales import BANDS, choose

    entries = [
        {"flow": 0.25, "interp": 0.25, "psnr_db": 30.0, "ms": 100},
        {"flow": 0.5, "interp": 0.5, "psnr_db": 31.0, "ms": 300},
        {"flow": 1.0, "interp": 1.0, "psnr_db": 32.0, "ms": 900},
    ]
    minterp = {"psnr_db": 31.5, "ms": 400}
    assert choose(BANDS[0], minterp, entries, 1.0, None)["scales"] == {"flow": 0.5, "interp": 0.5}
    assert choose(BANDS[0], minterp, entries, 3.0, None)["scales"] == {"flow": 1.0, "interp": 1.0}
    close = [dict(entries[0], psnr_db=30.95), entries[1]]  # within 0.1 dB: the faster wins
    assert choose(BANDS[0], minterp, close, 1.0, None)["scales"] == {"flow": 0.25, "interp": 0.25}
    slow = {"psnr_db": 31.5, "ms": 50}
    band = choose(BANDS[0], slow, entries, 1.0, None)
    assert band["scales"] == {"flow": 0.25, "interp": 0.25} and "the fastest" in band["why"]


def test_a_job_finds_its_band_by_height():
    from superslomo.apps.scales import band_for

    bands = [{"band": b, "from_height": h} for b, h in (("480p", 400), ("720p", 600), ("1080p", 900))]
    assert band_for(360, bands) is None
    assert band_for(480, bands)["band"] == "480p" and band_for(544, bands)["band"] == "480p"
    assert band_for(720, bands)["band"] == "720p"
    assert band_for(2160, bands)["band"] == "1080p"


@pytest.fixture(scope="module")
def moving_frames(tmp_path_factory):
    """Eight frames of a textured picture panning 3 px a frame: real interpolation work, small."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    base = np.kron(rng.integers(0, 256, (60, 90, 3), np.uint8), np.ones((4, 4, 1), np.uint8))
    for index in range(8):
        Image.fromarray(np.ascontiguousarray(base[:240, 3 * index : 3 * index + 320])).save(
            folder / f"{index:03d}.png"
        )
    return folder


def test_scales_command_writes_the_table_jobs_then_read(
    small_model, moving_frames, tmp_path, capsys, monkeypatch
):
    import superslomo.apps.models as models
    from superslomo.apps.models import job_scales
    from superslomo.apps.scales import read_table
    from superslomo.export.onnx_export import ExportOptions, export_model
    from superslomo.model.checkpoint import save_checkpoint

    exported = {}

    def export(checkpoint, precision, say, scales):
        """Each candidate exported once, as the cache would, without the cache's sha256 and files."""
        key = (scales["flow"], scales["interp"])
        if key not in exported:
            exported[key] = tmp_path / f"onnx-{key[0]}-{key[1]}"
            export_model(small_model, exported[key], ExportOptions(flow_scale=key[0], interp_scale=key[1]))
        return exported[key]

    monkeypatch.setattr(models, "onnx_folder_for", export)

    checkpoint = tmp_path / "small.safetensors"
    save_checkpoint(small_model, checkpoint)
    args = ["scales", str(checkpoint), "--data", str(moving_frames), "--pairs", "2", "--bands", "480p"]
    # --max-lines 120: at 480p only 1/4+1/4 (one export keeps the test short; choose() is tested above)
    # the band's own budget wins over the others' (0.01x: nothing would be within it)
    args += ["--max-lines", "120", "--backend", "onnxruntime", "--budget", "0.01,480p=100", "--write"]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "minterpolate" in err and "480p: flow" in out
    table = read_table(checkpoint)
    assert table is not None and [b["band"] for b in table["bands"]] == ["480p"]
    band = table["bands"][0]
    assert band["minterpolate"]["psnr_db"] > 10 and band["minterpolate"]["triplets"] == 2
    measured = {(c["flow"], c["interp"]): c for c in band["candidates"]}
    assert set(measured) == {(0.25, 0.25)} and measured[0.25, 0.25]["psnr_db"] > 10
    assert band["scales"] == {"flow": 0.25, "interp": 0.25}
    assert band["budget_ratio"] == 100 and "within 100x" in band["why"]
    assert table["budget_ratio"] == 0.01 and table["band_budget_ratios"] == {"480p": 100}
    assert table["command"].startswith("slomo scales small.safetensors --data ")
    assert "--budget 0.01,480p=100 " in table["command"]
    assert job_scales(checkpoint, (640, 480)) == {"flow": 0.25, "interp": 0.25}
    assert job_scales(checkpoint, (320, 240)) is None  # under the lowest band
    json.loads(checkpoint.with_name("small.scales.json").read_text())


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--bands", "360p"], "unknown band 360p"),
        (["--budget", "0"], "--budget must be above 0"),
        (["--budget", "1,480p=0"], "--budget must be above 0"),
        (["--budget", "1,360p=4"], "--budget names an unknown band '360p'"),
        (["--budget", "fast"], "--budget takes R or BAND=R"),
        (["--backend", "tensorrt"], "--backend must be openvino or onnxruntime"),
    ],
)
def test_scales_command_refuses_bad_options_in_one_line(
    small_model, moving_frames, tmp_path, capsys, extra, words
):
    from superslomo.model.checkpoint import save_checkpoint

    checkpoint = tmp_path / "small.safetensors"
    save_checkpoint(small_model, checkpoint)
    code, out, err = run_cli(capsys, "scales", str(checkpoint), "--data", str(moving_frames), *extra)
    assert code == 2 and words in err and "Traceback" not in err, err
    assert not checkpoint.with_name("small.scales.json").exists()


def test_triplets_take_turns_between_clips(tmp_path):
    """Candidates over budget are dropped after their first triplets: those must span the clips."""
    from PIL import Image

    from superslomo.apps.scales import sample_native

    clips = []
    for name, level in (("a", 40), ("b", 200)):
        folder = tmp_path / name
        folder.mkdir()
        rng = np.random.default_rng(level)
        for index in range(8):
            image = np.clip(rng.normal(level, 20, (32, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(folder / f"{index:02d}.png")
        clips.append(folder)
    names = [name for name, *_ in sample_native(clips, 4)]
    assert names == ["a", "b", "a", "b"]
