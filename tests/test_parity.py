"""`slomo parity`: passes on a correct export, fails (exit 1, naming the output) on real drift."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from superslomo.cli import main
from superslomo.errors import SloMoError
from superslomo.runtime import Backend
from tests.conftest import shared_data

SIZE = "96x64"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 2)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def exported(small_model, tmp_path_factory):
    """One fp32 and one fp16 export of the small model, shared by the module (export is slow)."""
    from superslomo.export import ExportOptions, export_model
    from superslomo.model import save_checkpoint

    root = tmp_path_factory.mktemp("parity")
    checkpoint = root / "small.safetensors"
    save_checkpoint(small_model, checkpoint)
    for precision in ("fp32", "fp16"):
        export_model(small_model, root / precision, ExportOptions(precision=precision))
    return root, checkpoint


def _copy(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


def _rewrite_graph(folder: Path, graph: str, model) -> None:
    """Save an edited graph and re-sign it in the manifest, so the folder loads like a real export
    whose numbers are wrong (the manifest check alone would otherwise catch the edit)."""
    import onnx

    from superslomo.contracts.files import file_sha256
    from superslomo.contracts.manifest import read_manifest, write_manifest

    path = folder / f"{graph}.onnx"
    onnx.save(model, str(path))
    manifest = read_manifest(folder, verify_files=False)
    manifest.graphs[graph] = replace(manifest.graphs[graph], sha256=file_sha256(path))
    write_manifest(folder, manifest)


def _perturb_weight(folder: Path, graph: str) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(folder / f"{graph}.onnx"))
    net = "flow_net" if graph == "flow" else "interp_net"
    init = next(i for i in model.graph.initializer if i.name == f"model.{net}.conv3.weight")
    weights = numpy_helper.to_array(init).copy()
    weights.flat[0] += 0.1 * np.abs(weights).max()  # one weight, by a tenth of the layer's largest
    init.CopyFrom(numpy_helper.from_array(weights, init.name))
    _rewrite_graph(folder, graph, model)


def _flip_t(folder: Path) -> None:
    """The classic bug: an interpolation graph that computes with 1 - t instead of t."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(folder / "interp.onnx"))
    users = [n for n in model.graph.node if "t" in n.input]
    assert users, "the interp graph no longer reads its t input; update this test"
    for node in users:
        node.input[:] = ["t_flipped" if name == "t" else name for name in node.input]
    one = numpy_helper.from_array(np.array(1.0, dtype=np.float32), "t_one")
    model.graph.initializer.append(one)
    model.graph.node.insert(0, helper.make_node("Sub", ["t_one", "t"], ["t_flipped"], name="flip_t"))
    onnx.checker.check_model(model)
    _rewrite_graph(folder, "interp", model)


def test_parity_passes_on_correct_export(exported, tmp_path, capsys):
    root, checkpoint = exported
    report, junit = tmp_path / "parity.json", tmp_path / "parity.xml"
    code, out, err = run_cli(
        capsys,
        "parity",
        str(root / "fp32"),
        "--against",
        str(checkpoint),
        "--sizes",
        SIZE,
        "--report",
        str(report),
        "--junit",
        str(junit),
    )
    assert code == 0, err
    assert "parity: pass" in out
    data = json.loads(report.read_text())
    assert data["passed"] and data["failed"] == []
    assert data["gate"] == {
        "mode": "tolerance",
        "atol": 1e-4,
        "rtol": 1e-4,
        "min_psnr": None,
        "origin": "default for fp32",
    }
    assert data["checkpoint_matches_manifest"] is None  # exported in-process, no source sha recorded
    # fp32 graphs run as exported: no fp16 emulation, nothing said about one.
    assert data["backend"] == "onnxruntime" and data["emulation"] is None and "measured:" not in out
    for name in ("flow01", "flow10", "frame_t", "final"):
        output = data["outputs"][name]
        assert output["passed"] and output["max_abs"] < 1e-4 and output["atol"] == 1e-4
        assert 0 <= output["mean_abs"] <= output["max_abs"]
    assert data["outputs"]["final"]["psnr"] > 80
    # The flows are not trivially zero, or the comparison would prove nothing.
    assert data["cases"][0]["outputs"]["flow01"]["shape"] == [1, 2, 64, 96]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "4" and suite.get("failures") == "0"
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


