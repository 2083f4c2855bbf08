"""A real tritonserver on loopback serving `slomo triton-repo` output, with real clients.

The server is PyTriton's bundled tritonserver (its own environment, `make triton-env`), which has
only the Python backend: the graph models run ONNX Runtime behind it (`--backend python`), with the
configs a GPU server gets otherwise. Skipped, with the reason, where that server cannot start.
"""

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
from videoclips import make_clip, scene_frame

from superslomo.errors import SloMoError

pytest.importorskip("tritonclient.grpc", reason="the serve extra: pip install 'superslomo-trt[serve]'")

ROOT = Path(__file__).resolve().parents[1]
TIMES = [0.25, 0.5, 0.75]


def triton_env() -> Path:
    path = Path(os.environ.get("SLOMO_TRITON_ENV") or ROOT / "runs" / "triton-venv")
    if not list(path.glob("lib/python3*/site-packages/pytriton/tritonserver/bin/tritonserver")):
        pytest.skip(f"no Triton server environment at {path} (make triton-env installs one)")
    return path


@pytest.fixture(scope="module")
def repo(tmp_path_factory, onnx_model):
    from superslomo.serving.triton_repo import RepoOptions, write_repository

    folder = tmp_path_factory.mktemp("triton") / "models"
    # One thread per instance: two cores are shared by the server, the clients and the reference.
    write_repository(onnx_model, folder, RepoOptions(backend="python", threads=1))
    return folder


@pytest.fixture(scope="module")
def install():
    from superslomo.serving.triton_serve import locate_server

    found = locate_server(server_env=triton_env())
    yield found
    found.cleanup()


def start(repo, install, tmp_path):
    from superslomo.serving.triton_serve import TritonServer

    server = TritonServer(repo, install, log=tmp_path / "tritonserver.log")
    try:
        return server.start(timeout=120)
    except SloMoError as error:
        server.stop()
        pytest.skip(f"tritonserver cannot start here: {error}")


