"""Static checks of the TensorRT layer: mypy against tensorrt-stubs, and no API removed in TensorRT 11."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "superslomo"

# From NVIDIA's "Removed Python APIs" list of the TensorRT 10.x -> 11.x migration guide.
REMOVED_IN_TRT11 = [
    r"BuilderFlag\.(FP16|INT8|FP8|BF16|INT4|FP4|OBEY_PRECISION_CONSTRAINTS|PREFER_PRECISION_CONSTRAINTS|DIRECT_IO)\b",
    r"\bint8_calibrator\b",
    r"\b(set|get)_calibration_profile\b",
    r"\b(set|get|clear)_quantization_flag\b",
    r"\bquantization_flags\b",
    r"\bQuantizationFlag\b",
    r"\bIInt8(Calibrator|EntropyCalibrator2?|MinMaxCalibrator|LegacyCalibrator)\b",
    r"\bCalibrationAlgoType\b",
    r"\bIAlgorithm(Selector|Context|IOInfo|Variant)?\b",
    r"\balgorithm_selector\b",
    r"\bplatform_has_fast_(fp16|int8)\b",
    r"\bplatform_has_tf32\b",
    r"\bdevice_memory_size(_for_profile)?\b(?!_v2)",
    r"\bhas_implicit_batch_dimension\b",
    r"\bexecute_async_v2\b|\bexecute_v2\b",
    r"\bget_binding_\w+\b|\bbinding_is_input\b",
]


def _python_sources():
    return sorted(PACKAGE.rglob("*.py"))


def test_no_api_removed_in_tensorrt_11_is_referenced():
    offenders = []
    for path in _python_sources():
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for pattern in REMOVED_IN_TRT11:
                if re.search(pattern, code):
                    offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not offenders, "APIs removed in TensorRT 11:\n" + "\n".join(offenders)


def test_removed_api_scan_would_catch_a_precision_flag():
    sample = (
        "config.set_flag(trt.BuilderFlag.FP16)\nconfig.int8_calibrator = calib\nx = engine.device_memory_size"
    )
    hits = [p for p in REMOVED_IN_TRT11 if re.search(p, sample)]
    assert len(hits) == 3
    assert not re.search(REMOVED_IN_TRT11[12], "engine.device_memory_size_v2")


def _stubs_or_skip():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import typecheck_tensorrt
    finally:
        sys.path.pop(0)
    try:
        return typecheck_tensorrt, typecheck_tensorrt.install_stubs()
    except RuntimeError as error:
        pytest.skip(f"tensorrt-stubs cannot be installed here: {error}")


@pytest.mark.slow
def test_engine_and_tensorrt_runtime_typecheck_against_stubs():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "typecheck_tensorrt.py")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    if result.returncode == 3:
        pytest.skip(f"tensorrt-stubs cannot be installed here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.slow
def test_typecheck_catches_a_call_that_tensorrt_does_not_have(tmp_path):
    tool, stubs = _stubs_or_skip()
    bad = tmp_path / "bad_trt.py"
    bad.write_text(
        "import tensorrt as trt\n\n"
        "def run(context: trt.IExecutionContext, stream: int) -> bool:\n"
        "    return context.execute_async_v4(stream)\n"
    )
    result = tool.run_mypy(stubs, [str(bad)])
    assert result.returncode != 0
    assert "execute_async_v4" in result.stdout