@pytest.mark.parametrize(
    "graph,failing,passing", [("flow", "flow01", "frame_t"), ("interp", "frame_t", "flow01")]
)
def test_parity_fails_on_a_perturbed_weight(exported, tmp_path, capsys, graph, failing, passing):
    root, checkpoint = exported
    folder = _copy(root / "fp32", tmp_path / "model")
    _perturb_weight(folder, graph)
    report, junit = tmp_path / "parity.json", tmp_path / "parity.xml"
    code, _out, err = run_cli(
        capsys,
        "parity",
        str(folder),
        "--against",
        str(checkpoint),
        "--sizes",
        SIZE,
        "--report",
        str(report),
        "--junit",
        str(junit),
    )
    assert code == 1
    assert err.startswith("error: parity failed:") and failing in err and "Traceback" not in err
    data = json.loads(report.read_text())
    assert not data["passed"] and failing in data["failed"] and "final" in data["failed"]
    # frame_t is fed the reference flows: a flow-graph error is not blamed on the interp graph.
    assert passing not in data["failed"]
    assert data["outputs"][failing]["max_abs"] > data["outputs"][failing]["atol"]
    failures = [c for c in ET.parse(junit).getroot().iter("testcase") if c.find("failure") is not None]
    assert failing in {c.get("name") for c in failures}


def test_parity_fails_when_t_is_mishandled(exported, small_model, tmp_path, capsys):
    root, checkpoint = exported
    folder = _copy(root / "fp32", tmp_path / "model")
    _flip_t(folder)
    code, _out, err = run_cli(
        capsys,
        "parity",
        str(folder),
        "--against",
        str(checkpoint),
        "--sizes",
        SIZE,
        "--report",
        str(tmp_path / "r.json"),
    )
    assert code == 1 and "frame_t" in err
    data = json.loads((tmp_path / "r.json").read_text())
    assert set(data["failed"]) == {"frame_t", "final"}
    # At t = 0.5 alone the bug is invisible: the reason the default times are 0.25, 0.5, 0.75.
    from superslomo.eval.parity import check_parity, choose_gate, random_cases
    from superslomo.eval.torch_backend import TorchBackend
    from superslomo.runtime import open_backend

    backend = open_backend(folder, "onnxruntime")
    only_half = check_parity(
        backend, TorchBackend(small_model), random_cases([(96, 64)]), choose_gate("fp32"), times=(0.5,)
    )
    assert only_half["passed"]


def test_fp16_export_fails_fp32_tolerances_and_passes_its_own(exported, tmp_path, capsys):
    root, checkpoint = exported
    report = tmp_path / "r.json"
    code, _out, err = run_cli(
        capsys,
        "parity",
        str(root / "fp16"),
        "--against",
        str(checkpoint),
        "--sizes",
        SIZE,
        "--atol",
        "1e-4",
        "--rtol",
        "1e-4",
        "--report",
        str(report),
    )
    assert code == 1 and "flow01" in err
    assert json.loads(report.read_text())["outputs"]["flow01"]["max_abs"] > 1e-4
    code, out, err = run_cli(
        capsys,
        "parity",
        str(root / "fp16"),
        "--against",
        str(checkpoint),
        "--sizes",
        SIZE,
        "--report",
        str(report),
    )
    assert code == 0, err
    assert "PSNR >= 40.0 dB on frames (default for fp16)" in out and "ok (reported)" in out
    data = json.loads(report.read_text())
    assert data["gate"]["mode"] == "psnr" and data["gate"]["min_psnr"] == 40.0
    assert data["outputs"]["final"]["min_psnr"] == 40.0 and data["outputs"]["final"]["psnr"] >= 40.0
    assert data["outputs"]["flow01"]["gated"] is False
    # An impossible PSNR floor turns the same numbers into a failure naming the frames.
    code, _out, err = run_cli(
        capsys,
        "parity",
        str(root / "fp16"),
        "--against",
        str(checkpoint),
        "--sizes",
        SIZE,
        "--min-psnr",
        "500",
    )
    assert code == 1 and "final" in err and "PSNR" in err


