"""Engines on a real GPU: build fp32/fp16/INT8 engines of a small and of the default model, run them
through Polygraphy's TrtRunner and through our TensorRTBackend, and compare with PyTorch RunResults.

Needs `superslomo.export` (and `superslomo.calibration` for INT8). Run with `make gpu-check`.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from superslomo.errors import SloMoError

pytestmark = pytest.mark.gpu

TOLERANCE = {"fp32": 2e-3, "fp16": 3e-2, "int8": 1.5e-1}  # max abs error on [0,1] frames
PROFILE = ("1x64x64", "1x96x128", "2x128x160")
RESULTS = Path(os.environ.get("SLOMO_GPU_RESULTS", "out/gpu-check/results.jsonl"))


def _record(**row):
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as handle:
        handle.write(json.dumps(row) + "\n")


def _export(model, folder: Path, precision: str, warp: str) -> Path:
    export = pytest.importorskip("superslomo.export")
    if precision == "int8":
        from PIL import Image

        from superslomo.calibration.calibset import build_calibration_set
        from superslomo.calibration.quantize import quantize_model

        fp32 = _export(model, folder.with_name(folder.name + "-fp32"), "fp32", warp)
        # A moving smooth pattern: calibration needs pairs with motion, not real footage, to
        # exercise TensorRT's Q/DQ handling (accuracy with trained weights is measured on the CPU).
        frames = folder.with_name(folder.name + "-frames")
        frames.mkdir(exist_ok=True)
        base, _ = _inputs((1, 128, 160), seed=3)
        for i in range(6):
            image = np.roll(base[0], 2 * i, axis=2).transpose(1, 2, 0)
            Image.fromarray((image * 255).astype(np.uint8)).save(frames / f"{i:03d}.png")
        calib = folder.with_name(folder.name + "-calib.npz")
        build_calibration_set([frames], calib, fp32, pairs=4, size=(160, 128), progress=False)
        quantize_model(fp32, calib, folder, max_drop_db=1e9, eval_count=2)
        return folder
    export.export_model(
        model,
        folder,
        export.ExportOptions(opset=17, warp=warp, precision=precision, io="float32"),
        source={"checkpoint": "test", "sha256": "0" * 64},
    )
    return folder


def _inputs(shape, seed=0):
    n, h, w = shape
    rng = np.random.default_rng(seed)
    f0 = rng.random((n, 3, h, w), dtype=np.float32)
    f1 = np.roll(f0, 3, axis=3)
    return f0, f1


def _torch_reference(model, f0, f1, t):
    import torch

    with torch.no_grad():
        flow01, flow10 = model.flow(torch.from_numpy(f0), torch.from_numpy(f1))
        out = model.synthesize(
            torch.from_numpy(f0), torch.from_numpy(f1), flow01, flow10, torch.from_numpy(t)
        )
    return {"flow01": flow01.numpy(), "flow10": flow10.numpy(), "frame_t": out.numpy()}


@pytest.fixture(scope="module")
def default_model():
    import torch

    from superslomo.model import super_slomo

    torch.manual_seed(0)
    return super_slomo().eval()


def _build(onnx_dir: Path, engine_dir: Path, tmp: Path):
    from superslomo.contracts.shapes import parse_profiles
    from superslomo.engine.builder import build_engines

    return build_engines(
        onnx_dir, engine_dir, parse_profiles(*PROFILE), timing_cache=tmp / "timing.cache", builder_level=1
    )


@pytest.mark.parametrize("which", ["small", "default"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_matches_pytorch_through_polygraphy(request, tmp_path, which, precision):
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    from polygraphy.comparator import Comparator, RunResults, SimpleCompareFunc

    model = request.getfixturevalue("small_model" if which == "small" else "default_model")
    onnx_dir = _export(model, tmp_path / f"onnx-{precision}", precision, "gridsample")
    manifest = _build(onnx_dir, tmp_path / "engine", tmp_path)
    assert manifest.kind == "tensorrt" and (tmp_path / "timing.cache").stat().st_size > 0

    worst = 0.0
    for shape in [(1, 64, 64), (2, 128, 160), (1, 96, 128)]:  # min edge, max edge, opt
        f0, f1 = _inputs(shape)
        t = np.full((shape[0],), 0.5, np.float32)
        ref = _torch_reference(model, f0, f1, t)
        # PyTorch's results saved as Polygraphy RunResults, then compared against TrtRunner's.
        saved = RunResults()
        saved.append(("pytorch", [{"frame_t": ref["frame_t"]}]))
        saved.save(str(tmp_path / "pytorch_results.json"))
        loaded = RunResults.load(str(tmp_path / "pytorch_results.json"))
        plan = EngineFromBytes(BytesFromPath(str(tmp_path / "engine" / "interp.plan")))
        with TrtRunner(plan) as runner:
            outputs = runner.infer(
                {"frame0": f0, "frame1": f1, "flow01": ref["flow01"], "flow10": ref["flow10"], "t": t}
            )
        trt_results = RunResults()
        trt_results.append(("tensorrt", [{"frame_t": np.asarray(outputs["frame_t"], np.float32)}]))
        tol = TOLERANCE[precision]
        accuracy = Comparator.compare_accuracy(
            loaded.combine(trt_results)
            if hasattr(loaded, "combine")
            else RunResults(list(loaded.items()) + list(trt_results.items())),
            compare_func=SimpleCompareFunc(atol=tol, rtol=0),
        )
        err = float(np.abs(np.asarray(outputs["frame_t"], np.float32) - ref["frame_t"]).max())
        worst = max(worst, err)
        assert bool(accuracy), f"{which} {precision} at {shape}: max abs error {err} > {tol}"
    _record(test="parity", model=which, precision=precision, max_abs=worst, tolerance=TOLERANCE[precision])


def test_pair_protocol_keeps_flows_on_the_gpu_pipelined_and_with_cuda_graphs(small_model, tmp_path):
    """What `slomo interpolate` runs on engines: the Interpolator's streamed path over the pair
    protocol (flow of the next pair on its stream while this pair is synthesized), with and
    without CUDA graphs, against the PyTorch model; the graphs must really have been captured."""
    from superslomo.runtime import Interpolator
    from superslomo.runtime.options import TensorRTOptions
    from superslomo.runtime.tensorrt_backend import DevicePair, TensorRTBackend

    onnx_dir = _export(small_model, tmp_path / "onnx", "fp32", "gridsample")
    _build(onnx_dir, tmp_path / "engine", tmp_path)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(5)]
    times = [0.25, 0.5, 0.75]
    worst = 0.0
    for graphs in (False, True):
        options = TensorRTOptions(cuda_graphs=graphs, pair_slots=3, pair_wait_s=0.5)
        backend = TensorRTBackend(tmp_path / "engine", options)
        with Interpolator(backend, max_batch=4) as interp:
            streamed = list(interp.run(iter(frames), factor=4))
            pair = interp.prepare(frames[0], frames[1])
            assert isinstance(pair.handle, DevicePair)  # frames and flows stayed on the device
            flow01, _ = interp.flows(pair)
            interp.release(pair)
            captured = backend.captured_graphs
            # A fourth pair on a ring of three waits for a slot, then is refused: never mixed frames.
            held = [interp.prepare(frames[k], frames[k + 1]) for k in range(3)]
            with pytest.raises(SloMoError, match="slots stayed held"):
                interp.prepare(frames[3], frames[4])
            interp.release(held[0])
            with pytest.raises(SloMoError, match="was released"):
                interp.synthesize(held[0], [0.5])
            assert len(interp.synthesize(held[1], [0.5])) == 1
        assert (captured > 0) == graphs, f"cuda_graphs={graphs} but {captured} graphs were captured"
        assert len(streamed) == len(frames) + 3 * (len(frames) - 1)
        for k in range(len(frames) - 1):
            f0, f1 = (
                (frames[k][None].transpose(0, 3, 1, 2) / 255.0).astype(np.float32),
                (frames[k + 1][None].transpose(0, 3, 1, 2) / 255.0).astype(np.float32),
            )
            for j, t in enumerate(times):
                ref = _torch_reference(small_model, f0, f1, np.array([t], np.float32))["frame_t"][0]
                got = streamed[4 * k + 1 + j].astype(np.float32).transpose(2, 0, 1) / 255.0
                err = float(np.abs(got - np.clip(ref, 0, 1)).max())
                worst = max(worst, err)
                assert err <= 1.5 / 255, f"pair {k} t={t} cuda_graphs={graphs}: max abs error {err}"
        ref0 = _torch_reference(
            small_model,
            (frames[0][None].transpose(0, 3, 1, 2) / 255.0).astype(np.float32),
            (frames[1][None].transpose(0, 3, 1, 2) / 255.0).astype(np.float32),
            np.array([0.5], np.float32),
        )
        assert np.abs(flow01 - ref0["flow01"]).max() < 1e-2
    _record(test="pair-protocol", model="small", precision="fp32", max_abs=worst, tolerance=1.5 / 255)


def test_plugin_engine_matches_gridsample_engine(small_model, tmp_path):
    import tensorrt

    from superslomo.contracts.tensorrt_version import PLUGIN_MINIMUM, TrtVersion
    from superslomo.runtime.tensorrt_backend import TensorRTBackend

    if TrtVersion.parse(tensorrt.__version__) < PLUGIN_MINIMUM:
        pytest.skip(f"BackWarp plugin needs TensorRT >= {PLUGIN_MINIMUM}")
    outs = {}
    for warp in ("gridsample", "plugin"):
        onnx_dir = _export(small_model, tmp_path / f"onnx-{warp}", "fp32", warp)
        _build(onnx_dir, tmp_path / f"engine-{warp}", tmp_path)
        f0, f1 = _inputs((2, 128, 160))
        with TensorRTBackend(tmp_path / f"engine-{warp}") as backend:
            flows = backend.infer("flow", {"frame0": f0, "frame1": f1})
            outs[warp] = backend.infer(
                "interp", {"frame0": f0, "frame1": f1, **flows, "t": np.array([0.3, 0.7], np.float32)}
            )["frame_t"]
    err = float(np.abs(outs["plugin"] - outs["gridsample"]).max())
    _record(test="plugin-vs-gridsample", model="small", precision="fp32", max_abs=err, tolerance=1e-4)
    assert err < 1e-4


def test_triton_kernel_on_the_gpu_matches_reference():
    import torch

    from superslomo.engine.triton_backwarp import backwarp_triton
    from superslomo.model.warp import backwarp_reference

    gen = torch.Generator().manual_seed(3)
    image = torch.rand((2, 3, 67, 131), generator=gen).cuda()
    flow = ((torch.rand((2, 2, 67, 131), generator=gen) - 0.5) * 300).cuda()
    err = float((backwarp_triton(image, flow) - backwarp_reference(image, flow)).abs().max())
    _record(test="triton-kernel", model="-", precision="fp32", max_abs=err, tolerance=1e-5)
    assert err < 1e-5


@pytest.mark.parametrize("field, value", [("version", "9.9.9.9"), ("compute_capability", "1.0")])
def test_mismatched_engine_is_refused(small_model, tmp_path, field, value):
    from superslomo.contracts.manifest import ManifestError, read_manifest, write_manifest
    from superslomo.runtime.tensorrt_backend import TensorRTBackend

    onnx_dir = _export(small_model, tmp_path / "onnx", "fp32", "gridsample")
    _build(onnx_dir, tmp_path / "engine", tmp_path)
    manifest = read_manifest(tmp_path / "engine")
    write_manifest(tmp_path / "engine", replace(manifest, tensorrt={**manifest.tensorrt, field: value}))
    with pytest.raises(ManifestError, match="slomo build-engine"):
        TensorRTBackend(tmp_path / "engine").activate()
    _record(test=f"refuse-{field}", model="small", precision="-", max_abs=0.0, tolerance=0.0)


def _engine_interpolator(small_model, tmp_path, **options):
    from superslomo.runtime import Interpolator
    from superslomo.runtime.options import TensorRTOptions
    from superslomo.runtime.tensorrt_backend import TensorRTBackend

    if not (tmp_path / "engine").is_dir():
        _build(_export(small_model, tmp_path / "onnx", "fp32", "gridsample"), tmp_path / "engine", tmp_path)
    return Interpolator(TensorRTBackend(tmp_path / "engine", TensorRTOptions(**options)), max_batch=2)


def test_two_threads_on_one_engine_interpolator_give_one_threads_frames(small_model, tmp_path):
    """Each execution context has its lock and each pair its ring slot: threads sharing an
    Interpolator get exactly the frames one thread gets."""
    import threading

    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(9)]
    times = [0.25, 0.5, 0.75]
    with _engine_interpolator(small_model, tmp_path, pair_slots=3) as interp:
        alone = [interp.interpolate(frames[k], frames[k + 1], times) for k in range(8)]
        together: dict[int, list] = {}
        failures: list[BaseException] = []

        def work(indices):
            try:
                for _ in range(5):
                    for k in indices:
                        together[k] = interp.interpolate(frames[k], frames[k + 1], times)
            except BaseException as error:  # noqa: BLE001 - reported by the main thread
                failures.append(error)

        threads = [threading.Thread(target=work, args=(range(j, 8, 2),)) for j in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not failures, failures
    for k in range(8):
        for a, b in zip(alone[k], together[k], strict=True):
            assert np.array_equal(a, b), f"pair {k}: two threads gave other frames than one"


def test_prepare_waits_for_a_slot_that_another_thread_releases(small_model, tmp_path):
    import threading
    import time

    rng = np.random.default_rng(2)
    frame0, frame1 = (rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(2))
    with _engine_interpolator(small_model, tmp_path, pair_slots=3, pair_wait_s=30) as interp:
        held = [interp.prepare(frame0, frame1) for _ in range(3)]
        threading.Timer(0.5, interp.release, args=(held[0],)).start()
        began = time.perf_counter()
        late = interp.prepare(frame0, frame1)
        waited = time.perf_counter() - began
        assert 0.4 < waited < 10, f"prepare returned after {waited:.2f} s"
        assert late.handle.slot == held[0].handle.slot
        assert np.array_equal(interp.synthesize(late, [0.5])[0], interp.synthesize(held[1], [0.5])[0]), (
            "the recycled slot holds another pair's frames"
        )


def test_shape_buffers_stay_bounded_and_deactivate_invalidates_pairs(small_model, tmp_path):
    from superslomo.runtime.tensorrt_backend import SHAPE_CACHE

    rng = np.random.default_rng(3)
    with _engine_interpolator(small_model, tmp_path, pair_slots=3) as interp:
        for h in range(64, 97, 32):
            for w in range(64, 161, 32):
                frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                interp.interpolate(frame, frame[::-1].copy(), [0.25, 0.5, 0.75])
        for graph in ("flow", "interp"):
            kept = len(interp.backend.runners[graph].engine.slots)
            assert kept <= SHAPE_CACHE, f"{graph}: {kept} buffer sets kept"
        pair = interp.prepare(frame, frame)
        interp.backend.deactivate()
        interp.backend.activate()
        with pytest.raises(SloMoError, match="was released"):
            interp.synthesize(pair, [0.5])
