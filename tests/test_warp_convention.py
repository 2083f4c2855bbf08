"""The warp convention is data: the exact warp (zero flow = identity) beside the public weights'
reference warp, carried from the checkpoint config through export, manifest, ONNX Runtime (both
export variants) and the BackWarp ops; demo16 (shipped until 2026-12-03) stays reference with
unchanged output."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from superslomo.contracts.files import file_sha256
from superslomo.contracts.manifest import WARP_CONVENTIONS, ManifestError, read_manifest
from superslomo.errors import SloMoError
from superslomo.export import ExportOptions, export_model
from superslomo.model import (
    CheckpointError,
    inspect_checkpoint,
    load_checkpoint,
    save_checkpoint,
    super_slomo,
)
from superslomo.model.slomo import ModelConfig
from superslomo.model.warp import CONVENTIONS, backwarp
from superslomo.runtime.onnxruntime_backend import OnnxRuntimeBackend
from superslomo.runtime.warp_numpy import backwarp_numpy
from tests.conftest import public_format_checkpoint

ROOT = Path(__file__).resolve().parents[1]
PARITY_ATOL = 1e-4


def _both(image: torch.Tensor, flow: torch.Tensor, convention: str) -> tuple[np.ndarray, np.ndarray]:
    """The PyTorch custom op's and the numpy BackWarp op's result."""
    return backwarp(image, flow, convention).numpy(), backwarp_numpy(image.numpy(), flow.numpy(), convention)


def test_every_layer_knows_the_same_conventions():
    from superslomo.engine import onnx_prep, triton_backwarp

    assert CONVENTIONS == ("reference", "exact")
    assert CONVENTIONS == WARP_CONVENTIONS == triton_backwarp.CONVENTIONS == onnx_prep.CONVENTIONS


@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (2, 3, 13, 17), (1, 1, 64, 96)])
def test_zero_flow_is_the_identity_under_exact(shape):
    n, _, h, w = shape
    image = torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)))
    for got in _both(image, torch.zeros(n, 2, h, w), "exact"):
        assert np.array_equal(got, image.numpy())  # bit for bit, not merely close


def test_zero_flow_under_reference_is_the_documented_ramp():
    """Reference: zero flow reads pixel x (W-1)/W, a shift from 0 px at the left edge to nearly 1 px
    at the right (likewise down the rows); the public weights learnt to cancel it."""
    h, w = 16, 64
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    image = torch.from_numpy(np.stack((cols, rows))[None])  # channel 0 = column index, 1 = row index
    for got in _both(image, torch.zeros(1, 2, h, w), "reference"):
        np.testing.assert_allclose(got[0, 0], cols * (w - 1) / w, atol=1e-4)
        np.testing.assert_allclose(got[0, 1], rows * (h - 1) / h, atol=1e-4)
        shift = image.numpy()[0, 0] - got[0, 0]
        assert shift[:, 0].max() < 1e-6 and shift[:, -1].min() == pytest.approx((w - 1) / w, abs=1e-4)


@pytest.mark.parametrize("dx, dy", [(3, -2), (-5, 4), (0, 1)])
def test_integer_flow_moves_the_image_by_whole_pixels_under_exact(dx, dy):
    n, c, h, w = 2, 3, 16, 24
    image = torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(7))
    flow = torch.empty(n, 2, h, w)
    flow[:, 0], flow[:, 1] = float(dx), float(dy)
    # A backward warp reads out[r, c] = image[r + dy, c + dx]: the interior moves exactly, the rest is zeros.
    expected = torch.zeros_like(image)
    rs, cs = slice(max(0, -dy), min(h, h - dy)), slice(max(0, -dx), min(w, w - dx))
    expected[:, :, rs, cs] = image[:, :, rs.start + dy : rs.stop + dy, cs.start + dx : cs.stop + dx]
    for got in _both(image, flow, "exact"):
        assert np.array_equal(got, expected.numpy())
    # The reference warp does not: its sample positions are scaled by (W-1)/W.
    assert not np.array_equal(backwarp(image, flow).numpy(), expected.numpy())


def test_numpy_op_matches_the_custom_op_on_random_flows():
    gen = torch.Generator().manual_seed(11)
    image = torch.rand(2, 3, 12, 20, generator=gen)
    flow = (torch.rand(2, 2, 12, 20, generator=gen) - 0.5) * 30  # many samples outside
    for convention in CONVENTIONS:
        torch_out, numpy_out = _both(image, flow, convention)
        np.testing.assert_allclose(numpy_out, torch_out, atol=1e-6, rtol=0)


def test_unknown_conventions_are_one_line_errors():
    image, flow = torch.rand(1, 3, 4, 4), torch.zeros(1, 2, 4, 4)
    for call in (
        lambda: backwarp(image, flow, "sideways"),
        lambda: backwarp_numpy(image.numpy(), flow.numpy(), "sideways"),
        lambda: ModelConfig(width=4, warp="sideways"),
        lambda: ModelConfig.from_dict({"warp": 1}),
    ):
        with pytest.raises(SloMoError) as caught:
            call()
        assert "\n" not in str(caught.value) and "reference" in str(caught.value)


# Checkpoints ---------------------------------------------------------------------------------


def _header(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()


def _rewrite_config(src: Path, dst: Path, config: dict) -> Path:
    """The same weights with another config in the header (as an older or a foreign writer would)."""
    from safetensors.torch import load_file, save_file

    header = {**_header(src), "config": json.dumps(config)}
    save_file(load_file(str(src)), str(dst), metadata=header)
    return dst


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_safetensors_round_trips_the_warp_field(tmp_path, convention):
    torch.manual_seed(2)
    model = super_slomo(width=4, warp=convention).eval()
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path)
    assert json.loads(_header(path)["config"]) == {"width": 4, "warp": convention}
    loaded = load_checkpoint(path)
    assert loaded.config.warp == convention and inspect_checkpoint(path).warp == convention
    f0, f1 = torch.rand(1, 3, 32, 64), torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        assert torch.equal(loaded(f0, f1, torch.tensor([0.4])), model(f0, f1, torch.tensor([0.4])))


def test_safetensors_from_before_the_field_loads_as_reference(tmp_path):
    save_checkpoint(super_slomo(width=4, warp="exact"), tmp_path / "new.safetensors")
    old = _rewrite_config(tmp_path / "new.safetensors", tmp_path / "old.safetensors", {"width": 4})
    assert load_checkpoint(old).config.warp == "reference" and inspect_checkpoint(old).warp == "reference"


def test_a_bad_warp_in_a_checkpoint_config_is_a_one_line_error(tmp_path):
    save_checkpoint(super_slomo(width=4), tmp_path / "good.safetensors")
    bad = _rewrite_config(
        tmp_path / "good.safetensors", tmp_path / "bad.safetensors", {"width": 4, "warp": "sideways"}
    )
    with pytest.raises(CheckpointError, match="bad config: warp convention"):
        load_checkpoint(bad)
    result = subprocess.run(
        [sys.executable, "-m", "superslomo.cli", "info", str(bad)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stderr.startswith("error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_public_format_checkpoints_are_always_reference(tmp_path):
    # Even weights that came from an exact model: the public format has no field to say so.
    path = public_format_checkpoint(super_slomo(width=4, warp="exact"), tmp_path / "SuperSloMo.ckpt")
    assert load_checkpoint(path).config.warp == "reference" and inspect_checkpoint(path).warp == "reference"


def _pattern(shift: float) -> torch.Tensor:
    """A smooth, textured test frame moved `shift` px to the right (no RNG: the same on every machine)."""
    yy, xx = np.mgrid[0:64, 0:96].astype(np.float64)
    x = xx - shift
    r = 0.5 + 0.4 * np.sin(x / 5.0) * np.cos(yy / 7.0)
    g = 0.5 + 0.3 * np.cos((x + yy) / 9.0)
    b = ((x // 8 + yy // 8) % 2) * 0.6 + 0.2
    return torch.from_numpy(np.stack([r, g, b])[None].astype(np.float32))


def test_demo16_still_loads_as_reference_with_unchanged_output():
    """Numbers frozen from the demo16 weights before the convention existed (one CPU thread). demo16
    shipped until 2026-12-03; its file is kept as the reference-warp checkpoint users still have."""
    model = load_checkpoint(ROOT / "tests" / "data" / "demo16_reference_warp.safetensors")
    assert model.config.warp == "reference"
    f0, f1, t = _pattern(0.0), _pattern(3.0), torch.tensor([0.5])
    with torch.no_grad():
        flow01, flow10 = model.flow(f0, f1)
        out = model.synthesize(f0, f1, flow01, flow10, t)
        exact = copy.deepcopy(model)
        exact.config = ModelConfig(width=16, warp="exact")
        other = exact.synthesize(f0, f1, flow01, flow10, t)
    assert float(flow01[:, 0].mean()) == pytest.approx(2.2425711154937744, abs=1e-5)
    assert float(out.mean()) == pytest.approx(0.499132364988327, abs=1e-5)
    assert float((out - 0.5).abs().mean()) == pytest.approx(0.19572728872299194, abs=1e-5)
    frozen = [
        0.47082847356796265,
        0.2845945954322815,
        0.800000011920929,
        0.3960345387458801,
        0.49335306882858276,
    ]
    at = ((0, 10, 20), (1, 33, 47), (2, 50, 80), (0, 0, 0), (1, 63, 95))
    got = [float(out[0, c, y, x]) for c, y, x in at]
    assert got == pytest.approx(frozen, abs=1e-5)
    assert (other - out).abs().max() > 1e-3  # the frozen numbers would catch a change of convention


# Export, manifest, ONNX Runtime ---------------------------------------------------------------


@pytest.fixture(scope="module")
def exact_model():
    torch.manual_seed(4321)
    model = super_slomo(width=4, warp="exact").eval()
    with torch.no_grad():  # as conftest's small_model: flows and visibility that vary
        model.flow_net.conv3.weight.mul_(20.0)
        model.interp_net.conv3.weight.mul_(5.0)
    return model


@pytest.fixture(scope="module")
def exports(exact_model, tmp_path_factory):
    """The exact model's export folder per variant, made once on first use."""
    made: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in made:
            made[variant] = tmp_path_factory.mktemp(f"exact_{variant}")
            export_model(exact_model, made[variant], ExportOptions(warp=variant))
        return made[variant]

    return get


