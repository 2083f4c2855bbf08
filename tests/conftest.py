from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SLOMO_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or a skip (with the reason) when the folder is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data not available: {path} (see ../shared/data/README.md)")
    return path


def public_format_checkpoint(model, path: Path, **extra) -> Path:
    """Save `model` as the public Super SloMo training script does: two state dicts + metadata."""
    import torch

    state = model.state_dict()
    data = {
        "Detail": "End to end Super SloMo.",
        "epoch": 7,
        "timestamp": datetime.datetime(2018, 9, 3, 12, 30, 5),
        "trainBatchSz": 6,
        "validationBatchSz": 10,
        "learningRate": 1e-5,
        "loss": [[0.5, 0.25], [0.125]],
        "valLoss": [[0.4]],
        "valPSNR": [[28.5, 29.25]],
        "state_dictFC": {k[len("flow_net.") :]: v for k, v in state.items() if k.startswith("flow_net.")},
        "state_dictAT": {k[len("interp_net.") :]: v for k, v in state.items() if k.startswith("interp_net.")},
        **extra,
    }
    torch.save(data, path)
    return path


@pytest.fixture(scope="session", autouse=True)
def _onnx_cache_in_tmp(tmp_path_factory):
    """Checkpoints run on ONNX Runtime through an export cache; keep the suite's out of ~/.cache."""
    previous = os.environ.get("SLOMO_CACHE_DIR")
    os.environ["SLOMO_CACHE_DIR"] = str(tmp_path_factory.mktemp("slomo-cache"))
    yield
    if previous is None:
        os.environ.pop("SLOMO_CACHE_DIR", None)
    else:
        os.environ["SLOMO_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def small_model():
    """A reduced-width network with fixed random weights (width 4: the architecture, cheaply)."""
    import torch

    from superslomo.model import super_slomo

    torch.manual_seed(1234)
    model = super_slomo(width=4).eval()
    # Random init gives near-zero flows; scale the last layers so flows and visibility vary.
    with torch.no_grad():
        model.flow_net.conv3.weight.mul_(20.0)
        model.interp_net.conv3.weight.mul_(5.0)
    return model


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory, small_model):
    """The small model exported once per test module (video tests need a real ONNX folder)."""
    from superslomo.export.onnx_export import export_model

    folder = tmp_path_factory.mktemp("onnx") / "tiny"
    export_model(small_model, folder)
    return folder


@pytest.fixture
def one_torch_thread():
    """Teacher/trainer tests on one thread: two cores are shared with whatever else runs."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
