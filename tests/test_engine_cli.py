"""`slomo build-engine`: bad input is one line and exit 2, before any GPU work; no TensorRT is explained."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest


def slomo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "superslomo.cli", *args], capture_output=True, text=True, timeout=120
    )


def placeholder_onnx_folder(folder, warp: str) -> None:
    """An export folder whose graphs are ModelProtos holding only ir_version 8: well-formed enough
    for the folder checks, so what the command trips on is what the test is about."""
    from superslomo.contracts.files import file_sha256
    from superslomo.contracts.manifest import GraphEntry, Manifest, write_manifest

    graphs = {}
    for g in ("flow", "interp"):
        (folder / f"{g}.onnx").write_bytes(b"\x08\x08")
        graphs[g] = GraphEntry(
            file=f"{g}.onnx", sha256=file_sha256(folder / f"{g}.onnx"), inputs=[], outputs=[]
        )
    write_manifest(
        folder, Manifest(kind="onnx", precision="fp32", warp=warp, io="float32", opset=17, graphs=graphs)
    )


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--opt", "1x720x1280"], "height 720 must be a positive multiple of 32"),
        (["--min", "2x64x64", "--opt", "1x64x64"], "min <= opt <= max"),
        (["--max", "1280x720"], "NxHxW"),
        (["--builder-level", "9"], "--builder-level must be 0..5"),
        (["--profiles", "0"], "--profiles must be at least 1"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, args, needle):
    result = slomo("build-engine", str(tmp_path), "-o", str(tmp_path / "eng"), *args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_missing_onnx_folder_is_a_one_line_error(tmp_path):
    result = slomo("build-engine", str(tmp_path / "nope"), "-o", str(tmp_path / "eng"))
    assert result.returncode == 2 and "model folder not found" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_without_tensorrt_the_error_names_the_extra(tmp_path):
    placeholder_onnx_folder(tmp_path, warp="gridsample")
    result = slomo("build-engine", str(tmp_path), "-o", str(tmp_path / "eng"))
    assert result.returncode == 2
    assert "superslomo-trt[tensorrt]" in result.stderr and "Traceback" not in result.stderr


def test_plugin_folder_refuses_hardware_compat_before_any_gpu_work(tmp_path):
    placeholder_onnx_folder(tmp_path, warp="plugin")
    result = slomo("build-engine", str(tmp_path), "-o", str(tmp_path / "eng"), "--hardware-compat")
    assert result.returncode == 2 and "--warp gridsample for portable engines" in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "eng").exists()
