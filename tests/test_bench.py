"""`slomo bench`: structure only (rows, ratios, FLOP counts, interleaving, skips). No timing is
asserted: figures come from the benchmark itself, on a quiet machine."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from superslomo.apps import bench
from superslomo.apps.bench import race as race_module
from superslomo.contracts.frames import padded_size
from superslomo.errors import SloMoError
from superslomo.eval.flops import elementwise_flops, model_flops, unet_convs, unet_flops
from superslomo.runtime.backend import Backend


# -- FLOPs -----------------------------------------------------------------------------------
def test_flops_match_a_hand_count_for_a_tiny_unet():
    # U-Net(1, 1) at width 1 on 32x32, written out layer by layer:
    # (cin, cout, kernel, output pixels); FLOPs = 2*cin*cout*k*k*pixels + cout*pixels (bias).
    layers = [
        (1, 1, 7, 1024),
        (1, 1, 7, 1024),  # conv1, conv2 at 32x32
        (1, 2, 5, 256),
        (2, 2, 5, 256),  # down1 at 16x16
        (2, 4, 3, 64),
        (4, 4, 3, 64),  # down2 at 8x8
        (4, 8, 3, 16),
        (8, 8, 3, 16),  # down3 at 4x4
        (8, 16, 3, 4),
        (16, 16, 3, 4),  # down4 at 2x2
        (16, 16, 3, 1),
        (16, 16, 3, 1),  # down5 at 1x1
        (16, 16, 3, 4),
        (32, 16, 3, 4),  # up1 back at 2x2 (conv2 sees the concat: 2*16 in)
        (16, 8, 3, 16),
        (16, 8, 3, 16),  # up2 at 4x4
        (8, 4, 3, 64),
        (8, 4, 3, 64),  # up3 at 8x8
        (4, 2, 3, 256),
        (4, 2, 3, 256),  # up4 at 16x16
        (2, 1, 3, 1024),
        (2, 1, 3, 1024),  # up5 at 32x32
        (1, 1, 3, 1024),  # conv3
    ]
    hand = sum(2 * ci * co * k * k * px + co * px for ci, co, k, px in layers)
    assert unet_flops(1, 1, 1, 32, 32) == hand == 747_296


def test_flop_table_is_the_pytorch_network():
    """Names, channels and kernels from the module itself, and each conv's level from the output
    size it really produces, so the analytic table cannot drift from the definition."""
    import torch

    from superslomo.model import UNet

    for cin, cout in ((6, 4), (20, 5)):
        net = UNet(cin, cout, width=3)
        seen = {}
        hooks = [
            m.register_forward_hook(lambda m, i, o, n=n, seen=seen: seen.__setitem__(n, o.shape))
            for n, m in net.named_modules()
            if isinstance(m, torch.nn.Conv2d)
        ]
        with torch.no_grad():
            net(torch.zeros(1, cin, 64, 96))
        for h in hooks:
            h.remove()
        table = unet_convs(cin, cout, 3)
        assert [c.name for c in table] == list(seen)
        modules = dict(net.named_modules())
        counted = 0
        for conv in table:
            module = modules[conv.name]
            assert (module.in_channels, module.out_channels) == (conv.cin, conv.cout)
            assert module.kernel_size == (conv.kernel, conv.kernel)
            assert tuple(seen[conv.name][2:]) == (64 >> conv.level, 96 >> conv.level)
            out_shape = seen[conv.name]
            counted += 2 * module.weight.numel() * out_shape[2] * out_shape[3] + out_shape[1:].numel()
        assert unet_flops(cin, cout, 3, 96, 64) == counted


def test_paper_network_at_720p_matches_the_issue():
    flops = model_flops(32, 1280, 720)
    assert flops.padded == (1280, 736)  # what actually runs
    assert flops.flow / 1e12 == pytest.approx(0.60, abs=0.01)
    assert flops.interp / 1e12 == pytest.approx(0.65, abs=0.01)
    assert flops.per_frame(7) == pytest.approx(flops.flow / 7 + flops.interp)
    assert elementwise_flops(32, 1280, 720) < 0.01 * (flops.flow + flops.interp)


def test_padded_size():
    assert padded_size(1080, 1920) == (1088, 1920)  # (height, width)
    assert padded_size(256, 448) == (256, 448)
    with pytest.raises(SloMoError):
        unet_flops(6, 4, 0, 64, 64)


# -- statistics and rows ---------------------------------------------------------------------
def test_row_figures_and_ratios_are_computed_right():
    fast = bench.Samples(flow_ms=[10, 12, 14, 100], interp_ms=[20, 22, 24, 30], peak_rss_mb=500, work_mb=40)
    slow = bench.Samples(flow_ms=[30, 30, 30, 30], interp_ms=[60, 60, 60, 60], peak_rss_mb=600, work_mb=80)
    rows = [
        bench.make_row("torch", (64, 64), slow, 2, 50.0, 1),
        bench.make_row("onnxruntime", (64, 64), fast, 2, 50.0, 1),
        bench.skipped_row("tensorrt-fp16", (64, 64), 2, "no GPU"),
    ]
    bench.add_ratios(rows)
    torch_row, ort, trt = rows
    # per-iteration sums 30, 34, 38, 130: median 36, p25 33, p75 61
    assert ort["per_frame_ms"] == pytest.approx(36.0)
    assert ort["per_frame_iqr_ms"] == pytest.approx(61.0 - 33.0)
    assert ort["flow_ms"] == pytest.approx(13.0) and ort["interp_ms"] == pytest.approx(23.0)
    # 8x: flow / 7 + interp per iteration
    assert ort["per_frame_8x_ms"] == pytest.approx(
        np.median([10 / 7 + 20, 12 / 7 + 22, 14 / 7 + 24, 100 / 7 + 30])
    )
    assert torch_row["speedup"] == pytest.approx(1.0)
    assert ort["speedup"] == pytest.approx(90.0 / 36.0)
    assert ort["speedup_8x"] == pytest.approx(torch_row["per_frame_8x_ms"] / ort["per_frame_8x_ms"])
    gflop = model_flops(2, 64, 64).per_frame(1) / 1e9
    assert ort["gflops"] == pytest.approx(gflop)
    assert ort["achieved_gflops_s"] == pytest.approx(gflop / 0.036)
    assert ort["floor_ms"] == pytest.approx(1000 * gflop / 50.0)
    assert ort["fps_2x"] == pytest.approx(1000 / 36.0)
    assert trt["skipped"] == "no GPU" and trt["per_frame_ms"] is None and trt["speedup"] is None
    lines = bench.table_lines(rows)
    assert "2.50x" in lines[3] and "skipped: no GPU" in lines[4]
    assert "% peak" in lines[0] and f" {100 * ort['of_peak']:.0f} " in lines[3]


def test_psnr_column_compares_each_rows_frames_with_the_reference():
    reference = np.full((1, 3, 4, 4), 0.5, np.float32)
    off_by_a_step = reference + np.float32(0.01)  # MSE 1e-4: 40 dB
    assert bench.psnr_against(off_by_a_step, reference) == pytest.approx(40.0)
    # PyTorch eager does not clamp; the graphs do, so both sides are clamped before comparing.
    assert bench.psnr_against(np.full_like(reference, 1.2), np.ones_like(reference)) is None
    assert bench.psnr_against(reference, reference) is None  # identical: no finite figure
    assert bench.psnr_against(None, reference) is None and bench.psnr_against(reference, None) is None
    samples = bench.Samples(flow_ms=[1.0], interp_ms=[2.0], peak_rss_mb=1, work_mb=1)
    rows = [bench.make_row(name, (64, 64), samples, 2, None, 1) for name in ("onnxruntime", "openvino-bf16")]
    rows[0].update(psnr_reference=True, psnr_db=None)
    rows[1].update(psnr_reference=False, psnr_db=52.345)
    bench.add_ratios(rows)
    lines = bench.table_lines(rows)
    assert "PSNR dB" in lines[0] and lines[2].endswith("ref") and lines[3].endswith("52.3")
    assert lines[-1].startswith("PSNR dB: interpolated frames against onnxruntime fp32's")


def test_target_lines_judge_the_720p_rows():
    def row(name, per_frame, drop=None):
        r = {"backend": name, "width": 1280, "height": 720, "per_frame_ms": per_frame, "skipped": None}
        if drop is not None:
            r["psnr_drop_db"] = drop
        return r

    rows = [row("torch", 300.0), row("onnxruntime", 150.0), row("onnxruntime-int8", 140.0, drop=0.8)]
    bench.add_ratios(rows)
    lines = bench.target_lines(rows)
    assert "2.00x -> met" in lines[0]
    assert "MISSED" in lines[1] and "PSNR drop +0.80" in lines[1]


class FakeBackend(Backend):
    """Runs in memory (no graphs): logs each graph call with its batch."""

    name = "fake"

    def __init__(self, name, log):
        super().__init__(None, torch_free_manifest())
        self.label, self.log = name, log

    def infer(self, graph, inputs):
        n = inputs["frame0"].shape[0]
        self.log.append((self.label, graph, n))
        if graph == "flow":
            shape = inputs["frame0"].shape
            return {
                "flow01": np.zeros((1, 2, *shape[2:]), np.float32),
                "flow10": np.zeros((1, 2, *shape[2:]), np.float32),
            }
        assert inputs["t"].shape == (n,)
        return {"frame_t": inputs["frame0"]}


def torch_free_manifest():
    from superslomo.contracts.manifest import Manifest

    return Manifest(kind="onnx", precision="fp32", warp="gridsample", io="float32", opset=0, graphs={})


def test_measurement_is_interleaved_and_batched():
    log: list = []
    backends = {n: FakeBackend(n, log) for n in ("a", "b", "c")}
    ticks = iter(range(10_000))
    frame = np.zeros((30, 20, 3), np.uint8)  # a frame as decoded: padded to 32x32 on the way in
    results = bench.time_backends(
        backends, (frame, frame), times=7, warmup=1, iters=2, max_batch=4, clock=lambda: next(ticks) / 1000
    )
    # each visit: flow, then 7 frames as batches of 4 and 3 (plus, last iteration, the kept batch)
    visits, i = [], 0
    while i < len(log):
        size = 4 if len(visits) >= 6 else 3
        visits.append(log[i : i + size])
        i += size
    assert all([v[1] for v in visit[:3]] == ["flow", "interp", "interp"] for visit in visits)
    assert {tuple(v[2] for v in visit[:3]) for visit in visits} == {(1, 4, 3)}
    assert all(visit[3][1:] == ("interp", 4) for visit in visits[6:])  # the PSNR frames, untimed
    order = [visit[0][0] for visit in visits]
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # rotated each iteration
    assert all(len(s.flow_ms) == 2 for s in results.values())  # warm-up not recorded
    # the fake clock ticks 1 ms per call: flow 1 ms; interp 1 ms for all 7 frames + 1 ms of release
    assert results["a"].flow_ms == pytest.approx([1.0, 1.0])
    assert results["a"].interp_ms == pytest.approx([2 / 7] * 2)
    # the PSNR column's frames: the first batch (4 frames) of the last iteration, cropped back
    assert all(s.frames is not None and s.frames.shape == (4, 30, 20, 3) for s in results.values())


def test_harness_times_the_pair_protocol_not_the_graphs(onnx_model, monkeypatch):
    """What is timed is what a job runs: Interpolator.prepare / synthesize / release on the backend
    (padding and conversion included), never a graph called directly by the harness."""
    from superslomo.runtime import Interpolator
    from superslomo.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from superslomo.runtime.options import OnnxRuntimeOptions

    calls: list[str] = []
    depth = [0]

    def counting(method):
        def wrapper(self, *args, **kwargs):
            calls.append(method.__name__)
            depth[0] += 1
            try:
                return method(self, *args, **kwargs)
            finally:
                depth[0] -= 1

        return wrapper

    for method in ("prepare", "synthesize", "release"):
        monkeypatch.setattr(Interpolator, method, counting(getattr(Interpolator, method)))
    outside: list[str] = []
    real_infer = Backend.infer

    def infer(self, graph, inputs):
        if depth[0] == 0:
            outside.append(graph)
        return real_infer(self, graph, inputs)

    monkeypatch.setattr(Backend, "infer", infer)
    options = OnnxRuntimeOptions(threads=1, providers=("CPUExecutionProvider",))
    backend = OnnxRuntimeBackend(onnx_model, options)
    try:
        frames = bench.synthetic_pair(40, 36)  # off the size multiple: the Interpolator pads
        results = bench.time_backends({"onnxruntime": backend}, frames, times=3, warmup=1, iters=2)
    finally:
        backend.close()
    assert outside == []  # no graph run by the harness itself
    # per iteration: prepare, synthesize (3 times, one batch), release; the last adds the kept batch
    last = ["prepare", "synthesize", "synthesize", "release"]
    assert calls == ["prepare", "synthesize", "release"] * 2 + last
    sample = results["onnxruntime"]
    assert len(sample.flow_ms) == len(sample.interp_ms) == 2
    assert sample.frames is not None and sample.frames.shape == (3, 36, 40, 3)


def test_summarize_and_synthetic_inputs():
    s = bench.summarize([1, 2, 3, 4, 100])
    assert (s["median"], s["p25"], s["p75"]) == (3.0, 2.0, 4.0)
    f0, f1 = bench.synthetic_pair(100, 50)
    assert f0.shape == (50, 100, 3) and f0.dtype == np.uint8 and not np.array_equal(f0, f1)
    g = bench.graph_frames(f0)
    assert g.shape == (1, 3, 64, 128) and g.dtype == np.float32 and 0 <= g.min() and g.max() <= 1


# -- options and skips -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "change, message",
    [
        ({"backends": ("torch", "tensorflow")}, "unknown backend 'tensorflow'"),
        ({"backends": ("torch", "torch")}, "twice"),
        ({"sizes": ((16, 64),)}, "at least 32x32"),
        ({"times": 2}, "--times must be one of 1, 3, 7"),
        ({"iters": 0}, "--iters >= 1"),
        ({"model_width": 0}, "--width"),
    ],
)
def test_bad_options_are_one_line_errors(change, message):
    options = bench.BenchOptions(**change)
    with pytest.raises(SloMoError, match=message.replace("(", r"\(")) as error:
        options.validate()
    assert "\n" not in str(error.value)


def test_cli_bad_size_exits_2(capsys):
    from superslomo.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--sizes", "1280by720"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: sizes are WIDTHxHEIGHT") and "\n" not in err


def test_tiny_run_writes_rows_and_skips_with_reasons(tmp_path, monkeypatch, capsys):
    """torch, onnxruntime and OpenVINO (when installed) measured, with PSNR against onnxruntime fp32;
    TensorRT, CUDA and INT8 (no footage) skipped, each with why."""
    import importlib.util

    from superslomo.cli import main
    from superslomo.runtime import loader
    from superslomo.runtime.selection import openvino_capabilities

    monkeypatch.setattr(loader, "tensorrt_usable", lambda: (False, "no CUDA device"))
    has_openvino = importlib.util.find_spec("openvino") is not None
    cpu_bf16 = "BF16" in (openvino_capabilities() or [])
    out = tmp_path / "rows.json"
    named = (
        "torch",
        "onnxruntime",
        "onnxruntime-int8",
        "tensorrt-fp16",
        "onnxruntime-cuda",
        "openvino",
        "openvino-bf16",
        "openvino-int8",
    )
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "bench",
                "--width",
                "2",
                "--sizes",
                "64x64,96x64",
                "--warmup",
                "0",
                "--iters",
                "2",
                "--backends",
                ",".join(named),
                "--workdir",
                str(tmp_path / "work"),
                "--peak-gflops",
                "100",
                "--json",
                str(out),
            ]
        )
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    rows = json.loads(out.read_text())
    assert [(r["backend"], r["width"]) for r in rows] == [(b, w) for w in (64, 96) for b in named]
    required = (
        "backend",
        "width",
        "height",
        "flow_ms",
        "interp_ms",
        "per_frame_ms",
        "flow_iqr_ms",
        "interp_iqr_ms",
        "per_frame_iqr_ms",
        "gflops",
        "peak_rss_mb",
    )
    for row in rows:
        assert all(key in row for key in required)
    measured = [r for r in rows if not r["skipped"]]
    openvino = ({"openvino", "openvino-bf16"} if cpu_bf16 else {"openvino"}) if has_openvino else set()
    assert {r["backend"] for r in measured} == {"torch", "onnxruntime"} | openvino
    for r in measured:
        assert r["per_frame_ms"] > 0 and r["peak_rss_mb"] > 0 and r["floor_ms"] > 0
        assert r["speedup"] == pytest.approx(
            next(t["per_frame_ms"] for t in rows if t["backend"] == "torch" and t["width"] == r["width"])
            / r["per_frame_ms"]
        )
    reasons = {r["backend"]: r["skipped"] for r in rows if r["skipped"]}
    assert "no CUDA device" in reasons["tensorrt-fp16"]
    assert "--data" in reasons["onnxruntime-int8"]
    assert "CUDAExecutionProvider" in reasons["onnxruntime-cuda"]
    # Without OpenVINO that is the reason for all three rows; with it, INT8 still needs footage.
    assert ("--data" if has_openvino else "superslomo-trt[openvino]") in reasons["openvino-int8"]
    if not has_openvino:
        assert all("superslomo-trt[openvino]" in reasons[b] for b in ("openvino", "openvino-bf16"))
    elif not cpu_bf16:  # refused rather than run as f32 under a bf16 label
        assert "no bf16 instructions" in reasons["openvino-bf16"]
    for width in (64, 96):
        psnr = {r["backend"]: r["psnr_db"] for r in measured if r["width"] == width}
        assert (
            psnr["onnxruntime"] is None
            and next(r for r in measured if r["width"] == width and r["backend"] == "onnxruntime")[
                "psnr_reference"
            ]
        )
        assert psnr["torch"] > 80  # fp32 on both sides: rounding only
        if has_openvino:
            # f32 is ONNX Runtime's numbers; bf16 (8 mantissa bits) is never closer to them.
            assert psnr["openvino"] > 80
            if cpu_bf16:
                assert psnr["openvino-bf16"] <= psnr["openvino"]
    assert "random weights, width 2" in text and "skipped: no CUDA device" in text
    assert "target onnxruntime >= 1.5x torch at 1280x720: not measured" in text


def test_roofline_peaks():
    from superslomo.eval.roofline import gpu_peak_tflops

    assert gpu_peak_tflops("NVIDIA H100 PCIe", "fp16") == 756.5
    assert gpu_peak_tflops("NVIDIA H100 80GB HBM3", "fp16") == 989.4
    assert gpu_peak_tflops("NVIDIA A100-SXM4-40GB", "int8") == 624.0
    assert gpu_peak_tflops("Orin (nvgpu)", "fp16") is None  # not in the table: no floor rather than a guess
    assert bench._peak_for("torch", 55.0) == bench._peak_for("onnxruntime-int8", 55.0) == 55.0
    with pytest.raises(ValueError):
        gpu_peak_tflops("H100", "bf16")


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="OpenVINO is not installed")
def test_openvino_bf16_hint_follows_the_cpu():
    """What the bf16 row and `--precision auto` rely on: the backend's bf16 settings compile to bf16
    exactly where OpenVINO lists BF16 among the CPU's capabilities, and to f32 elsewhere (so the
    selection never offers a "bf16" that is f32 under another name); f32 is always f32."""
    import openvino
    import openvino.opset13 as ops

    from superslomo.runtime.openvino_backend import compile_config

    core = openvino.Core()
    bf16_here = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    x = ops.parameter([1, 8, 16, 16], np.float32, name="x")
    weights = ops.constant(np.random.default_rng(0).random((8, 8, 3, 3), dtype=np.float32))
    model = openvino.Model([ops.convolution(x, weights, [1, 1], [1, 1], [1, 1], [1, 1])], [x])
    compiled = {
        p: str(
            core.compile_model(model, "CPU", compile_config(p, 1)).get_property("INFERENCE_PRECISION_HINT")
        )
        for p in ("f32", "bf16")
    }
    # OpenVINO spells the compiled precision "<Type: 'float32'>" / "<Type: 'bfloat16'>"
    assert "float32" in compiled["f32"]
    assert ("bfloat16" in compiled["bf16"]) == bf16_here and ("float32" in compiled["bf16"]) != bf16_here


# -- the race against minterpolate ---------------------------------------------------------------
def test_minterpolate_job_writes_the_same_frame_count_as_slomo(tmp_path):
    from tests.videoclips import make_clip

    clip = make_clip(tmp_path / "in.mp4", frames=6, size=(64, 48))
    out = tmp_path / "m.mp4"
    # 4 source frames at 2x: 8 frames out, the last one held as `slomo interpolate` holds it
    assert bench.minterpolate_video(clip, out, 4, 2, 14.0, "ultrafast") == 8
    assert bench.count_video_frames(out) == 8


def test_race_runs_both_jobs_alternating_and_refuses_unequal_outputs(tmp_path, monkeypatch):
    import shutil

    from tests.videoclips import make_clip

    clip = make_clip(tmp_path / "in.mp4", frames=6, size=(64, 48))
    ran, seconds = [], {"slomo": 6.0, "minterpolate": 2.0}

    def fake_timed(command):
        name = "slomo" if "superslomo.cli" in command else "minterpolate"
        ran.append(name)
        target = Path(command[command.index("-o") + 1]) if name == "slomo" else Path(command[5])
        shutil.copy(clip, target)  # 6 frames each: equal outputs
        return seconds[name] + len(ran) / 100

    monkeypatch.setattr(race_module, "_timed", fake_timed)
    options = bench.RaceOptions(clip=clip, frames=3, rounds=2, workdir=tmp_path / "race")
    race = bench.run_race(options, say=lambda s: None)
    # an untimed first slomo run, then each round both jobs, the order alternating
    assert ran == ["slomo", "slomo", "minterpolate", "minterpolate", "slomo"]
    assert race["best_s"] == pytest.approx({"slomo": 6.02, "minterpolate": 2.03})
    assert race["ratio"] == pytest.approx(6.02 / 2.03) and race["output_frames"] == 6
    assert race["first_use_s"] == pytest.approx(6.01)
    lines = bench.race_lines(race)
    assert "2.97x the time" in lines[-1] and "6 frames" in lines[0]
    seconds["minterpolate"] = 1.0

    def unequal(command):
        fake_timed(command)
        if "superslomo.cli" not in command:
            make_clip(Path(command[5]), frames=4, size=(64, 48))
        return 1.0

    monkeypatch.setattr(race_module, "_timed", unequal)
    with pytest.raises(SloMoError, match="different frame counts"):
        bench.run_race(options, say=lambda s: None)


def test_cli_against_unknown_baseline_exits_2(capsys):
    from superslomo.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--against", "ffmpeg-blend"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --against takes minterpolate, got 'ffmpeg-blend'"
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--against", "minterpolate", "--race-clip", "nowhere.mp4"])
    assert exit_.value.code == 2 and "race clip not found: nowhere.mp4" in capsys.readouterr().err
