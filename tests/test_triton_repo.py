"""The Triton model repository writer, the client's pure parts and the CLI's errors; no server.

Every config.pbtxt is parsed against Triton's own ModelConfig schema (tritonclient ships it), and
the parsed values are compared with what a server needs: dims, the t reshape, batching, instance
groups, accelerators, the engine profiles.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest

from superslomo.contracts.files import file_sha256
from superslomo.contracts.manifest import GraphEntry, Manifest, parse_manifest, write_manifest
from superslomo.contracts.shapes import Profile, Shape
from superslomo.errors import SloMoError
from superslomo.serving.triton_repo import (
    PARAM_MANIFEST,
    PARAM_PROFILES,
    RepoOptions,
    model_names,
    write_repository,
)

pytest.importorskip("tritonclient.grpc", reason="the serve extra: pip install 'superslomo-trt[serve]'")

# A serialized ModelProto holding only ir_version = 7: enough for the manifest's checks, which
# read the graph bytes for external-data locations without running them.
TINY_ONNX = b"\x08\x07"


def fake_folder(
    folder: Path, kind: str = "onnx", io: str = "float32", warp: str = "gridsample", **tensorrt
) -> Path:
    folder.mkdir(parents=True)
    suffix = ".plan" if kind == "tensorrt" else ".onnx"
    graphs = {}
    for graph in ("flow", "interp"):
        path = folder / f"{graph}{suffix}"
        path.write_bytes(TINY_ONNX if kind == "onnx" else f"plan {graph}".encode())
        graphs[graph] = GraphEntry(path.name, file_sha256(path), [], [])
    info = {}
    if kind == "tensorrt":
        info = {
            "version": "10.3.0",
            "gpu": "NVIDIA L4",
            "compute_capability": "8.9",
            "profiles": [
                {"min": [1, 64, 64], "opt": [1, 256, 448], "max": [4, 512, 512]},
                {"min": [1, 64, 64], "opt": [1, 736, 1280], "max": [4, 1088, 1920]},
            ],
            **tensorrt,
        }
    manifest = Manifest(kind=kind, precision="fp32", warp=warp, io=io, opset=17, graphs=graphs, tensorrt=info)
    write_manifest(folder, manifest)
    return folder


def parse_config(path: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def load_repo(repo: Path) -> dict:
    return {p.parent.name: parse_config(p) for p in sorted(repo.glob("*/config.pbtxt"))}


def params(config) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


def enum_name(config, field: str, value: int) -> str:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.DataType.Name(value) if field == "data_type" else str(value)


@pytest.mark.parametrize(
    "backend, accelerator, io",
    [
        ("onnxruntime", "none", "float32"),
        ("onnxruntime", "cuda", "float32"),
        ("onnxruntime", "tensorrt", "uint8"),
        ("python", "none", "float32"),
        ("tensorrt", "none", "float32"),
    ],
)
def test_every_config_parses_against_tritons_schema(tmp_path, backend, accelerator, io):
    from tritonclient.grpc import model_config_pb2 as pb

    kind = "tensorrt" if backend == "tensorrt" else "onnx"
    folder = fake_folder(tmp_path / "model", kind=kind, io=io)
    options = RepoOptions(backend=backend, accelerator=accelerator, instances=3, max_batch=2)
    result = write_repository(folder, tmp_path / "repo", options)
    configs = load_repo(tmp_path / "repo")
    assert set(configs) == {"slomo", "slomo_flow", "slomo_interp"} == set(result.models.values())

    frame_type = pb.TYPE_UINT8 if io == "uint8" else pb.TYPE_FP32
    frame_dims = [-1, -1, 3] if io == "uint8" else [3, -1, -1]
    for graph in ("flow", "interp"):
        config = configs[f"slomo_{graph}"]
        assert config.name == f"slomo_{graph}" and config.max_batch_size == 2
        inputs = {i.name: i for i in config.input}
        outputs = {o.name: o for o in config.output}
        for name in ("frame0", "frame1"):
            assert inputs[name].data_type == frame_type and list(inputs[name].dims) == frame_dims
        assert config.HasField("dynamic_batching")
        (group,) = config.instance_group
        assert group.count == 3
        assert group.kind == (
            pb.ModelInstanceGroup.KIND_CPU if backend == "python" else pb.ModelInstanceGroup.KIND_GPU
        )
        manifest = parse_manifest(json.loads(params(config)[PARAM_MANIFEST]))
        assert manifest.kind == kind and manifest.io == io
        if backend == "tensorrt":
            assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
            assert list(group.profile) == ["0", "1"]  # both engine profiles usable
            assert (
                tmp_path / "repo" / f"slomo_{graph}" / "1" / "model.plan"
            ).read_bytes() == f"plan {graph}".encode()
        else:
            assert config.backend == backend
            onnx = tmp_path / "repo" / f"slomo_{graph}" / "1" / "model.onnx"
            assert onnx.read_bytes() == TINY_ONNX
            assert (onnx.parent / "model.py").exists() == (backend == "python")
        if graph == "flow":
            assert set(outputs) == {"flow01", "flow10"} and list(outputs["flow01"].dims) == [2, -1, -1]
        else:
            # t is per sample: [N, 1] on the wire, [N] for the graph.
            assert list(inputs["t"].dims) == [1] and inputs["t"].HasField("reshape")
            assert list(inputs["t"].reshape.shape) == []
            assert list(inputs["flow10"].dims) == [2, -1, -1]
            assert outputs["frame_t"].data_type == frame_type
        accelerators = list(config.optimization.execution_accelerators.gpu_execution_accelerator)
        if accelerator == "none":
            assert accelerators == []
        else:
            (acc,) = accelerators
            assert acc.name == accelerator
            if accelerator == "tensorrt":
                assert acc.parameters["precision_mode"] == "FP32"  # warp coordinates stay fp32
                shapes = acc.parameters["trt_profile_max_shapes"]
                assert "frame0:2x1088x1920x3" in shapes  # uint8 frames are NHWC
                if graph == "interp":
                    assert "t:2" in shapes.split(",")
            else:
                assert acc.parameters["use_tf32"] == "0"

    pair = configs["slomo"]
    assert pair.backend == "python" and pair.max_batch_size >= 1
    assert [i.name for i in pair.input] == ["frame0", "frame1", "t"] and list(pair.input[2].dims) == [-1]
    assert list(pair.output[0].dims) == [-1, *frame_dims]
    assert params(pair)["flow_model"] == "slomo_flow" and params(pair)["interp_model"] == "slomo_interp"
    assert params(pair)["interp_max_batch"] == "2"
    assert (tmp_path / "repo" / "slomo" / "1" / "model.py").is_file()
    if backend == "tensorrt":
        profiles = [Profile.from_json(p) for p in json.loads(params(pair)[PARAM_PROFILES])]
        assert profiles[1].max == Shape(4, 1088, 1920)


def test_model_names_and_an_existing_repository(tmp_path):
    folder = fake_folder(tmp_path / "model")
    repo = tmp_path / "repo"
    (repo / "other" / "1").mkdir(parents=True)
    (repo / "other" / "config.pbtxt").write_text('name: "other"\n')
    write_repository(folder, repo, RepoOptions(name="fast"))
    assert model_names("fast") == {"flow": "fast_flow", "interp": "fast_interp", "pair": "fast"}
    assert sorted(p.name for p in repo.iterdir()) == ["fast", "fast_flow", "fast_interp", "other"]
    with pytest.raises(SloMoError, match="already has model"):
        write_repository(folder, repo, RepoOptions(name="fast"))
    before = (repo / "fast_flow" / "config.pbtxt").read_text()
    write_repository(folder, repo, RepoOptions(name="fast", max_batch=7, overwrite=True))
    after = (repo / "fast_flow" / "config.pbtxt").read_text()
    assert before != after and "max_batch_size: 7" in after
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "repo"]  # no staging left


@pytest.mark.parametrize(
    "kind, options, message",
    [
        ("tensorrt", {"backend": "tensorrt", "server_trt_version": "10.8.0"}, "slomo build-engine ONNX_DIR"),
        ("tensorrt", {"backend": "tensorrt", "max_batch": 5}, "exceeds the engines' largest batch"),
        ("tensorrt", {"backend": "onnxruntime"}, "holds TensorRT engines"),
        ("onnx", {"backend": "tensorrt"}, "build-engine"),
        ("onnx", {"server_trt_version": "10.3.0"}, "for engine folders"),
        ("onnx", {"accelerator": "tensorrt", "kind": "cpu"}, "needs GPU instances"),
        ("onnx", {"backend": "python", "accelerator": "cuda"}, "is for --backend onnxruntime"),
        ("onnx", {"instances": 0}, "--instances must be"),
        ("onnx", {"backend": "ensemble"}, "unknown --backend"),
        ("onnx", {"name": "a/b"}, "--name must be"),
    ],
)
def test_refusals_are_one_line_and_write_nothing(tmp_path, kind, options, message):
    folder = fake_folder(tmp_path / "model", kind=kind)
    with pytest.raises(SloMoError, match=message.replace("(", r"\(")) as info:
        write_repository(folder, tmp_path / "repo", RepoOptions(**options))
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_engine_version_check(tmp_path):
    folder = fake_folder(tmp_path / "engines", kind="tensorrt")
    with pytest.raises(SloMoError) as info:
        write_repository(
            folder, tmp_path / "r0", RepoOptions(backend="tensorrt", server_trt_version="10.9.0")
        )
    assert "built with TensorRT 10.3.0 but the server runs TensorRT 10.9.0" in str(info.value)
    assert "slomo build-engine ONNX_DIR -o ENGINE_DIR" in str(info.value)
    ok = write_repository(
        folder, tmp_path / "r1", RepoOptions(backend="tensorrt", server_trt_version="10.3.0")
    )
    assert ok.notes == []
    unchecked = write_repository(folder, tmp_path / "r2", RepoOptions(backend="tensorrt"))
    assert "TensorRT is 10.3.0" in unchecked.notes[0]
    # Version-compatible plans load on a newer minor release of the same major.
    compatible = fake_folder(tmp_path / "vc", kind="tensorrt", version_compatible=True)
    write_repository(
        compatible, tmp_path / "r3", RepoOptions(backend="tensorrt", server_trt_version="10.9.0")
    )
    plugin = fake_folder(
        tmp_path / "plugin", kind="tensorrt", warp="plugin", version="10.3.0", version_compatible=True
    )
    with pytest.raises(SloMoError, match="BackWarp plugin"):
        write_repository(
            plugin, tmp_path / "r4", RepoOptions(backend="tensorrt", server_trt_version="10.5.0")
        )


def test_plugin_onnx_folders_are_refused_for_onnxruntime(tmp_path):
    folder = fake_folder(tmp_path / "model", warp="plugin")
    with pytest.raises(SloMoError, match="--warp gridsample"):
        write_repository(folder, tmp_path / "repo", RepoOptions())


# -- the client's pure parts --------------------------------------------------------------------


def test_server_urls():
    from superslomo.serving.triton_client import parse_server

    assert parse_server("http://10.0.0.5:9000") == ("http", "10.0.0.5:9000")
    assert parse_server("grpc://gpu-box") == ("grpc", "gpu-box:8001")
    assert parse_server("localhost") == ("http", "localhost:8000")
    assert parse_server("localhost", "grpc") == ("grpc", "localhost:8001")
    assert parse_server("[::1]:8000") == ("http", "[::1]:8000")
    for bad, message in [
        ("ftp://x", "scheme"),
        ("http://x:8000/v2", "no path"),
        ("http://x:port", "bad port"),
        ("", "needs a URL"),
    ]:
        with pytest.raises(SloMoError, match=message):
            parse_server(bad)
    with pytest.raises(SloMoError, match="says http but --protocol says grpc"):
        parse_server("http://x", "grpc")


def test_sizes_outside_the_engine_profiles_are_refused_before_sending():
    from superslomo.serving.triton_client import check_size

    profiles = [Profile(Shape(1, 64, 64), Shape(1, 256, 448), Shape(4, 512, 512))]
    check_size(profiles, 250, 440, 32, "slomo")  # pads to 256x448: inside
    check_size([], 5000, 5000, 32, "slomo")  # ONNX models: no profile, any size
    with pytest.raises(SloMoError) as info:
        check_size(profiles, 720, 1280, 32, "slomo")
    assert "1280x720 frames (padded to 1280x736)" in str(info.value) and "64x64 to 512x512" in str(info.value)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_no_server_is_a_one_line_error(protocol):
    from superslomo.serving.triton_client import TritonInterpolator
    from superslomo.serving.triton_serve import free_port

    with pytest.raises(SloMoError) as info:
        TritonInterpolator(f"{protocol}://127.0.0.1:{free_port()}", timeout=5)
    assert str(info.value).startswith("cannot reach a Triton server at") and "\n" not in str(info.value)


# -- the CLI ------------------------------------------------------------------------------------


def cli(argv, capsys):
    from superslomo.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_cli_triton_repo(tmp_path, capsys):
    folder = fake_folder(tmp_path / "engines", kind="tensorrt")
    code, out, err = cli(
        [
            "triton-repo",
            str(folder),
            "-o",
            str(tmp_path / "repo"),
            "--backend",
            "tensorrt",
            "--max-batch",
            "2",
        ],
        capsys,
    )
    assert code in (0, None), err
    assert "slomo_flow, slomo_interp (tensorrt, 1 instance(s), max batch 2)" in out
    assert err.startswith("note: engines were built with TensorRT 10.3.0")
    assert len(load_repo(tmp_path / "repo")) == 3

    code, out, err = cli(
        [
            "triton-repo",
            str(folder),
            "-o",
            str(tmp_path / "r2"),
            "--backend",
            "tensorrt",
            "--server-trt-version",
            "11.0",
        ],
        capsys,
    )
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and "slomo build-engine" in err
    assert not (tmp_path / "r2").exists()
    code, _, err = cli(["triton-repo", str(tmp_path / "nope"), "-o", str(tmp_path / "r3")], capsys)
    assert code == 2 and err.startswith("error: model folder not found") and "Traceback" not in err


def test_cli_interpolate_with_no_server_leaves_nothing(tmp_path, capsys):
    from videoclips import make_clip

    from superslomo.serving.triton_serve import free_port

    clip = make_clip(tmp_path / "in.mp4", frames=4, size=(64, 48))
    out = tmp_path / "out.mp4"
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = cli(["interpolate", str(clip), "-o", str(out), "--server", url], capsys)
    assert (
        code == 2 and err.count("\n") == 1 and err.startswith(f"error: cannot reach a Triton server at {url}")
    )
    code, _, err = cli(
        ["interpolate", str(clip), "-o", str(out), "--server", url, "--backend", "torch"], capsys
    )
    assert code == 2 and "drop --model, --backend and --precision" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_client_layout_matches_the_local_interpolator():
    """The client pads, converts, crops and rounds with the helpers the Interpolator uses: a
    backend that echoes frame0 shows both paths give the same frames for an odd size."""
    from superslomo.contracts.frames import frame_to_graph, graph_to_frames
    from superslomo.runtime import Interpolator

    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)

    from superslomo.runtime import Backend

    class Echo(Backend):
        name = "echo"
        manifest = parse_manifest(
            {
                "format": "superslomo-trt",
                "version": 1,
                "kind": "onnx",
                "precision": "fp32",
                "warp": "gridsample",
                "io": "float32",
                "opset": 17,
                "graphs": {g: {"file": f"{g}.onnx", "sha256": "0" * 64} for g in ("flow", "interp")},
            }
        )

        def infer(self, graph, inputs):
            if graph == "flow":
                n, _, h, w = inputs["frame0"].shape
                return {
                    "flow01": np.zeros((n, 2, h, w), np.float32),
                    "flow10": np.zeros((n, 2, h, w), np.float32),
                }
            return {"frame_t": inputs["frame0"] * np.float32(0.9)}

        def __init__(self):
            super().__init__(None, self.manifest)

    local = Interpolator(Echo()).interpolate(frame, frame, [0.5])[0]
    remote = graph_to_frames(frame_to_graph(frame) * np.float32(0.9), 37, 53)[0]
    assert np.array_equal(local, remote) and not np.array_equal(local, frame)


# -- the client against repositories and servers it cannot be tested on here ---------------------


class RepositoryClient:
    """tritonclient's gRPC client answered from a repository folder: what a server that loaded it
    says about its models (configs as Triton's own protobuf schema reads them)."""

    def __init__(self, repo: Path) -> None:
        self.configs = load_repo(repo)
        self.closed = False

    def is_server_live(self, client_timeout=None):
        return True

    def is_model_ready(self, name, client_timeout=None):
        return name in self.configs

    def get_model_config(self, name, as_json=False, client_timeout=None):
        from google.protobuf import json_format

        assert client_timeout is not None, "a call without a deadline hangs on a hung server"
        return {"config": json_format.MessageToDict(self.configs[name], preserving_proto_field_name=True)}

    def close(self):
        self.closed = True


def test_the_client_opens_a_tensorrt_repository(tmp_path, monkeypatch):
    from superslomo.serving.triton_client import TritonBackend, TritonConnection, TritonInterpolator

    folder = fake_folder(tmp_path / "engines", kind="tensorrt")
    write_repository(folder, tmp_path / "repo", RepoOptions(backend="tensorrt"))
    client = RepositoryClient(tmp_path / "repo")
    monkeypatch.setattr(TritonConnection, "client", lambda self: client)
    with TritonBackend("grpc://127.0.0.1:1") as graphs:
        assert graphs.manifest.kind == "tensorrt"
    with TritonInterpolator("grpc://127.0.0.1:1") as remote:
        assert remote.backend.manifest.kind == "tensorrt" and len(remote.backend.profiles) == 2
        frame = np.zeros((100, 2000, 3), np.uint8)  # pads to 2016x128: wider than both profiles
        with pytest.raises(SloMoError, match="frames padded to 2016x128 are outside"):
            remote.interpolate(frame, frame, [0.5])


def test_a_refused_model_closes_its_connection(tmp_path, monkeypatch):
    from superslomo.serving.triton_client import TritonConnection, TritonInterpolator

    folder = fake_folder(tmp_path / "engines", kind="tensorrt")
    write_repository(folder, tmp_path / "repo", RepoOptions(backend="tensorrt"))
    client = RepositoryClient(tmp_path / "repo")
    del client.configs["slomo"].parameters[PARAM_MANIFEST]  # a model triton-repo did not write
    monkeypatch.setattr(TritonConnection, "client", lambda self: client)
    closed = []
    monkeypatch.setattr(TritonConnection, "close", lambda self: closed.append(self))
    with pytest.raises(SloMoError, match="was not written by slomo triton-repo"):
        TritonInterpolator("grpc://127.0.0.1:1")
    assert len(closed) == 1


@pytest.fixture
def hung_server():
    """A local socket that accepts connections and never answers."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted = []

    def accept():
        with contextlib.suppress(OSError):
            while True:
                accepted.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()
    for connection in accepted:
        connection.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_hung_server_is_a_one_line_error_within_the_timeout(hung_server, protocol):
    import time

    from superslomo.serving.triton_client import TritonInterpolator

    began = time.perf_counter()
    with pytest.raises(SloMoError) as info:
        TritonInterpolator(f"{protocol}://127.0.0.1:{hung_server}", timeout=1)
    spent = time.perf_counter() - began
    assert "did not answer a health check within 1 s" in str(info.value) and "\n" not in str(info.value)
    assert spent < 5, f"{spent:.1f} s for a 1 s timeout"


def test_a_failed_connection_leaves_the_pool(monkeypatch):
    from superslomo.serving.triton_client import TritonConnection

    class Broken:
        def is_server_live(self, client_timeout=None):
            raise ConnectionResetError("reset by peer")

        def close(self):
            pass

    connection = TritonConnection("grpc://127.0.0.1:1")
    monkeypatch.setattr(connection._module, "InferenceServerClient", lambda address: Broken())
    with pytest.raises(SloMoError, match="lost the Triton server"):
        connection.call("a health check", "is_server_live")
    assert connection._clients == []
