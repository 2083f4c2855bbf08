"""The hosts (superslomo/hosts): the VapourSynth filter and the GStreamer element make the frames
`slomo interpolate` and `Interpolator.run` make, on a real clip with a scene cut.

Frames go in and out losslessly (PNG sequences for the CLI and gst-launch, arrays for the rest),
so "the same" is exact: equal uint8 arrays, no tolerance. The model is the small exported test
network at 96x54. Each host runs for real in its own environment (`make vapoursynth-env`, `make
gstreamer-env`); where one is absent its tests skip and say why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from superslomo.errors import SloMoError
from superslomo.hosts.pairs import PairCache
from superslomo.video.timing import SNAP, FrameGrid, Timeline

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
DEMO = ROOT / "demo" / "big_buck_bunny_bird.mp4"
SIZE = (96, 54)  # WIDTH, HEIGHT: not multiples of 32, so padding is on the path
CUT_AT = 8  # the demo clip cuts between its frames 46 and 47: source frames 8 and 9 here
PINNED = {"backend": "onnxruntime", "precision": "fp32"}
SYSTEM_PYTHON = "/usr/bin/python3"  # the Python GStreamer's plugin loader embeds, and its gi


# -- the shared rules, no host needed -------------------------------------------------------------
@pytest.mark.parametrize(
    "in_rate, out_rate, frames",
    [
        (Fraction(25), Fraction(50), 9),
        (Fraction(25), Fraction(60), 11),
        (Fraction(24000, 1001), Fraction(60), 13),
        (Fraction(30000, 1001), Fraction(60000, 1001), 7),
        (Fraction(60), Fraction(24), 17),
        (Fraction(10), Fraction(75), 5),
    ],
)
def test_frame_grid_answers_what_the_job_timeline_does(in_rate, out_rate, frames):
    timeline = Timeline(out_rate)
    expected = {}
    for k in range(frames):
        t0 = Fraction(k) / in_rate
        for slot in timeline.slots(t0, t0 + 1 / in_rate):
            expected[slot.index] = (k, slot.t)
    grid = FrameGrid(in_rate, out_rate, frames)
    assert grid.count == len(expected) == max(expected) + 1
    assert {j: grid.slot(j) for j in range(grid.count)} == expected
    made = {j: t for k in range(frames) for j, t in grid.pair_times(k)}
    assert made == {j: t for j, (k, t) in expected.items() if t > 0 and k < frames - 1}


def test_frame_grid_snaps_like_the_timeline_and_refuses_outside():
    grid = FrameGrid(Fraction(25), Fraction(50), 3)
    assert grid.slot(5) == (2, 0.5)  # the last frame held for its interval
    with pytest.raises(SloMoError, match="outside"):
        grid.slot(6)
    assert SNAP == Fraction(1, 8)


def test_pair_cache_computes_each_pair_once_across_threads():
    cache: PairCache[int] = PairCache(capacity=3)
    calls: list[int] = []

    def compute(key):
        calls.append(key)
        time.sleep(0.01)
        return key * 10

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(1, compute))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [10] * 8 and calls == [1]
    for key in range(2, 10):
        cache.get(key, compute)
    assert len(cache) == 3  # bounded: the oldest pairs went
    cache.get(1, compute)
    assert calls.count(1) == 2


def test_pair_cache_retries_after_a_failure():
    cache: PairCache[int] = PairCache(capacity=2)

    def broken(key):
        raise SloMoError("no")

    with pytest.raises(SloMoError):
        cache.get(0, broken)
    assert cache.get(0, lambda key: 5) == 5


# -- a real clip and the CLI's frames --------------------------------------------------------------
@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """16 consecutive frames of the shipped clip (real footage) around its scene cut, at 96x54,
    as PNGs (the CLI's and gst-launch's input) and as an array (the harnesses')."""
    from PIL import Image

    from superslomo.video.frames import iter_video_frames

    folder = tmp_path_factory.mktemp("hosts-clip")
    frames = []
    for index, frame in enumerate(iter_video_frames(DEMO)):
        if 38 <= index < 54:
            frames.append(np.asarray(Image.fromarray(frame).resize(SIZE, Image.BILINEAR)))
    (folder / "frames").mkdir()
    for number, frame in enumerate(frames, 1):
        Image.fromarray(frame).save(folder / "frames" / f"{number:04d}.png")
    np.savez(folder / "frames.npz", frames=np.stack(frames))
    return folder


def read_sequence(folder: Path) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(path).convert("RGB")) for path in sorted(folder.glob("*.png"))])