@pytest.fixture(scope="module")
def server(repo, install, tmp_path_factory):
    running = start(repo, install, tmp_path_factory.mktemp("log"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def local(onnx_model):
    from superslomo.runtime import Interpolator

    with Interpolator.from_dir(onnx_model, backend="onnxruntime") as interp:
        yield interp


def pair(size=(90, 50), index=0):
    width, height = size
    return scene_frame(index, width, height), scene_frame(index + 3, width, height)


def stats(server, model):
    import tritonclient.http as http

    client = http.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    try:
        row = client.get_inference_statistics(model)["model_stats"][0]
    finally:
        client.close()
    return int(row["inference_count"]), int(row["execution_count"])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_frames_equal_a_local_run(server, local, protocol):
    from superslomo.serving.triton_client import TritonInterpolator

    frame0, frame1 = pair((90, 50))  # pads to 96x64: the crop is exercised
    expected = local.interpolate(frame0, frame1, TIMES)
    expected_float = local.interpolate(frame0, frame1, TIMES, as_float=True)
    url = server.http_url if protocol == "http" else server.grpc_url
    with TritonInterpolator(url) as remote:
        served = remote.backend
        assert served.manifest.kind == "onnx" and served.describe().startswith(f"triton {url}")
        got = remote.interpolate(frame0, frame1, TIMES)
        got_float = remote.interpolate(frame0, frame1, TIMES, as_float=True)
    assert len(got) == 3 and got[0].shape == (50, 90, 3) and got[0].dtype == np.uint8
    for a, b in zip(got, expected, strict=True):
        assert np.array_equal(a, b)
    for a, b in zip(got_float, expected_float, strict=True):
        assert np.abs(a - b).max() <= 1e-6
    assert not np.array_equal(got[0], got[2])  # different times, different frames


def test_graph_models_through_the_runtime_backend(server, local):
    from superslomo.runtime import Interpolator
    from superslomo.serving.triton_client import TritonBackend

    frame0, frame1 = pair((70, 40), 5)
    with Interpolator(TritonBackend(server.grpc_url), max_batch=2) as remote:
        got = remote.interpolate(frame0, frame1, TIMES)
    for a, b in zip(got, local.interpolate(frame0, frame1, TIMES), strict=True):
        assert np.array_equal(a, b)


def cli(argv, capsys):
    from superslomo.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_a_video_through_the_server_equals_a_local_run(server, onnx_model, tmp_path, capsys):
    clip = make_clip(tmp_path / "in.mp4", frames=8, size=(90, 50))
    runs = {}
    for name, extra in (
        ("local", ["--model", str(onnx_model), "--backend", "onnxruntime"]),
        ("served", ["--server", server.grpc_url]),
    ):
        code, out, err = cli(
            ["interpolate", str(clip), "-o", str(tmp_path / name), "--factor", "3", *extra], capsys
        )
        assert code in (0, None), err
        runs[name] = out
    assert "8 frames in, 24 out, 14 new" in runs["served"] and f"triton {server.grpc_url}" in runs["served"]
    local_files = sorted((tmp_path / "local").iterdir())
    served_files = sorted((tmp_path / "served").iterdir())
    assert [p.name for p in local_files] == [p.name for p in served_files] and len(local_files) == 24
    for a, b in zip(local_files, served_files, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_eight_concurrent_clients(server, local):
    from superslomo.serving.triton_client import TritonInterpolator

    pairs = [pair((64, 48), i) for i in range(3)]
    expected = [local.interpolate(f0, f1, [0.5])[0] for f0, f1 in pairs]
    before = stats(server, "slomo_flow")
    results: dict[int, list] = {}
    errors: list[BaseException] = []
    go = threading.Barrier(8)

    def client(index: int) -> None:
        try:
            url = server.http_url if index % 2 else server.grpc_url
            with TritonInterpolator(url, timeout=120) as remote:
                go.wait(timeout=60)
                results[index] = [remote.interpolate(f0, f1, [0.5])[0] for f0, f1 in pairs]
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors[0]
    assert sorted(results) == list(range(8))
    for frames in results.values():
        for a, b in zip(frames, expected, strict=True):
            assert np.array_equal(a, b)
    after = stats(server, "slomo_flow")
    inferences, executions = after[0] - before[0], after[1] - before[1]
    assert inferences == 24
    # The dynamic batcher merged flow requests of different clients into shared executions.
    assert executions < inferences, (inferences, executions)


def test_errors_are_one_line(server):
    from superslomo.contracts.shapes import Profile, Shape
    from superslomo.serving.triton_client import TritonInterpolator

    with pytest.raises(SloMoError) as info:
        TritonInterpolator(server.http_url, model="nope")
    assert "has no model 'nope' ready (ready there: slomo, slomo_flow, slomo_interp)" in str(info.value)

    with TritonInterpolator(server.grpc_url) as remote:
        remote.backend.profiles = [Profile(Shape(1, 64, 64), Shape(1, 64, 64), Shape(1, 256, 256))]
        with pytest.raises(SloMoError, match=r"frames padded to 416x320 are outside"):
            remote.interpolate(*pair((400, 300)), [0.5])

    for url in (server.http_url, server.grpc_url):
        # Enough for the health checks, not for eight 640x480 frames on one thread (four 256x256
        # frames came back within 0.3 s on an idle Zen 4 core).
        with TritonInterpolator(url, timeout=0.3) as remote:
            with pytest.raises(SloMoError) as info:
                remote.interpolate(*pair((640, 480)), [k / 9 for k in range(1, 9)])
            assert "did not answer during a pair within 0.3 s" in str(info.value), str(info.value)
            assert "\n" not in str(info.value)
    with TritonInterpolator(server.http_url) as remote:  # and it still serves
        assert len(remote.interpolate(*pair((64, 48)), [0.5])) == 1


def test_server_killed_mid_stream_leaves_no_output(repo, install, tmp_path):
    server = start(repo, install, tmp_path)
    try:
        clip = make_clip(tmp_path / "long.mp4", frames=48, size=(90, 50))
        out = tmp_path / "out.mp4"
        command = [sys.executable, "-c", "from superslomo.cli import main; main()"]
        args = ["interpolate", str(clip), "-o", str(out), "--factor", "8", "--server", server.http_url]
        process = subprocess.Popen(command + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while stats(server, "slomo")[0] < 3 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before the server could be killed"
        server.kill()
        stdout, stderr = process.communicate(timeout=120)
    finally:
        server.stop()
    lines = [line for line in stderr.splitlines() if not line.startswith("backend:")]
    assert process.returncode == 2, stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: lost the Triton server at {server.http_url}"), (
        stderr
    )
    assert "Traceback" not in stderr and stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4", "tritonserver.log"]


def test_slomo_serve(onnx_model, local, tmp_path):
    from superslomo.serving.triton_client import TritonInterpolator
    from superslomo.serving.triton_serve import free_port

    env_dir = triton_env()
    http_port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-c", "from superslomo.cli import main; main()", "serve", str(onnx_model)]
    command += ["--server-env", str(env_dir), "--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    process = subprocess.Popen(
        command + ["--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("serving "):
                break
        if not lines or not lines[-1].startswith("serving "):
            pytest.skip(f"slomo serve did not start here: {''.join(lines)[-500:]}")
        assert f"at http://127.0.0.1:{http_port} and grpc://127.0.0.1:{grpc_port}" in lines[-1]
        assert "python backend" in lines[-1]
        frame0, frame1 = pair((90, 50), 7)
        with TritonInterpolator(f"grpc://127.0.0.1:{grpc_port}") as remote:
            got = remote.interpolate(frame0, frame1, [0.5])
        assert np.array_equal(got[0], local.interpolate(frame0, frame1, [0.5])[0])
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, "".join(lines) + rest
    assert "stopping the server" in rest and "Traceback" not in rest
    with pytest.raises(SloMoError, match="cannot reach"):
        TritonInterpolator(f"http://127.0.0.1:{http_port}", timeout=5)
