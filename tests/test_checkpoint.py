"""Checkpoint loading: public format, own format, and files that must be refused."""

from __future__ import annotations

import datetime
import io
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from superslomo.model import (
    CheckpointError,
    inspect_checkpoint,
    load_checkpoint,
    save_checkpoint,
    super_slomo,
)
from superslomo.model.checkpoint import checkpoint_metadata
from tests.conftest import public_format_checkpoint


@pytest.fixture(scope="module")
def public_ckpt(tmp_path_factory):
    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("ckpt") / "SuperSloMo.ckpt"
    return public_format_checkpoint(super_slomo(), path)


class RunsShell:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


class RunsEval:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


class RunsSubprocess:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", str(self.marker)],))


@pytest.mark.parametrize("payload", [RunsShell, RunsEval, RunsSubprocess])
@pytest.mark.parametrize("container", ["torch_zip", "raw_pickle", "inside_state_dict"])
def test_malicious_pickles_are_refused_and_nothing_runs(tmp_path, payload, container):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    evil = payload(marker)
    if container == "torch_zip":
        torch.save({"state_dictFC": evil, "state_dictAT": {}}, path)
    elif container == "raw_pickle":
        path.write_bytes(pickle.dumps({"state_dictFC": {}, "state_dictAT": evil}, protocol=2))
    else:
        state = super_slomo(width=2).flow_net.state_dict()
        state["conv1.weight"] = evil
        torch.save({"state_dictFC": state, "state_dictAT": {}, "epoch": 1}, path)
    with pytest.raises(CheckpointError, match="refused|cannot read"):
        load_checkpoint(path)
    assert not marker.exists(), "the checkpoint executed code"


def test_public_checkpoint_loads_strict_with_metadata(public_ckpt):
    info = inspect_checkpoint(public_ckpt)
    assert info.format == "public" and info.width == 32 and info.parameters == 39_610_473
    assert info.metadata["epoch"] == 7
    assert info.metadata["timestamp"].year == 2018
    assert len(info.sha256) == 64


def test_round_trip_to_own_format_is_bit_exact(public_ckpt, tmp_path):
    model = load_checkpoint(public_ckpt)
    own = tmp_path / "model.safetensors"
    save_checkpoint(model, own, metadata={"source": "public"})
    again = load_checkpoint(own)
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    f0, f1 = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(f0, f1, torch.tensor([0.3])), again(f0, f1, torch.tensor([0.3])))
    assert inspect_checkpoint(own).format == "safetensors"


def test_reduced_width_round_trip(tmp_path):
    model = super_slomo(width=8)
    save_checkpoint(model, tmp_path / "w8.safetensors", dtype=torch.float16)
    loaded = load_checkpoint(tmp_path / "w8.safetensors")
    assert loaded.config.width == 8
    assert next(loaded.parameters()).dtype == torch.float32


def test_the_same_weights_and_metadata_save_to_the_same_bytes(tmp_path):
    """Files are bound to their sha256 (scale tables, accuracy reports): a re-save must not move it."""
    from superslomo.contracts.files import file_sha256

    model = super_slomo(width=4)
    metadata = {"trained_steps": 3, "data": ["a.mp4"]}
    shas = set()
    for run in range(4):
        save_checkpoint(model, tmp_path / f"{run}.safetensors", metadata=metadata, dtype=torch.float16)
        shas.add(file_sha256(tmp_path / f"{run}.safetensors"))
    assert len(shas) == 1
    loaded = load_checkpoint(tmp_path / "0.safetensors")
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value.half().float())
    assert checkpoint_metadata(tmp_path / "0.safetensors") == metadata
    assert inspect_checkpoint(tmp_path / "0.safetensors").width == 4


def test_truncated_files_are_refused(public_ckpt, tmp_path):
    data = public_ckpt.read_bytes()
    for cut in (10, 1000, len(data) // 2, len(data) - 100):
        path = tmp_path / f"cut{cut}.ckpt"
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError):
            load_checkpoint(path)
    own = tmp_path / "own.safetensors"
    save_checkpoint(super_slomo(width=2), own)
    cut = tmp_path / "own_cut.safetensors"
    cut.write_bytes(own.read_bytes()[:-50])
    with pytest.raises(CheckpointError):
        load_checkpoint(cut)


def test_corrupted_zip_member_is_refused(public_ckpt, tmp_path):
    data = bytearray(public_ckpt.read_bytes())
    # Flip bytes inside the pickle member (zip CRC/structure checks or the unpickler catch it).
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("data.pkl"))
    start = info.header_offset + 30 + len(info.filename) + 5
    data[start : start + 40] = b"\xff" * 40
    path = tmp_path / "corrupt.ckpt"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def _trusted_load(path):
    with torch.serialization.safe_globals([datetime.datetime]):
        return torch.load(path, weights_only=True)


def test_wrong_keys_and_shapes_are_refused(tmp_path):
    model = super_slomo(width=2)
    path = public_format_checkpoint(model, tmp_path / "ok.ckpt")
    assert load_checkpoint(path).config.width == 2
    data = _trusted_load(path)
    del data["state_dictAT"]["up3.conv1.bias"]
    torch.save(data, tmp_path / "missing.ckpt")
    with pytest.raises(CheckpointError, match="missing 1 keys"):
        load_checkpoint(tmp_path / "missing.ckpt")
    data = _trusted_load(path)
    data["state_dictAT"]["conv3.weight"] = torch.zeros(4, 2, 3, 3)
    torch.save(data, tmp_path / "shape.ckpt")
    with pytest.raises(CheckpointError, match="conv3.weight has shape"):
        load_checkpoint(tmp_path / "shape.ckpt")
    torch.save({"model": {}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="lacks state_dictFC"):
        load_checkpoint(tmp_path / "other.ckpt")
    torch.save([1, 2, 3], tmp_path / "list.ckpt")
    with pytest.raises(CheckpointError, match="holds a list"):
        load_checkpoint(tmp_path / "list.ckpt")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "text.ckpt").write_text("hello, I am a text file, not weights\n")
    for name in ("empty.ckpt", "text.ckpt", "absent.ckpt"):
        with pytest.raises(CheckpointError):
            load_checkpoint(tmp_path / name)


def _slomo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "superslomo.cli", *args], capture_output=True, text=True)


def test_cli_info_and_convert(public_ckpt, tmp_path):
    result = _slomo("info", str(public_ckpt))
    assert result.returncode == 0, result.stderr
    assert "public" in result.stdout and "39,610,473" in result.stdout and "epoch: 7" in result.stdout
    out = tmp_path / "model.safetensors"
    result = _slomo("convert", str(public_ckpt), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "safetensors" in _slomo("info", str(out)).stdout
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp files left


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, pickle.dumps({"state_dictFC": {}}, protocol=2)])
def test_cli_bad_files_give_one_line_errors(tmp_path, content):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    for args in (("info", str(path)), ("convert", str(path), "-o", str(tmp_path / "o.safetensors"))):
        result = _slomo(*args)
        assert result.returncode == 2
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "o.safetensors").exists()
