"""Calibration sets (sampling, scene cuts, determinism, the npz) and INT8 Q/DQ graphs.

Generated clips and a width-4 random model keep these fast and always on; random weights say
where Q/DQ goes and that the graphs run, not how accurate INT8 is (see
test_calibration_real.py for agreement with trained weights on real frames)."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from videoclips import make_clip, scene_frame  # noqa: E402

from superslomo.calibration.calibset import CalibSet, build_calibration_set  # noqa: E402
from superslomo.calibration.quantize import QuantizeOptions, qdq_facts, quantize_model  # noqa: E402
from superslomo.calibration.sampling import (  # noqa: E402
    Rejections,
    allocate,
    open_sources,
    sample_triplets,
    triplet_problem,
)
from superslomo.errors import CheckFailed, SloMoError  # noqa: E402
from superslomo.video.scenes import colour_signature  # noqa: E402

SIZE = (96, 64)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    spliced = make_clip(folder / "spliced.mp4", frames=40, size=SIZE, cut_at=20)
    plain = make_clip(folder / "plain.mp4", frames=30, size=(128, 72))
    frames = folder / "frames"
    frames.mkdir()
    from PIL import Image

    for i in range(8):
        Image.fromarray(scene_frame(i, 80, 60)).save(frames / f"{i:03d}.png")
    return {"spliced": spliced, "plain": plain, "frames": frames}


@pytest.fixture(scope="module")
def fp32_dir(small_model, tmp_path_factory):
    from superslomo.export import export_model

    folder = tmp_path_factory.mktemp("fp32")
    export_model(small_model, folder, source={"checkpoint": "random-width4", "sha256": "0" * 64})
    return folder


@pytest.fixture(scope="module")
def calib_path(clips, fp32_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("calib") / "calib.npz"
    build_calibration_set(
        [clips["spliced"], clips["frames"]], path, fp32_dir, pairs=6, size=SIZE, seed=3, progress=False
    )
    return path


def _indices(sources, pairs, seed=0, rejections=None):
    return [(s.source, s.index) for s in sample_triplets(sources, pairs, SIZE, seed, rejections=rejections)]


# --- sampling ---------------------------------------------------------------------------------


def test_allocation_is_proportional_and_exact():
    assert allocate([100, 300], 8) == [2, 6]
    assert sum(allocate([5, 7, 11], 10)) == 10
    assert allocate([2, 50], 10)[0] <= 2  # never more than a source holds


def test_right_number_of_pairs_spread_over_the_clip(clips):
    sources = open_sources([clips["plain"]])
    assert sources[0].frames == 30  # counted by demuxing
    picks = _indices(sources, 5)
    assert len(picks) == 5 and len(set(picks)) == 5
    starts = sorted(index for _, index in picks)
    # One per sixth of the clip: the first and last picks lie in the first and last segments.
    assert starts[0] < 28 / 5 and starts[-1] >= 4 * 28 / 5


def test_pairs_come_from_every_input_in_proportion(clips):
    sources = open_sources([clips["spliced"], clips["frames"]])
    picks = _indices(sources, 12)
    per_source = [sum(1 for s, _ in picks if s == k) for k in (0, 1)]
    assert per_source == allocate([38, 6], 12) == [10, 2]


def test_scene_cut_in_a_spliced_clip_is_rejected(clips):
    sources = open_sources([clips["spliced"]])
    rejections = Rejections()
    # Ask for almost every triplet, so a sampler that kept cuts would have to include one.
    picks = _indices(sources, 34, rejections=rejections)
    assert len(picks) == 34
    starts = {index for _, index in picks}
    # The second shot starts at frame 20: triplets starting at 18 and 19 straddle the cut.
    assert not starts & {18, 19}
    assert rejections.scene_cut == 2


def test_repeated_frames_are_rejected():
    a, b = scene_frame(0, 96, 64), scene_frame(3, 96, 64)
    sig = [colour_signature(f) for f in (a, a, b)]
    assert triplet_problem([a, a, b], sig, 0.35, 0.25) == "duplicate"
    sig = [colour_signature(f) for f in (a, scene_frame(1, 96, 64), b)]
    assert triplet_problem([a, scene_frame(1, 96, 64), b], sig, 0.35, 0.25) is None


def test_sampling_is_deterministic_with_seed(clips):
    sources = open_sources([clips["spliced"], clips["frames"]])
    first = list(sample_triplets(sources, 6, SIZE, seed=7))
    second = list(sample_triplets(sources, 6, SIZE, seed=7))
    assert [(s.source, s.index) for s in first] == [(s.source, s.index) for s in second]
    assert all(
        np.array_equal(a.frame0, b.frame0) and np.array_equal(a.target, b.target)
        for a, b in zip(first, second, strict=False)
    )
    others = [_indices(sources, 6, seed) for seed in (8, 9, 10)]
    assert any(o != [(s.source, s.index) for s in first] for o in others)


def test_too_many_pairs_is_a_one_line_error(clips):
    sources = open_sources([clips["frames"]])  # 8 frames: 6 triplets
    with pytest.raises(SloMoError, match="cannot sample 7 pairs"):
        list(sample_triplets(sources, 7, SIZE))


def test_bad_inputs_are_refused(tmp_path, clips):
    with pytest.raises(SloMoError, match="not found"):
        open_sources([tmp_path / "missing.mp4"])
    image = next(clips["frames"].iterdir())
    with pytest.raises(SloMoError, match="one image"):
        open_sources([image])
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(SloMoError):
        open_sources([junk])


# --- the calibration set file ----------------------------------------------------------------


def test_calibration_set_contents(calib_path, fp32_dir):
    from superslomo.runtime.onnxruntime_backend import OnnxRuntimeBackend

    calib = CalibSet(calib_path)
    assert len(calib) == 6 and calib.size == SIZE
    assert calib["frame0"].shape == (6, 64, 96, 3) and calib["frame0"].dtype == np.uint8
    assert calib["flow01"].shape == (6, 2, 64, 96) and calib["flow01"].dtype == np.float32
    assert isinstance(calib["flow01"], np.memmap)  # not loaded into memory
    assert ((calib["t"] > 0) & (calib["t"] < 1)).all() and len(set(calib["t"].tolist())) == 6
    assert calib.meta["pairs"] == 6 and calib.meta["seed"] == 3
    # Stored flows are the fp32 flow graph's output for the stored frames.
    backend = OnnxRuntimeBackend(fp32_dir)
    frames = [np.asarray(calib[k][2:3], np.float32).transpose(0, 3, 1, 2) / 255 for k in ("frame0", "frame1")]
    flows = backend.infer("flow", {"frame0": frames[0], "frame1": frames[1]})
    np.testing.assert_allclose(calib["flow01"][2:3], flows["flow01"], atol=1e-4)
    # Members are stored (mappable) and nothing temporary is left beside the file.
    with zipfile.ZipFile(calib_path) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    assert sorted(p.name for p in calib_path.parent.iterdir()) == ["calib.npz"]


def test_calibration_set_is_reproducible(clips, fp32_dir, calib_path, tmp_path):
    again = tmp_path / "again.npz"
    build_calibration_set(
        [clips["spliced"], clips["frames"]], again, fp32_dir, pairs=6, size=SIZE, seed=3, progress=False
    )
    a, b = CalibSet(calib_path), CalibSet(again)
    for key in ("frame0", "frame1", "target", "flow01", "t", "index"):
        np.testing.assert_array_equal(a[key], b[key])


def test_failed_calibration_leaves_nothing(clips, fp32_dir, tmp_path):
    out = tmp_path / "c.npz"
    with pytest.raises(SloMoError):
        build_calibration_set([clips["frames"]], out, fp32_dir, pairs=50, size=SIZE, progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SloMoError, match="multiples of 32"):
        build_calibration_set([clips["frames"]], out, fp32_dir, pairs=2, size=(100, 64), progress=False)


# --- quantization ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def int8_dir(fp32_dir, calib_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "int8"
    # Random weights: the accuracy gate is meaningless here, so it is forced open.
    quantize_model(fp32_dir, calib_path, out, QuantizeOptions(method="max"), max_drop_db=1e9, eval_count=3)
    return out


@pytest.mark.parametrize("graph", ["flow", "interp"])
def test_qdq_around_every_conv_and_nowhere_near_the_warp(int8_dir, graph):
    import onnx

    facts = qdq_facts(int8_dir / f"{graph}.onnx")
    assert facts["convs"] == 23
    assert facts["convs_qdq_input"] == 23 and facts["convs_qdq_weight"] == 23
    assert facts["int32_dequantize"] == 0
    assert facts["warp_inputs_from_qdq"] == 0
    model = onnx.load(str(int8_dir / f"{graph}.onnx"))
    floats = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    dq_outputs = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    for node in model.graph.node:
        if node.op_type == "Conv":
            assert node.input[2] in floats  # bias stays float: no INT32 bias DequantizeLinear
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zero_point = next(i for i in model.graph.initializer if i.name == node.input[2])
            assert zero_point.data_type == onnx.TensorProto.INT8  # symmetric INT8, TensorRT's kind
        if node.op_type in ("GridSample", "Sigmoid", "Clip"):
            assert not set(node.input) & dq_outputs
    # Weights per output channel: one scale per conv output channel.
    scales = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    weight_dq = [
        n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0].endswith("_quantized")
    ]
    assert weight_dq and all(scales[n.input[1]].ndim == 1 and scales[n.input[1]].size > 1 for n in weight_dq)


def test_int8_folder_runs_on_onnxruntime(int8_dir, fp32_dir, calib_path):
    from superslomo.contracts.manifest import read_manifest
    from superslomo.runtime.onnxruntime_backend import OnnxRuntimeBackend

    manifest = read_manifest(int8_dir)
    assert manifest.precision == "int8"
    assert {e.precision for e in manifest.graphs.values()} == {"int8"}
    assert manifest.extra["calibration"]["pairs"] == 6
    assert manifest.extra["quantizer"]["bias"].startswith("float")
    report = json.loads((int8_dir / "accuracy.json").read_text())
    assert set(report["settings"]) == {"fp32", "flow", "interp", "both"}
    assert report["triplets"] == 3
    calib = CalibSet(calib_path)
    frames = [np.asarray(calib[k][:2], np.float32).transpose(0, 3, 1, 2) / 255 for k in ("frame0", "frame1")]
    outputs = {}
    for name, folder in (("fp32", fp32_dir), ("int8", int8_dir)):
        backend = OnnxRuntimeBackend(folder)
        flows = backend.infer("flow", {"frame0": frames[0], "frame1": frames[1]})
        outputs[name] = backend.infer(
            "interp",
            {"frame0": frames[0], "frame1": frames[1], **flows, "t": np.array([0.25, 0.75], np.float32)},
        )["frame_t"]
    assert outputs["int8"].shape == (2, 3, 64, 96)
    assert np.isfinite(outputs["int8"]).all() and outputs["int8"].min() >= 0 and outputs["int8"].max() <= 1
    # Random weights: agreement is only loosely bounded; it still catches a graph that is garbage.
    assert np.abs(outputs["int8"] - outputs["fp32"]).mean() < 0.1
    assert not np.array_equal(outputs["int8"], outputs["fp32"])


def test_gate_refuses_and_writes_nothing(fp32_dir, calib_path, tmp_path):
    out = tmp_path / "int8"
    with pytest.raises(CheckFailed, match="nothing was written"):
        quantize_model(
            fp32_dir,
            calib_path,
            out,
            QuantizeOptions(method="max"),
            max_drop_db=-1e9,
            eval_count=2,
            graphs=("flow",),
        )
    assert list(tmp_path.iterdir()) == []
    result = quantize_model(
        fp32_dir,
        calib_path,
        out,
        QuantizeOptions(method="max"),
        max_drop_db=-1e9,
        force=True,
        eval_count=2,
        graphs=("flow",),
    )
    assert result.refused and (out / "manifest.json").is_file()
    from superslomo.contracts.manifest import read_manifest

    manifest = read_manifest(out)
    assert manifest.graphs["flow"].precision == "int8" and manifest.graphs["interp"].precision == "fp32"
    assert manifest.extra["accuracy"]["forced"] is True


def test_conv_outputs_variant_keeps_the_last_conv_float(fp32_dir, calib_path, tmp_path):
    out = tmp_path / "io"
    quantize_model(
        fp32_dir,
        calib_path,
        out,
        QuantizeOptions(method="max", conv_outputs=True),
        max_drop_db=1e9,
        eval_count=1,
        graphs=("interp",),
    )
    facts = qdq_facts(out / "interp.onnx")
    assert facts["warp_inputs_from_qdq"] == 0 and facts["convs_qdq_input"] == 22
    assert facts["quantize"] > 23  # outputs quantized too


def test_warp_check_catches_qdq_feeding_a_gridsample(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])
    zero = helper.make_tensor("z", TensorProto.INT8, [], [0])
    nodes = [
        helper.make_node("QuantizeLinear", ["grid", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
        helper.make_node("Mul", ["dq", "s"], ["g2"]),
        helper.make_node("GridSample", ["image", "g2"], ["out"], align_corners=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4]),
            helper.make_tensor_value_info("grid", TensorProto.FLOAT, [1, 4, 4, 2]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 4, 4])],
        [scale, zero],
    )
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert qdq_facts(path)["warp_inputs_from_qdq"] == 1


def test_quantize_refusals(fp32_dir, calib_path, tmp_path, clips):
    with pytest.raises(SloMoError, match="unknown method"):
        quantize_model(fp32_dir, calib_path, tmp_path / "x", QuantizeOptions(method="kl"))
    with pytest.raises(SloMoError, match="must differ"):
        quantize_model(fp32_dir, calib_path, fp32_dir)
    with pytest.raises(SloMoError, match="not a calibration set"):
        junk = tmp_path / "junk.npz"
        junk.write_bytes(b"PK nonsense")
        quantize_model(fp32_dir, junk, tmp_path / "y")
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(SloMoError, match="missing"):
        quantize_model(fp32_dir, other, tmp_path / "z")


# --- the command line ------------------------------------------------------------------------


def test_cli_calibrate_and_quantize_errors_are_one_line(clips, fp32_dir, calib_path, tmp_path):
    import subprocess

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "superslomo.cli", *map(str, args)], capture_output=True, text=True
        )

    result = run("calibrate", "--data", tmp_path / "nope.mp4", "-o", tmp_path / "c.npz", "--model", fp32_dir)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "not found" in result.stderr
    result = run(
        "calibrate",
        "--data",
        clips["frames"],
        "-o",
        tmp_path / "c.npz",
        "--model",
        fp32_dir,
        "--size",
        "96by64",
    )
    assert result.returncode == 2 and "WIDTHxHEIGHT" in result.stderr
    result = run(
        "quantize",
        fp32_dir,
        "--calib",
        calib_path,
        "-o",
        tmp_path / "q",
        "--max-drop-db",
        "-1000",
        "--graphs",
        "flow",
        "--eval-pairs",
        "1",
        "--method",
        "max",
    )
    assert (
        result.returncode == 1 and "nothing was written" in result.stderr and result.stderr.count("\n") == 1
    )
    assert not (tmp_path / "q").exists()
    result = run(
        "calibrate",
        "--data",
        clips["frames"],
        "-o",
        tmp_path / "c.npz",
        "--model",
        fp32_dir,
        "--pairs",
        "3",
        "--size",
        "96x64",
    )
    assert result.returncode == 0, result.stderr
    assert "3 pairs" in result.stdout and len(CalibSet(tmp_path / "c.npz")) == 3