def slomo_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "superslomo.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def cli_frames(clip, onnx_model):
    """`slomo interpolate`'s frames, PNG in and out: factor 2, and 60 fps (2.4 per source frame)."""
    made = {}
    for name, option in (("factor2", ["--factor", "2"]), ("fps60", ["--fps", "60"])):
        out = clip / f"cli-{name}"
        result = slomo_cli(
            "interpolate", str(clip / "frames"), "-o", str(out / "%04d.png"), "--input-fps", "25",
            "--model", str(onnx_model), "--backend", "onnxruntime", "--precision", "fp32", *option,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        made[name] = read_sequence(out)
    return made


def test_the_clip_has_a_cut_the_cli_holds(clip, cli_frames):
    frames = np.load(clip / "frames.npz")["frames"]
    made = cli_frames["factor2"]
    assert len(made) == 2 * len(frames)
    assert all(np.array_equal(made[2 * k], frames[k]) for k in range(len(frames)))  # originals untouched
    assert np.array_equal(made[2 * CUT_AT + 1], frames[CUT_AT + 1])  # t = 0.5 holds the second original


def test_interpolator_run_makes_the_cli_new_frames(clip, cli_frames, onnx_model):
    from superslomo.runtime import Interpolator

    frames = list(np.load(clip / "frames.npz")["frames"])
    with Interpolator.from_dir(onnx_model, backend="onnxruntime") as interp:
        ran = list(interp.run(frames, 2))
    made = cli_frames["factor2"]
    compared = 0
    for k in range(len(frames) - 1):
        if k == CUT_AT or np.array_equal(frames[k], frames[k + 1]):
            continue  # run has no scene cuts: the CLI holds an original there
        assert np.array_equal(ran[2 * k + 1], made[2 * k + 1]), f"pair {k}"
        compared += 1
    assert compared >= 12


# -- VapourSynth ----------------------------------------------------------------------------------
def vapoursynth_python() -> Path:
    env = Path(os.environ.get("SLOMO_VAPOURSYNTH_ENV") or ROOT / "runs" / "vapoursynth-venv")
    python = env / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no VapourSynth environment at {env} (make vapoursynth-env; needs Python >= 3.12)")
    return python


def run_vapoursynth(clip: Path, tmp_path: Path, spec: dict) -> dict:
    python = vapoursynth_python()
    out = tmp_path / "vs.npz"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [str(python), str(TESTS / "hosts_vs_check.py"), str(clip / "frames.npz"), str(out), json.dumps(spec)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(np.load(out))


@pytest.mark.parametrize("name, option", [("factor2", {"factor": 2}), ("fps60", {"fps": "60"})])
def test_vapoursynth_makes_the_cli_frames_in_any_order(clip, cli_frames, onnx_model, tmp_path, name, option):
    got = run_vapoursynth(clip, tmp_path, {"model": str(onnx_model), **PINNED, **option})
    expected = cli_frames[name]
    assert got["num_frames"] == len(expected)
    assert Fraction(*got["fps"]) == (Fraction(50) if name == "factor2" else Fraction(60))
    assert got["frames"].shape == expected.shape
    assert all(np.array_equal(a, b) for a, b in zip(got["frames"], expected, strict=True))
    assert got["reverse_same"] and got["parallel_same"]
    # Each pair that needs the model had its flow computed once: not the cut, not a still.
    frames = np.load(clip / "frames.npz")["frames"]
    pairs = sum(
        1 for k in range(len(frames) - 1) if k != CUT_AT and not np.array_equal(frames[k], frames[k + 1])
    )
    assert got["flows_in_order"] == pairs
    props = json.loads(str(got["props"]))
    assert {(p["_DurationNum"], p["_DurationDen"]) for p in props} == {(1, 50 if name == "factor2" else 60)}
    if name == "factor2":  # the held t = 0.5 frame opens the new shot
        assert [n for n, p in enumerate(props) if p["_SceneChangeNext"]] == [2 * CUT_AT]
        assert [n for n, p in enumerate(props) if p["_SceneChangePrev"]] == [2 * CUT_AT + 1]


def test_vapoursynth_honours_scene_change_props_and_float_formats(clip, cli_frames, onnx_model, tmp_path):
    marked = run_vapoursynth(
        clip,
        tmp_path,
        {"model": str(onnx_model), **PINNED, "factor": 2, "props": {"3": {"_SceneChangeNext": 1}}},
    )
    frames = np.load(clip / "frames.npz")["frames"]
    assert np.array_equal(marked["frames"][7], frames[4])  # pair 3 held as a cut, not interpolated
    assert np.array_equal(marked["frames"][5], cli_frames["factor2"][5])  # its neighbours unchanged
    floats = run_vapoursynth(
        clip, tmp_path, {"model": str(onnx_model), **PINNED, "factor": 2, "format": "RGBS"}
    )
    assert floats["frames"].dtype == np.float32
    # Float in: the model sees the same 8-bit frames; its output is kept unrounded (within half a step).
    difference = np.abs(floats["frames"] * 255.0 - cli_frames["factor2"].astype(np.float32))
    assert difference.max() <= 0.5 + 1e-3


def test_vapoursynth_memory_stays_flat_over_a_long_clip(clip, onnx_model, tmp_path):
    got = run_vapoursynth(clip, tmp_path, {"model": str(onnx_model), **PINNED, "factor": 2, "long": 600})
    assert got["num_frames"] == 1200
    assert got["flows"] == 599  # no pair computed twice in order
    early, late = got["rss"]
    assert late - early < 40, f"RSS grew {late - early:.0f} MiB over 900 output frames"


def test_vapoursynth_refuses_bad_clips_in_one_line(onnx_model, tmp_path):
    python = vapoursynth_python()
    script = """
import vapoursynth as vs
from fractions import Fraction
from superslomo.vapoursynth import slomo
core = vs.core
rgb = core.std.BlankClip(format=vs.RGB24, width=64, height=32, length=4)
cases = [
    (core.std.BlankClip(format=vs.YUV420P8, length=4), {}),
    (rgb, {"factor": 2, "fps": 60}),
    (rgb, {"factor": 1}),
    (core.std.Splice([rgb, core.std.AssumeFPS(rgb, fpsnum=30)], mismatch=True), {}),
    (rgb[0], {}),
    (rgb, {"model": "/no/such/model"}),
]
for clip, options in cases:
    try:
        slomo(clip, **options)
        print("accepted")
    except vs.Error as error:
        print(error)
"""
    result = subprocess.run(
        [str(python), "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, result.stderr
    assert len(lines) == 6 and all(line.startswith("slomo: ") for line in lines), lines
    assert 'core.resize.Bicubic(clip, format=vs.RGB24, matrix_in_s="709")' in lines[0]
    assert "factor or fps" in lines[1] and "between 2 and" in lines[2]
    assert "AssumeFPS" in lines[3] and "one frame" in lines[4] and "model not found" in lines[5]


def test_vspipe_runs_the_documented_script(clip, onnx_model, tmp_path):
    import av

    python = vapoursynth_python()
    source = tmp_path / "input.mp4"  # the clip's frames as a user's file: 16 frames at 24 fps
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
        for frame in np.load(clip / "frames.npz")["frames"]:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    y4m = tmp_path / "out.y4m"
    result = subprocess.run(
        [str(python.parent / "vspipe"), "-c", "y4m", "-a", f"source={source}", "-a", f"model={onnx_model}",
         str(ROOT / "docs" / "examples" / "slomo.vpy"), str(y4m)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    header = y4m.read_bytes()[:200].split(b"\n")[0].decode()
    assert " W96 " in header and " H54 " in header and " F48:1 " in header, header
    assert y4m.read_bytes().count(b"FRAME\n") == 32  # twice the rate, same duration


# -- GStreamer ------------------------------------------------------------------------------------
def gstreamer_env() -> dict:
    from superslomo.hosts.gst_env import env_lines, find_loader

    if shutil.which("gst-launch-1.0") is None or find_loader() is None:
        pytest.skip("GStreamer with its Python plugin loader is not installed (make gstreamer-env)")
    try:
        lines = env_lines()
    except SloMoError as error:
        pytest.skip(str(error))
    if not Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"no {SYSTEM_PYTHON}: GStreamer's Python plugin loader runs the system Python")
    check = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstVideo', '1.0')"], capture_output=True
    )
    if check.returncode != 0:
        pytest.skip("the system Python has no GStreamer bindings (make gstreamer-env: python3-gst-1.0)")
    env = dict(os.environ)
    for line in lines:
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = subprocess.run(
            ["bash", "-c", f"echo {value}"], capture_output=True, text=True
        ).stdout.strip()
    return env


def run_element(clip: Path, tmp_path: Path, spec: dict, frames: np.ndarray | None = None) -> dict:
    env = gstreamer_env()
    source = clip / "frames.npz"
    if frames is not None:
        source = tmp_path / "in.npz"
        np.savez(source, frames=frames)
    out = tmp_path / "gst.npz"
    result = subprocess.run(
        [SYSTEM_PYTHON, str(TESTS / "hosts_gst_check.py"), str(source), str(out), json.dumps(spec)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return dict(np.load(out))


def expected_pts(count: int, rate: Fraction, first: int = 0) -> list[int]:
    return [first + round(Fraction(j * 10**9) / rate) for j in range(count + 1)]


@pytest.mark.parametrize("name, option, rate", [("factor2", {"factor": 2}, 50), ("fps60", {"fps": "60"}, 60)])
def test_gstreamer_element_makes_the_cli_frames_with_exact_timestamps(
    clip, cli_frames, onnx_model, tmp_path, name, option, rate
):
    frames = np.load(clip / "frames.npz")["frames"]
    spec = {"properties": {"model": str(onnx_model), **PINNED, **option}, "steps": [["push", 0, 16], ["eos"]]}
    got = run_element(clip, tmp_path, spec)
    expected = cli_frames[name]
    assert len(got["frames"]) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(got["frames"], expected, strict=True))
    assert f"framerate=(fraction){rate}/1" in str(got["caps"])
    stamps = expected_pts(len(expected), Fraction(rate))
    assert list(got["pts"]) == stamps[:-1]
    assert list(got["durations"]) == [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert list(got["events"])[-1] == "eos" and len(frames) == 16


def test_gstreamer_element_reads_and_writes_other_layouts(clip, cli_frames, onnx_model, tmp_path):
    for fmt in ("BGRx", "RGBA"):
        spec = {
            "properties": {"model": str(onnx_model), **PINNED},
            "format": fmt,
            "steps": [["push", 0, 16], ["eos"]],
        }
        got = run_element(clip, tmp_path, spec)
        assert all(np.array_equal(a, b) for a, b in zip(got["frames"], cli_frames["factor2"], strict=True)), (
            fmt
        )


def test_gstreamer_seek_never_pairs_across_it_and_eos_keeps_the_last_frame(clip, onnx_model, tmp_path):
    frames = np.load(clip / "frames.npz")["frames"]
    spec = {
        "properties": {"model": str(onnx_model), **PINNED},
        "steps": [["push", 0, 5], ["seek", 10], ["push", 10, 16], ["eos"]],
    }
    got = run_element(clip, tmp_path, spec)
    after = list(got["pts"]).index(round(10 * 10**9 / 25))  # the first buffer after the seek
    assert got["flags"][after] & 0x40  # DISCONT
    alone = run_element(clip, tmp_path, {**spec, "steps": [["push", 0, 6], ["eos"]]}, frames=frames[10:16])
    tail = got["frames"][after:]
    assert len(tail) == 12 and all(np.array_equal(a, b) for a, b in zip(tail, alone["frames"], strict=True))
    assert np.array_equal(tail[-1], frames[15]) and np.array_equal(tail[-2], frames[15])  # held, not lost
    assert list(got["pts"][after:]) == expected_pts(12, Fraction(50), round(10 * 10**9 / 25))[:-1]


def test_gstreamer_element_does_not_hold_upstream_for_a_pair(clip, onnx_model, tmp_path):
    from PIL import Image

    frames = np.load(clip / "frames.npz")["frames"]
    big = np.stack([np.asarray(Image.fromarray(f).resize((384, 216))) for f in frames[:8]])
    spec = {"properties": {"model": str(onnx_model), **PINNED}, "steps": [["push", 0, 6], ["eos"]]}
    got = run_element(clip, tmp_path, {**spec, "timing": True}, frames=big)
    pushes, drain = got["push_seconds"], float(got["eos_seconds"])
    # The queue takes six frames at once; their pairs' compute shows up in the EOS drain instead.
    assert pushes.sum() < 0.5 * drain, (pushes, drain)


def test_gstreamer_bad_model_is_one_error_on_the_bus_without_a_traceback(tmp_path):
    env = gstreamer_env()
    result = subprocess.run(
        ["gst-launch-1.0", "videotestsrc", "num-buffers=4", "!",
         "video/x-raw,width=64,height=32,framerate=25/1", "!", "videoconvert", "!",
         "slomo", "model=/no/such/model", "!", "fakesink"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert "slomo: model not found: /no/such/model" in text
    assert "Traceback" not in text


def gst_launch_as_documented(pipeline: str) -> subprocess.CompletedProcess:
    """`eval "$(slomo gst-env)"`, then gst-launch-1.0 on `pipeline`, in a fresh shell (docs/hosts.md)."""
    command = f'eval "$({sys.executable} -m superslomo.cli gst-env)" && gst-launch-1.0 -q {pipeline}'
    result = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_gst_env_then_gst_launch_on_files_makes_the_cli_frames(clip, cli_frames, onnx_model, tmp_path):
    gstreamer_env()  # skips where GStreamer cannot run the element
    out = tmp_path / "gst-out"
    out.mkdir()
    pipeline = (
        f"multifilesrc location={clip}/frames/%04d.png index=1 caps=image/png,framerate=25/1 ! pngdec ! "
        f"videoconvert ! slomo factor=2 model={onnx_model} backend=onnxruntime precision=fp32 ! "
        f"videoconvert ! pngenc ! multifilesink location={out}/%04d.png"
    )
    gst_launch_as_documented(pipeline)
    made = read_sequence(out)
    expected = cli_frames["factor2"]
    assert len(made) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(made, expected, strict=True))


def test_the_documented_gst_launch_line_on_an_h264_file(clip, onnx_model, tmp_path):
    """docs/hosts.md's pipeline as a user types it: an .mp4 decoded by decodebin, x264enc into
    mp4mux; twice the frames at twice the rate (the elements it needs are in its apt line)."""
    import av

    env = gstreamer_env()
    for element in ("avdec_h264", "x264enc", "mp4mux"):
        if subprocess.run(["gst-inspect-1.0", element], capture_output=True, env=env).returncode != 0:
            pytest.skip(f"GStreamer element {element} missing (make gstreamer-env installs it)")
    source = tmp_path / "input.mp4"
    frames = np.load(clip / "frames.npz")["frames"][:8]
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    output = tmp_path / "output.mp4"
    pipeline = (
        f"filesrc location={source} ! decodebin ! videoconvert ! slomo factor=2 model={onnx_model} ! "
        f"videoconvert ! x264enc ! mp4mux ! filesink location={output}"
    )
    result = gst_launch_as_documented(pipeline)
    assert "Traceback" not in result.stderr
    with av.open(str(output)) as container:
        video = container.streams.video[0]
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video)]
        assert video.average_rate == 50
    assert len(decoded) == 2 * len(frames)
    assert decoded[0].shape == (SIZE[1], SIZE[0], 3)


def test_gst_env_refuses_in_one_line_where_the_element_could_not_load(monkeypatch, tmp_path):
    from superslomo.hosts import gst_env

    monkeypatch.setattr(gst_env, "find_loader", lambda: None)
    with pytest.raises(SloMoError, match="apt-get install .*gstreamer1.0-python3-plugin-loader"):
        gst_env.env_lines()
    fake = tmp_path / "libgstpython.so"
    fake.write_bytes(b"\0libpython3.9.so.1.0\0")
    monkeypatch.setattr(gst_env, "find_loader", lambda: fake)
    if sys.version_info[:2] == (3, 9):
        pytest.skip("this Python is the fake loader's")
    with pytest.raises(SloMoError, match="runs Python 3.9 and this installation is Python 3"):
        gst_env.env_lines()
    fake.write_bytes(f"\0libpython{sys.version_info.major}.{sys.version_info.minor}.so\0".encode())
    exports = dict(line.removeprefix("export ").split("=", 1) for line in gst_env.env_lines())
    assert set(exports) == {"GST_PLUGIN_PATH", "SLOMO_GST_PYTHONPATH"}
    assert exports["GST_PLUGIN_PATH"].startswith(str(gst_env.PLUGIN_DIR))
    import superslomo

    assert exports["SLOMO_GST_PYTHONPATH"].split(":")[0] == str(
        Path(superslomo.__file__).resolve().parents[1]
    )
