"""Start-up: what a job pays before its first frame. Counted, not timed (the suite runs on loaded
2-core machines): a second process loads the OpenVINO graphs the first compiled, and a job on an
exported folder imports neither PyTorch nor the runtime it does not run on."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="OpenVINO is not installed"
)


@pytest.fixture(scope="module")
def folder(small_model, tmp_path_factory):
    from superslomo.export import ExportOptions, export_model

    out = tmp_path_factory.mktemp("startup") / "onnx"
    source = {"checkpoint": "random-width4", "sha256": "0" * 64}
    export_model(small_model, out, ExportOptions(), source=source)
    return out


def _run(script: str, cache: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"SLOMO_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# One job's model, as `slomo interpolate --backend openvino` opens it, on one pair; then which of its
# compiled graphs came from the cache and which heavy modules the process loaded.
JOB = """
import json, sys
import numpy as np
from pathlib import Path
from superslomo.apps.models import open_model
interp, label = open_model(Path({folder!r}), "openvino", "fp32", size=(96, 64), say=None)
frame0 = np.zeros((64, 96, 3), np.uint8); frame1 = np.full((64, 96, 3), 200, np.uint8)
interp.interpolate(frame0, frame1, [0.5])
cached = [
    request.get_compiled_model().get_property("LOADED_FROM_CACHE")
    for runner in interp.backend.runners.values()
    for request in runner.compiled.requests.values()
]
heavy = sorted(m for m in ("torch", "onnx", "onnxruntime", "scipy") if m in sys.modules)
print(json.dumps({{"cached": cached, "heavy": heavy, "label": label}}))
"""


@needs_openvino
def test_a_second_job_loads_the_openvino_graphs_the_first_compiled(folder, tmp_path):
    first = _run(JOB.format(folder=str(folder)), tmp_path / "cache")
    assert first["cached"] == [False, False], first  # nothing to load yet: both compiled
    assert list((tmp_path / "cache" / "openvino").glob("*.blob")), "no compiled graph was cached"
    second = _run(JOB.format(folder=str(folder)), tmp_path / "cache")
    assert second["cached"] == [True, True], second
    # A job that runs OpenVINO on an exported folder loads neither PyTorch nor ONNX Runtime.
    assert second["heavy"] == [], second


def test_the_cli_and_its_job_modules_import_no_runtime_until_a_job_opens_one():
    script = """
    import json, sys
    import superslomo.cli, superslomo.apps.interpolate, superslomo.apps.models, superslomo.video.pipeline
    heavy = ("torch", "onnx", "onnxruntime", "openvino", "tensorrt", "scipy")
    print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_an_uncached_openvino_backend_compiles_without_a_cache_dir(folder):
    """Without cache_dir (the runtime's default for an embedding app) nothing is written anywhere."""
    pytest.importorskip("openvino")
    from superslomo.runtime import Interpolator, open_backend
    from superslomo.runtime.options import OpenVinoOptions

    backend = open_backend(folder, OpenVinoOptions())
    assert "CACHE_DIR" not in backend.config
    with Interpolator(backend) as interp:
        (frame,) = interp.interpolate(np.zeros((64, 96, 3), np.uint8), np.zeros((64, 96, 3), np.uint8), [0.5])
    assert frame.shape == (64, 96, 3)


def test_onnxruntime_loads_the_graphs_an_earlier_session_optimized_with_the_same_frames(folder, tmp_path):
    from superslomo.runtime import Interpolator, open_backend
    from superslomo.runtime.options import OnnxRuntimeOptions

    rng = np.random.default_rng(0)
    frame0 = rng.integers(0, 256, (64, 96, 3), np.uint8)
    frame1 = np.roll(frame0, 3, axis=1)
    cache = tmp_path / "ort"
    with Interpolator(open_backend(folder, OnnxRuntimeOptions())) as plain:
        want = plain.interpolate(frame0, frame1, [0.25, 0.5])
    with Interpolator(open_backend(folder, OnnxRuntimeOptions(cache_dir=str(cache)))) as first:
        first.interpolate(frame0, frame1, [0.5])
    optimized = sorted(cache.glob("*.onnx"))
    assert len(optimized) == 2 and not list(cache.glob(".*")), list(
        cache.iterdir()
    )  # one per graph, no leftovers
    written = {path: path.stat().st_mtime_ns for path in optimized}
    with Interpolator(open_backend(folder, OnnxRuntimeOptions(cache_dir=str(cache)))) as second:
        got = second.interpolate(frame0, frame1, [0.25, 0.5])
    assert {path: path.stat().st_mtime_ns for path in optimized} == written  # loaded, not rewritten
    for a, b in zip(got, want, strict=True):
        assert np.array_equal(a, b)  # the same frames as an uncached session
