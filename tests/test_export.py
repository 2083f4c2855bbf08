"""ONNX export: graph contracts, warp lowering, opsets, fp16, and parity with PyTorch on ORT."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from superslomo.errors import SloMoError
from superslomo.eval.metrics import psnr
from superslomo.export import ExportOptions, export_model
from superslomo.runtime import read_manifest
from superslomo.runtime.onnxruntime_backend import OnnxRuntimeBackend
from tests.conftest import shared_data

PARITY_ATOL = 1e-4


@pytest.fixture(scope="module", params=["gridsample", "plugin"])
def exported(request, small_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"export_{request.param}")
    export_model(small_model, folder, ExportOptions(warp=request.param))
    return folder, OnnxRuntimeBackend(folder)


def _torch_reference(model, f0, f1, t):
    with torch.no_grad():
        flow01, flow10 = model.flow(f0, f1)
        frame = model.synthesize(f0, f1, flow01, flow10, t).clamp(0, 1)
    return flow01.numpy(), flow10.numpy(), frame.numpy()


def _compare(backend, model, f0, f1, t):
    ref01, ref10, ref_frame = _torch_reference(model, f0, f1, t)
    flows = backend.infer("flow", {"frame0": f0.numpy(), "frame1": f1.numpy()})
    np.testing.assert_allclose(flows["flow01"], ref01, atol=PARITY_ATOL, rtol=0)
    np.testing.assert_allclose(flows["flow10"], ref10, atol=PARITY_ATOL, rtol=0)
    # Feed the reference flows to the interpolation graph so each graph is checked on its own.
    out = backend.infer(
        "interp",
        {"frame0": f0.numpy(), "frame1": f1.numpy(), "flow01": ref01, "flow10": ref10, "t": t.numpy()},
    )
    np.testing.assert_allclose(out["frame_t"], ref_frame, atol=PARITY_ATOL, rtol=0)
    assert np.abs(ref01).max() > 0.5, "flows too small for the warp to be exercised"


@pytest.mark.parametrize("size", [(64, 96), (128, 64)])  # two resolutions from one export
@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_pytorch_on_random_frames(exported, small_model, size, batch):
    torch.manual_seed(size[0] + batch)
    f0, f1 = torch.rand(batch, 3, *size), torch.rand(batch, 3, *size)
    t = torch.tensor([0.5, 0.13, 0.87][:batch])  # a different t per item
    _compare(exported[1], small_model, f0, f1, t)


def test_onnxruntime_matches_pytorch_on_real_frames(exported, small_model):
    from superslomo.eval.datasets import iter_triplets

    triplet = next(iter_triplets(shared_data("ucf101_adacof"), "ucf"))

    def frame(a):  # 240x320 -> 224x320 (a multiple of 32, no padding in this test)
        return torch.from_numpy(a[:224].copy()).permute(2, 0, 1)[None].float() / 255.0

    _compare(exported[1], small_model, frame(triplet.frame0), frame(triplet.frame1), torch.tensor([0.5]))


def test_graph_contracts(exported):
    folder, _ = exported
    manifest = read_manifest(folder)
    flow = onnx.load(str(folder / "flow.onnx"))
    interp = onnx.load(str(folder / "interp.onnx"))
    assert [i.name for i in flow.graph.input] == ["frame0", "frame1"]
    assert [o.name for o in flow.graph.output] == ["flow01", "flow10"]
    assert [i.name for i in interp.graph.input] == ["frame0", "frame1", "flow01", "flow10", "t"]
    assert [o.name for o in interp.graph.output] == ["frame_t"]
    dims = [d.dim_param or d.dim_value for d in interp.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 3, "H", "W"]
    assert {o.domain: o.version for o in interp.opset_import}[""] == 17
    assert manifest.opset == 17 and manifest.kind == "onnx" and manifest.precision == "fp32"
    # No training-only ops and no weights shared between the graphs by reference.
    ops = {n.op_type for g in (flow, interp) for n in g.graph.node}
    assert not ops & {"Dropout", "BatchNormalization", "If", "Loop"}
    assert flow.graph.initializer and interp.graph.initializer


def test_warp_lowering(exported):
    folder, _ = exported
    manifest = read_manifest(folder)
    interp = onnx.load(str(folder / "interp.onnx"))
    warps = [n for n in interp.graph.node if n.op_type in ("GridSample", "BackWarp")]
    assert len(warps) == 4  # two to build the net input, two for the final fusion
    if manifest.warp == "gridsample":
        for node in warps:
            attrs = {
                a.name: (a.s.decode() if a.type == onnx.AttributeProto.STRING else a.i)
                for a in node.attribute
            }
            assert attrs == {"mode": "bilinear", "padding_mode": "zeros", "align_corners": 1}
    else:
        assert all(n.op_type == "BackWarp" and n.domain == "superslomo" for n in warps)
        assert {o.domain: o.version for o in interp.opset_import}["superslomo"] == 1
    flow = onnx.load(str(folder / "flow.onnx"))
    assert not [n for n in flow.graph.node if n.op_type in ("GridSample", "BackWarp")]


@pytest.mark.parametrize("opset", [20, 21, 15])
def test_unsupported_opsets_are_refused(small_model, tmp_path, opset):
    with pytest.raises(SloMoError, match="TensorRT#4646" if opset >= 20 else "too old"):
        export_model(small_model, tmp_path / "x", ExportOptions(opset=opset))
    assert not (tmp_path / "x").exists()


def test_opset_19_keeps_bilinear(small_model, tmp_path):
    export_model(small_model, tmp_path, ExportOptions(opset=19))
    interp = onnx.load(str(tmp_path / "interp.onnx"))
    modes = {
        a.s.decode()
        for n in interp.graph.node
        if n.op_type == "GridSample"
        for a in n.attribute
        if a.name == "mode"
    }
    assert modes == {"bilinear"}
    assert {o.domain: o.version for o in interp.opset_import}[""] == 19


def test_uint8_io(small_model, tmp_path):
    export_model(small_model, tmp_path, ExportOptions(io="uint8"))
    backend = OnnxRuntimeBackend(tmp_path)
    rng = np.random.default_rng(0)
    f0 = rng.integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    f1 = rng.integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    flows = backend.infer("flow", {"frame0": f0, "frame1": f1})
    out = backend.infer(
        "interp", {"frame0": f0, "frame1": f1, **flows, "t": np.array([0.3, 0.6], np.float32)}
    )
    assert out["frame_t"].dtype == np.uint8 and out["frame_t"].shape == (2, 64, 96, 3)
    t0, t1 = (torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255 for a in (f0, f1))
    ref01, ref10, ref = _torch_reference(small_model, t0, t1, torch.tensor([0.3, 0.6]))
    np.testing.assert_allclose(flows["flow01"], ref01, atol=PARITY_ATOL)
    expected = np.round(ref * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    assert np.abs(out["frame_t"].astype(int) - expected).max() <= 1  # rounding at .5 boundaries
    assert read_manifest(tmp_path).io == "uint8"


def _upscaled_real_pair(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    from superslomo.eval.datasets import iter_triplets

    triplet = next(iter_triplets(shared_data("ucf101_adacof"), "ucf"))
    ys = np.arange(height) * triplet.frame0.shape[0] // height
    xs = np.arange(width) * triplet.frame0.shape[1] // width
    return triplet.frame0[ys][:, xs], triplet.frame1[ys][:, xs]


def _run_pair(backend, f0: np.ndarray, f1: np.ndarray, flows=None) -> np.ndarray:
    a = (f0.transpose(2, 0, 1)[None] / 255.0).astype(np.float32)
    b = (f1.transpose(2, 0, 1)[None] / 255.0).astype(np.float32)
    flows = flows or backend.infer("flow", {"frame0": a, "frame1": b})
    out = backend.infer("interp", {"frame0": a, "frame1": b, **flows, "t": np.array([0.5], np.float32)})
    return out["frame_t"][0].transpose(1, 2, 0)


def test_fp16_graph_stays_close_to_fp32_on_real_frames(small_model, tmp_path):
    export_model(small_model, tmp_path / "fp32")
    export_model(small_model, tmp_path / "fp16", ExportOptions(precision="fp16"))
    fp32, fp16 = OnnxRuntimeBackend(tmp_path / "fp32"), OnnxRuntimeBackend(tmp_path / "fp16")
    f0, f1 = _upscaled_real_pair(256, 320)
    score = psnr(_run_pair(fp16, f0, f1), _run_pair(fp32, f0, f1))
    assert score >= 45.0, f"fp16 vs fp32 PSNR {score:.2f} dB"
    assert read_manifest(tmp_path / "fp16").precision == "fp16"
    interp = onnx.load(str(tmp_path / "fp16" / "interp.onnx"))
    conv_weights = {n.input[1] for n in interp.graph.node if n.op_type == "Conv"}
    types = {i.data_type for i in interp.graph.initializer if i.name in conv_weights}
    assert types == {onnx.TensorProto.FLOAT16}
    assert interp.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_fp32_coordinates_beat_fp16_coordinates_at_3840_wide(tmp_path):
    """At 3840 wide fp16 steps are 2-4 px: the naive warp misplaces samples, ours does not."""
    from superslomo.model import super_slomo

    torch.manual_seed(7)
    model = super_slomo(width=2).eval()
    with torch.no_grad():
        model.flow_net.conv3.weight.mul_(20.0)
    export_model(model, tmp_path / "fp32")
    export_model(model, tmp_path / "ours", ExportOptions(precision="fp16"))
    export_model(model, tmp_path / "naive", ExportOptions(precision="fp16", fp16_coordinates=True))
    f0, f1 = _upscaled_real_pair(64, 3840)
    reference_backend = OnnxRuntimeBackend(tmp_path / "fp32")
    a = (f0.transpose(2, 0, 1)[None] / 255.0).astype(np.float32)
    b = (f1.transpose(2, 0, 1)[None] / 255.0).astype(np.float32)
    flows = reference_backend.infer("flow", {"frame0": a, "frame1": b})  # same flows for all three
    reference = _run_pair(reference_backend, f0, f1, flows)
    ours = psnr(_run_pair(OnnxRuntimeBackend(tmp_path / "ours"), f0, f1, flows), reference)
    naive = psnr(_run_pair(OnnxRuntimeBackend(tmp_path / "naive"), f0, f1, flows), reference)
    assert ours > naive + 10.0, f"fp32 coordinates {ours:.1f} dB vs fp16 coordinates {naive:.1f} dB"


def test_polygraphy_comparison_catches_a_perturbed_weight(small_model, tmp_path):
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.comparator import Comparator, RunResults, SimpleCompareFunc
    from polygraphy.comparator.struct import IterationResult

    export_model(small_model, tmp_path)
    torch.manual_seed(11)
    f0, f1 = torch.rand(1, 3, 64, 96), torch.rand(1, 3, 64, 96)
    ref01, ref10, _ = _torch_reference(small_model, f0, f1, torch.tensor([0.5]))
    feed = [{"frame0": f0.numpy(), "frame1": f1.numpy()}]
    reference = RunResults()
    reference.append(
        ("pytorch", [IterationResult({"flow01": ref01, "flow10": ref10}, runner_name="pytorch")])
    )
    compare = SimpleCompareFunc(atol=PARITY_ATOL, rtol=0.0)

    def run(path):
        with OnnxrtRunner(SessionFromOnnx(str(path))) as runner:
            results = RunResults()
            results.append(reference[0])
            results.append((runner.name, [IterationResult(runner.infer(feed[0]), runner_name=runner.name)]))
        return bool(Comparator.compare_accuracy(results, compare_func=compare))

    assert run(tmp_path / "flow.onnx")
    model = onnx.load(str(tmp_path / "flow.onnx"))
    weight = next(
        i for i in model.graph.initializer if len(i.dims) == 4 and i.dims[0] == 4
    )  # a conv3-ish weight
    array = onnx.numpy_helper.to_array(weight).copy()
    array.flat[0] += 0.05
    weight.CopyFrom(onnx.numpy_helper.from_array(array, weight.name))
    onnx.save(model, str(tmp_path / "perturbed.onnx"))
    assert not run(tmp_path / "perturbed.onnx")


def test_cli_export_writes_graphs_and_manifest(small_model, tmp_path):
    from conftest import public_format_checkpoint

    from superslomo.model import save_checkpoint

    # The public training script's format (two state dicts, datetime metadata), as users have it.
    public = public_format_checkpoint(small_model, tmp_path / "SuperSloMo.ckpt")
    save_checkpoint(small_model, tmp_path / "m.safetensors")
    out = tmp_path / "graphs"
    result = subprocess.run(
        [sys.executable, "-m", "superslomo.cli", "export", str(public), "-o", str(out), "--io", "uint8"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(out)
    assert manifest.io == "uint8" and manifest.source["sha256"] and manifest.source["width"] == 4
    assert manifest.source["checkpoint"] == "SuperSloMo.ckpt"
    assert sorted(p.name for p in out.iterdir()) == ["flow.onnx", "interp.onnx", "manifest.json"]
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "superslomo.cli",
            "export",
            str(tmp_path / "m.safetensors"),
            "-o",
            str(tmp_path / "o2"),
            "--warp",
            "magic",
        ],
        capture_output=True,
        text=True,
    )
    assert (
        bad.returncode == 2
        and bad.stderr.startswith("error: unknown warp")
        and not (tmp_path / "o2").exists()
    )