def test_parity_on_real_frames(exported, tmp_path, capsys):
    pair = shared_data("rife_demo")
    root, checkpoint = exported
    code, _out, err = run_cli(
        capsys,
        "parity",
        str(root / "fp32"),
        "--against",
        str(checkpoint),
        "--data",
        str(pair / "I0_0.png"),
        "--data",
        str(pair / "I0_1.png"),
        "--sizes",
        "160x90",
        "--report",
        str(tmp_path / "r.json"),
    )
    assert code == 0, err
    data = json.loads((tmp_path / "r.json").read_text())
    assert [c["name"] for c in data["cases"]] == ["I0_0-I0_1@160x90"] and data["inputs"] == "frames"
    # 90 rows are padded to 96 for the graphs; the final frames are cropped back.
    assert data["cases"][0]["outputs"]["flow01"]["shape"] == [1, 2, 96, 160]
    assert data["cases"][0]["outputs"]["final"]["shape"] == [3, 90, 160, 3]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--atol", "1e-3", "--min-psnr", "30"], "not both"),
        (["--sizes", "96"], "WIDTHxHEIGHT"),
        (["--backend", "tvm"], "unknown backend"),
        (["--atol", "-1"], ">= 0"),
        (["--data", "/nonexistent/frames"], "not found"),
    ],
)
def test_parity_usage_errors_are_one_line_exit_2(exported, capsys, args, message):
    root, checkpoint = exported
    code, _out, err = run_cli(capsys, "parity", str(root / "fp32"), "--against", str(checkpoint), *args)
    assert code == 2 and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_parity_refuses_a_tampered_folder_as_input_error(exported, tmp_path, capsys):
    root, checkpoint = exported
    folder = _copy(root / "fp32", tmp_path / "model")
    with open(folder / "interp.onnx", "ab") as handle:
        handle.write(b"\0")
    code, _out, err = run_cli(capsys, "parity", str(folder), "--against", str(checkpoint))
    assert code == 2 and "does not match its manifest" in err


class _Faulty(Backend):
    """Any Backend works: this one wraps the PyTorch model and breaks one output."""

    name = "faulty"

    def __init__(self, inner, graph: str, output: str, value: float) -> None:
        super().__init__(None, inner.manifest)
        self.inner, self.graph, self.output, self.value = inner, graph, output, value

    def infer(self, graph, inputs):
        out = dict(self.inner.infer(graph, inputs))
        if graph == self.graph:
            out[self.output] = out[self.output].copy()
            out[self.output].flat[0] = self.value
        return out


def test_any_backend_goes_through_the_same_path(small_model):
    from superslomo.eval.parity import check_parity, choose_gate, random_cases
    from superslomo.eval.reports import json_safe
    from superslomo.eval.torch_backend import TorchBackend

    reference = TorchBackend(small_model)
    cases = random_cases([(64, 32)], seed=3)
    same = check_parity(TorchBackend(small_model), reference, cases, choose_gate("fp32"))
    assert same["passed"] and same["outputs"]["final"]["psnr"] == float("inf")
    assert json_safe(same)["outputs"]["final"]["psnr"] == "inf"
    broken = check_parity(
        _Faulty(TorchBackend(small_model), "flow", "flow10", np.nan), reference, cases, choose_gate("fp16")
    )
    assert broken["failed"] and "flow10" in broken["failed"]
    assert broken["cases"][0]["outputs"]["flow10"]["why"].startswith("non-finite")


def test_gate_defaults_and_inputs():
    from superslomo.eval.parity import choose_gate, parse_sizes, random_cases

    assert choose_gate("int8").min_psnr == 30.0 and choose_gate("fp16").mode == "psnr"
    assert choose_gate("fp32", atol=1e-3).rtol == 0.0  # only the tolerance given counts
    assert parse_sizes("448x256, 1280x720") == [(448, 256), (1280, 720)]
    with pytest.raises(SloMoError):
        parse_sizes("4x4")
    a, b = random_cases([(96, 64)], seed=5), random_cases([(96, 64)], seed=5)
    assert np.array_equal(a[0].frame0, b[0].frame0) and a[0].frame0.shape == (64, 96, 3)
    assert not np.array_equal(a[0].frame0, a[0].frame1)  # there is motion to interpolate


def test_frame_cases_take_each_sequence_of_a_data_set_as_its_own_pair(tmp_path):
    """Chaining a ucf/Middlebury tree frame by frame would pair one sequence's last frame with the
    next one's first: two unrelated shots. Each sequence must give its own (frame0, frame2) pair."""
    from PIL import Image

    from superslomo.eval.parity import frame_cases

    rng = np.random.default_rng(0)
    sizes = {"1": (40, 48), "2": (56, 64)}  # (height, width) differ per sequence: a cross pair cannot hide
    written = {}
    for name, (height, width) in sizes.items():
        (tmp_path / name).mkdir()
        for stem in ("frame0", "frame1", "frame2"):
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(image).save(tmp_path / name / f"{stem}.png")
            written[name, stem] = image
    cases = frame_cases([tmp_path], pairs=5)
    assert len(cases) == 2
    for case, name in zip(cases, ("1", "2"), strict=True):
        assert case.name.startswith(f"{name}[0]-{name}[1]")
        assert np.array_equal(case.frame0, written[name, "frame0"])
        assert np.array_equal(case.frame1, written[name, "frame2"])