@pytest.fixture(scope="module", params=["gridsample", "plugin"])
def exact_export(request, exports):
    return exports(request.param)


def _warp_nodes(path: Path) -> list:
    return [n for n in onnx.load(str(path)).graph.node if n.op_type in ("GridSample", "BackWarp")]


def _attributes(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _interp_parity(backend, model, seed=0, size=(64, 96)) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    f0, f1 = torch.rand(2, 3, *size, generator=gen), torch.rand(2, 3, *size, generator=gen)
    t = torch.tensor([0.5, 0.27])
    with torch.no_grad():
        flow01, flow10 = model.flow(f0, f1)
        ref = model.synthesize(f0, f1, flow01, flow10, t).clamp(0, 1).numpy()
    assert flow01.abs().max() > 0.5, "flows too small for the warp to be exercised"
    flows = backend.infer("flow", {"frame0": f0.numpy(), "frame1": f1.numpy()})
    np.testing.assert_allclose(flows["flow01"], flow01.numpy(), atol=PARITY_ATOL, rtol=0)
    out = backend.infer(
        "interp",
        {
            "frame0": f0.numpy(),
            "frame1": f1.numpy(),
            "flow01": flow01.numpy(),
            "flow10": flow10.numpy(),
            "t": t.numpy(),
        },
    )["frame_t"]
    np.testing.assert_allclose(out, ref, atol=PARITY_ATOL, rtol=0)
    return out


def _as_reference(model):
    twin = copy.deepcopy(model)
    twin.config = ModelConfig(width=model.config.width, warp="reference")
    return twin


def test_exact_model_exports_its_convention_and_matches_pytorch_on_onnxruntime(exact_export, exact_model):
    manifest = read_manifest(exact_export)
    assert manifest.warp_convention == "exact"
    assert json.loads((exact_export / "manifest.json").read_text())["warp_convention"] == "exact"
    nodes = _warp_nodes(exact_export / "interp.onnx")
    assert len(nodes) == 4
    for node in nodes:
        attrs = _attributes(node)
        if manifest.warp == "gridsample":
            assert attrs["align_corners"] == 0  # pixel centres at (x + 0.5)/W
        else:
            assert node.domain == "superslomo" and attrs["convention"] == b"exact"
    out = _interp_parity(OnnxRuntimeBackend(exact_export), exact_model)
    # Parity means something: the same weights under the reference warp give another picture.
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        f0, f1 = torch.rand(2, 3, 64, 96, generator=gen), torch.rand(2, 3, 64, 96, generator=gen)
        other = _as_reference(exact_model)
        flow01, flow10 = other.flow(f0, f1)
        ref_out = other.synthesize(f0, f1, flow01, flow10, torch.tensor([0.5, 0.27])).clamp(0, 1).numpy()
    assert np.abs(out - ref_out).max() > 1e-2


def test_reference_models_export_reference(small_model, tmp_path):
    manifest = export_model(small_model, tmp_path, ExportOptions(warp="plugin"))
    assert manifest.warp_convention == "reference"
    assert {_attributes(n)["convention"] for n in _warp_nodes(tmp_path / "interp.onnx")} == {b"reference"}


def _legacy_copy(folder: Path, dst: Path) -> Path:
    """`folder` as an export from before the convention existed: no manifest field, no node attribute."""
    shutil.copytree(folder, dst)
    model = onnx.load(str(dst / "interp.onnx"))
    for node in model.graph.node:
        kept = [a for a in node.attribute if a.name != "convention"]
        del node.attribute[:]
        node.attribute.extend(kept)
    onnx.save(model, str(dst / "interp.onnx"))
    data = json.loads((dst / "manifest.json").read_text())
    del data["warp_convention"]
    data["graphs"]["interp"]["sha256"] = file_sha256(dst / "interp.onnx")
    (dst / "manifest.json").write_text(json.dumps(data))
    return dst


def test_an_old_plugin_export_without_the_convention_still_runs_as_reference(exports, exact_model, tmp_path):
    legacy = _legacy_copy(exports("plugin"), tmp_path / "legacy")
    assert read_manifest(legacy).warp_convention == "reference"
    # Its BackWarp nodes lost the attribute, so they compute the reference warp: compare with that model.
    _interp_parity(OnnxRuntimeBackend(legacy), _as_reference(exact_model), seed=1)


def test_unknown_conventions_in_a_folder_are_refused_in_one_line(exports, tmp_path):
    folder = shutil.copytree(exports("plugin"), tmp_path / "future")
    data = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**data, "warp_convention": "sideways"}))
    with pytest.raises(ManifestError, match="warp convention 'sideways' is unknown") as caught:
        read_manifest(folder)
    assert "\n" not in str(caught.value)
    # A graph whose node names a convention this build lacks: refused at load, before the Python op
    # (an exception inside it would abort the process).
    (folder / "manifest.json").write_text(json.dumps(data))
    model = onnx.load(str(folder / "interp.onnx"))
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name == "convention":
                attribute.s = b"sideways"
    onnx.save(model, str(folder / "interp.onnx"))
    data["graphs"]["interp"]["sha256"] = file_sha256(folder / "interp.onnx")
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(SloMoError, match="convention 'sideways' is unknown"):
        OnnxRuntimeBackend(folder).activate()


