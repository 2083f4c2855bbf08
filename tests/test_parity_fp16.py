"""`slomo parity` on an fp16 folder measures fp16 storage (emulated on the CPU), not fp32 arithmetic.

ONNX Runtime's CPU provider runs an fp16 graph in fp32; with fp16-exact weights (as shipped) the
old gate saw only fp32 rounding, ~140 dB, and passed whatever fp16 did. fp16 has a relative step of
2^-11 against fp32's 2^-24: 13 bits, ~78 dB apart. The bounds below sit between the two.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from superslomo.errors import SloMoError
from tests.test_parity import SIZE, run_cli

# Between what fp32 rounding gives (2^-24 relative: > 140 dB here) and what fp16 storage can give.
BETWEEN_FP32_AND_FP16_DB = 130.0


def _round16(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float16).astype(np.float32)


def _psnr_to_peak(test: np.ndarray, ref: np.ndarray) -> float:
    """PSNR with the reference's own peak: flows are pixels, not [0,1]."""
    mse = float(np.mean((test.astype(np.float64) - ref) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(float(np.abs(ref).max()) ** 2 / mse)


@pytest.fixture(scope="module")
def fp16_folder(small_model, tmp_path_factory):
    """The small model with fp16-exact weights (as the shipped weights are), exported fp16."""
    import torch

    from superslomo.export import ExportOptions, export_model
    from superslomo.model import save_checkpoint

    model = copy.deepcopy(small_model)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    root = tmp_path_factory.mktemp("parity-fp16")
    save_checkpoint(model, root / "small16.safetensors")
    export_model(model, root / "fp16", ExportOptions(precision="fp16"))
    return root / "fp16", root / "small16.safetensors", model


def _inputs():
    from superslomo.eval.parity import random_pair

    f0, f1 = random_pair(96, 64, np.random.default_rng(7))
    return {
        name: (f.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
        for name, f in (("frame0", f0), ("frame1", f1))
    }


def test_rounding_follows_the_fp16_graphs_own_types(fp16_folder):
    import onnx

    from superslomo.eval.fp16_emulation import emulate_fp16_storage

    folder, _ckpt, _model = fp16_folder
    source = onnx.load(str(folder / "interp.onnx"))
    model, stats = emulate_fp16_storage(source)
    onnx.checker.check_model(model, full_check=True)
    assert not [i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def rounded(output: str) -> bool:
        return any(
            n.op_type == "Cast" and n.attribute[0].i == onnx.TensorProto.FLOAT16
            for n in consumers.get(output, [])
        )

    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 23 and all(rounded(n.output[0]) for n in convs)  # every U-Net conv, stored fp16
    # The warp's coordinates and sampling, and the fusion after it, are fp32 in the export: kept so.
    samples = [n for n in model.graph.node if n.op_type == "GridSample"]
    assert len(samples) == 4 and not any(rounded(n.output[0]) or rounded(n.input[1]) for n in samples)
    assert stats.rounded >= 23 * 2 and {"GridSample", "Sigmoid", "Div"} <= set(stats.kept_fp32)
    # A copy: the folder's own graph is left as it was.
    assert stats.weights == sum(i.data_type == onnx.TensorProto.FLOAT16 for i in source.graph.initializer)


def test_emulation_survives_onnxruntime_optimisation(fp16_folder):
    """Every flow value leaves a U-Net rounded to fp16: if ONNX Runtime folded the Cast pairs, the
    flows would be off the fp16 grid, as they are when it runs the fp16 graph itself."""
    from superslomo.contracts.manifest import read_manifest
    from superslomo.eval.fp16_emulation import open_emulated_backend
    from superslomo.runtime import open_backend

    folder, _ckpt, _model = fp16_folder
    inputs = _inputs()
    emulated, _ = open_emulated_backend(folder, read_manifest(folder))
    plain = open_backend(folder, "onnxruntime")
    emu_flow = emulated.infer("flow", inputs)["flow01"]
    plain_flow = plain.infer("flow", inputs)["flow01"]
    assert np.array_equal(emu_flow, _round16(emu_flow))
    assert not np.array_equal(plain_flow, _round16(plain_flow))
    assert not np.array_equal(emu_flow, plain_flow)


def test_emulated_error_is_fp16_sized(fp16_folder):
    """At least the error of rounding the fp32 flows to fp16 once (the last rounding alone makes it),
    and not far beyond: ~50 roundings in a row, amplified by the net, but still fp16, not garbage."""
    from superslomo.contracts.manifest import read_manifest
    from superslomo.eval.fp16_emulation import open_emulated_backend
    from superslomo.eval.torch_backend import TorchBackend
    from superslomo.runtime import open_backend

    folder, _ckpt, model = fp16_folder
    inputs = _inputs()
    ref = TorchBackend(model).infer("flow", inputs)["flow01"]
    once = _psnr_to_peak(_round16(ref), ref)
    emulated = _psnr_to_peak(
        open_emulated_backend(folder, read_manifest(folder))[0].infer("flow", inputs)["flow01"], ref
    )
    plain = _psnr_to_peak(open_backend(folder, "onnxruntime").infer("flow", inputs)["flow01"], ref)
    assert 40.0 < emulated <= once + 1.0, (emulated, once)
    assert plain > once + 30.0, (plain, once)  # the old gate saw fp32 rounding only


def test_gate_measures_fp16_where_the_old_one_passed_anything(fp16_folder, tmp_path, capsys):
    from superslomo.eval.parity import check_parity, choose_gate, random_cases
    from superslomo.eval.torch_backend import TorchBackend
    from superslomo.runtime import open_backend

    folder, checkpoint, model = fp16_folder
    report = tmp_path / "r.json"
    code, out, err = run_cli(
        capsys, "parity", str(folder), "--against", str(checkpoint), "--sizes", SIZE, "--report", str(report)
    )
    assert code == 0, err
    data = json.loads(report.read_text())
    final = data["outputs"]["final"]["psnr"]
    assert 40.0 < final < BETWEEN_FP32_AND_FP16_DB
    # The report says plainly what this number is, and what it is not.
    assert data["backend"] == "onnxruntime-fp16-emulated"
    assert (
        data["emulation"]["measured"]
        == "fp16 storage rounding of weights and activations, emulated on the CPU"
    )
    assert (
        "TensorRT" in data["emulation"]["not_measured"] and "arithmetic" in data["emulation"]["not_measured"]
    )
    assert data["emulation"]["graphs"]["flow"]["rounded_activations"] > 0
    assert "measured: fp16 storage rounding of weights and activations, emulated on the CPU" in out
    assert "not measured: fp16 arithmetic" in out

    code, _out, err = run_cli(
        capsys,
        "parity",
        str(folder),
        "--against",
        str(checkpoint),
        "--sizes",
        SIZE,
        "--min-psnr",
        str(BETWEEN_FP32_AND_FP16_DB),
    )
    assert code == 1 and "final" in err and "PSNR" in err
    # The old gate (ONNX Runtime on the fp16 graph as is) passed the same floor.
    old = check_parity(
        open_backend(folder, "onnxruntime"),
        TorchBackend(model),
        random_cases([(96, 64)]),
        choose_gate("fp16", min_psnr=BETWEEN_FP32_AND_FP16_DB),
    )
    assert old["passed"], old["outputs"]["final"]


def test_emulation_refuses_what_it_cannot_represent(fp16_folder):
    from dataclasses import replace

    from onnx import TensorProto, helper

    from superslomo.contracts.manifest import read_manifest
    from superslomo.eval.fp16_emulation import emulate_fp16_storage, open_emulated_backend

    folder, _ckpt, _model = fp16_folder
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2])],
    )
    with pytest.raises(SloMoError, match="fp16 inputs or outputs"):
        emulate_fp16_storage(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    with pytest.raises(SloMoError, match="needs an fp16 ONNX folder"):
        open_emulated_backend(folder, replace(read_manifest(folder), precision="fp32"))
