"""The torch-free runtime: import hygiene, Interpolator parity with PyTorch, streaming, memory."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from superslomo.errors import SloMoError
from superslomo.eval.torch_backend import TorchBackend
from superslomo.export import ExportOptions, export_model
from superslomo.runtime import Interpolator, factor_times, schedule_times
from tests.conftest import shared_data


@pytest.fixture(scope="module")
def onnx_dir(small_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("runtime_export")
    export_model(small_model, folder, ExportOptions())
    return folder


def test_runtime_never_imports_torch(onnx_dir):
    script = textwrap.dedent(f"""
        import sys
        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is not allowed in the runtime")
        sys.meta_path.insert(0, NoTorch())
        import numpy as np
        from superslomo.runtime import Interpolator
        with Interpolator.from_dir({str(onnx_dir)!r}, backend="onnxruntime") as interp:
            frame0, frame1 = np.zeros((40, 50, 3), np.uint8), np.full((40, 50, 3), 200, np.uint8)
            frames = interp.interpolate(frame0, frame1, [0.5])
        assert frames[0].shape == (40, 50, 3) and frames[0].dtype == np.uint8
        assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


@pytest.mark.parametrize("source", ["middlebury_eval/input/Yosemite", "rife_demo"])
def test_interpolate_matches_pytorch_on_odd_sized_real_frames(onnx_dir, small_model, source):
    from superslomo.video.frames import read_image

    folder = shared_data(*source.split("/"))
    names = ("frame10.png", "frame11.png") if "Yosemite" in source else ("I0_0.png", "I0_1.png")
    f0, f1 = (read_image(folder / n) for n in names)
    if source == "rife_demo":  # 448x256 is already a multiple of 32: make it odd-sized
        f0, f1 = f0[:250, :437], f1[:250, :437]
    assert f0.shape[0] % 32 and f0.shape[1] % 32
    times = [0.2, 0.5, 0.7, 0.9, 0.95]  # more than one batch of 4
    onnx_frames = Interpolator.from_dir(onnx_dir, backend="onnxruntime").interpolate(
        f0, f1, times, as_float=True
    )
    torch_frames = Interpolator(TorchBackend(small_model)).interpolate(f0, f1, times, as_float=True)
    assert len(onnx_frames) == len(times)
    for got, ref in zip(onnx_frames, torch_frames, strict=False):
        assert got.shape == f0.shape
        np.testing.assert_allclose(got, np.clip(ref, 0, 1), atol=1e-4, rtol=0)


def _moving_frames(count: int, height: int = 36, width: int = 52):
    for i in range(count):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[10:20, (i * 3) % (width - 10) : (i * 3) % (width - 10) + 10] = (255, 128, 0)
        yield frame


@pytest.mark.parametrize("factor", [2, 3, 8])
@pytest.mark.parametrize("pipelined", [True, False])
def test_run_counts_order_and_originals(onnx_dir, factor, pipelined):
    inputs = list(_moving_frames(5))
    interp = Interpolator.from_dir(onnx_dir, backend="onnxruntime")
    outputs = list(interp.run(iter(inputs), factor, pipelined=pipelined))
    assert len(outputs) == (len(inputs) - 1) * factor + 1
    for k, original in enumerate(inputs):
        assert outputs[k * factor] is original  # passed through untouched, in order
    expected_middle = interp.interpolate(inputs[1], inputs[2], factor_times(factor))
    for got, want in zip(outputs[factor + 1 : 2 * factor], expected_middle, strict=False):
        np.testing.assert_array_equal(got, want)


def test_run_propagates_errors_and_stops_early(onnx_dir):
    interp = Interpolator.from_dir(onnx_dir, backend="onnxruntime")

    def broken():
        yield np.zeros((32, 32, 3), np.uint8)
        yield np.zeros((32, 40, 3), np.uint8)  # a size change mid-stream

    with pytest.raises(SloMoError, match="differ in size"):
        list(interp.run(broken(), 2))
    stream = interp.run(_moving_frames(100), 2)
    assert next(stream).shape == (36, 52, 3)
    stream.close()  # the worker thread must not keep decoding


def test_memory_stays_flat_over_a_long_stream(onnx_dir):
    import resource

    interp = Interpolator.from_dir(onnx_dir, backend="onnxruntime")

    def peak_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    stream = interp.run(_moving_frames(2000, 32, 32), 2)
    count = 0
    for count, _ in enumerate(stream, 1):
        if count == 400:
            warm = peak_mb()
    assert count == 1999 * 2 + 1
    growth = peak_mb() - warm
    assert growth < 30, f"peak RSS grew {growth:.1f} MB over 3,600 more frames"


def test_schedule_times_batches_and_validates():
    assert schedule_times([0.1, 0.2, 0.3, 0.4, 0.5], 2) == [[0.1, 0.2], [0.3, 0.4], [0.5]]
    assert factor_times(4) == [0.25, 0.5, 0.75]
    for bad in ([0.0], [1.0], [-0.5], [float("nan")]):
        with pytest.raises(SloMoError, match="strictly between"):
            schedule_times(bad, 4)
    with pytest.raises(SloMoError):
        factor_times(0)


def test_bad_frames_are_refused(onnx_dir):
    interp = Interpolator.from_dir(onnx_dir, backend="onnxruntime")
    good = np.zeros((32, 32, 3), np.uint8)
    for bad, message in (
        (np.zeros((32, 32), np.uint8), "HxWx3"),
        (np.zeros((32, 32, 3), np.float32), "uint8"),
        (np.zeros((32, 32, 4), np.uint8), "HxWx3"),
        ([[0]], "numpy array"),
    ):
        with pytest.raises(SloMoError, match=message):
            interp.interpolate(bad, good, [0.5])


def test_non_finite_outputs_name_the_stage(onnx_dir):
    from superslomo.runtime.interpolator import NonFiniteOutput

    interp = Interpolator.from_dir(onnx_dir, backend="onnxruntime")
    real_infer = interp.backend.infer

    def overflowing(graph, inputs):
        out = real_infer(graph, inputs)
        if graph == "flow":
            out["flow01"] = out["flow01"].copy()
            out["flow01"].flat[0] = np.inf
        return out

    interp.backend.infer = overflowing
    with pytest.raises(NonFiniteOutput, match="flow graph"):
        interp.interpolate(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32, 3), np.uint8), [0.5])