def test_tensorrt_graph_preparation_keeps_or_supplies_the_convention(exports, tmp_path):
    from superslomo.engine.onnx_prep import plugin_conventions, prepare_plugin_graph

    exact_export = exports("plugin")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    marked = prepare_plugin_graph(exact_export / "interp.onnx", scratch, convention="exact")
    assert plugin_conventions(marked) == {"exact"}
    assert {_attributes(n)["aot"] for n in _warp_nodes(marked)} == {1}
    with pytest.raises(SloMoError, match="manifest says warp convention reference"):
        prepare_plugin_graph(exact_export / "interp.onnx", scratch, convention="reference")
    legacy = _legacy_copy(exact_export, tmp_path / "legacy")
    (scratch / "interp.onnx").unlink()
    # tensorrt.plugin attributes have no defaults: an old node must be given the one it means.
    assert plugin_conventions(prepare_plugin_graph(legacy / "interp.onnx", scratch)) == {"reference"}
    assert {_attributes(n).get("convention") for n in _warp_nodes(scratch / "interp.onnx")} == {b"reference"}


def test_the_torch_backend_manifest_carries_the_convention(exact_model):
    from superslomo.eval.torch_backend import TorchBackend

    assert TorchBackend(exact_model).manifest.warp_convention == "exact"
    assert TorchBackend(_as_reference(exact_model)).manifest.warp_convention == "reference"
