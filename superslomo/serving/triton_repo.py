"""A Triton Inference Server model repository for one model folder (DESIGN.md decision 9).

Three models, named after `name` (default "slomo"):

    slomo_flow    the flow graph     frame0, frame1 -> flow01, flow10
    slomo_interp  the interp graph   frame0, frame1, flow01, flow10, t -> frame_t
    slomo         the pair model     frame0, frame1, t[T] -> frame_t[T]  (Python backend, BLS)

The two graph models batch dynamically across requests; the pair model runs flow once per pair,
then the interpolation model over the requested times in chunks of at most `max_batch`, all
through BLS calls inside the server, so a client sends a pair and gets its frames in one round
trip. An ensemble cannot do this: it has no loop over a variable number of times.

Graph models run on Triton's onnxruntime backend (with TensorRT or CUDA execution accelerators as
options), on its tensorrt backend (plans from `slomo build-engine`), or, where neither backend is
installed (PyTriton's bundled server has only the Python backend), behind the Python backend
running ONNX Runtime on the CPU: same I/O, batching and instance groups, only the backend differs.

`t` is per sample: Triton's batch dimension is implicit, so it is declared `dims: [1]` with
`reshape: { shape: [] }` and callers send it as [N, 1]; the graph sees [N].

config.pbtxt files are written as text here (no dependency); the tests parse every one against
Triton's own ModelConfig protobuf schema (shipped in tritonclient).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from superslomo.contracts.external_data import check_external_data, external_locations
from superslomo.contracts.graph_io import SIZE_MULTIPLE
from superslomo.contracts.manifest import Manifest, read_manifest
from superslomo.contracts.shapes import Profile
from superslomo.contracts.tensorrt_version import PLUGIN_MINIMUM, TrtVersion, versions_compatible
from superslomo.errors import SloMoError

BACKENDS = ("onnxruntime", "tensorrt", "python")
ACCELERATORS = ("none", "cuda", "tensorrt")
KINDS = ("auto", "gpu", "cpu")
DEFAULT_NAME = "slomo"
VERSION = "1"
# Model config parameters the client reads back (get_model_config) to know the model without the
# folder: its manifest (frame I/O, size multiple, precision) and the sizes it accepts.
PARAM_MANIFEST = "slomo_manifest"
PARAM_PROFILES = "slomo_profiles"
PARAM_FLOW_MODEL = "flow_model"
PARAM_INTERP_MODEL = "interp_model"
PARAM_INTERP_BATCH = "interp_max_batch"
TEMPLATES = Path(__file__).with_name("triton_models")
GRAPH_TEMPLATE = "graph_onnxruntime.py"
PAIR_TEMPLATE = "pair_bls.py"
# The ONNX Runtime TensorRT provider builds its engines on first use; these are the shapes it
# builds for unless told (the same defaults as `slomo build-engine`).
DEFAULT_EP_PROFILE = ("1x64x64", "1x736x1280", "x1088x1920")


class _Enum(str):
    """A protobuf enum value: written bare in text format (TYPE_FP32), not quoted."""


@dataclass
class RepoOptions:
    backend: str = "onnxruntime"  # what runs the two graphs: onnxruntime | tensorrt | python
    instances: int = 1  # instances of each graph model (per GPU for gpu kinds)
    max_batch: int = 4  # largest batch a graph model takes (frames, or time steps of one pair)
    accelerator: str = "none"  # onnxruntime on a GPU: none (plain CUDA provider) | cuda | tensorrt
    kind: str = "auto"  # where instances run: gpu | cpu | auto (gpu, but cpu for the python backend)
    queue_delay_us: int = 2000  # how long the dynamic batcher waits to fill a batch
    threads: int = 0  # ONNX Runtime intra-op threads per instance (0: its default, all cores)
    name: str = DEFAULT_NAME
    pair_instances: int = 1  # instances of the pair model (each runs several pairs at once)
    pair_batch: int = 8  # pair requests one pair-model execution takes together
    server_trt_version: str | None = None  # the TensorRT of the server, for engine folders
    overwrite: bool = False

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise SloMoError(f"unknown --backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.accelerator not in ACCELERATORS:
            raise SloMoError(
                f"unknown --accelerator {self.accelerator!r}; choose one of {', '.join(ACCELERATORS)}"
            )
        if self.kind not in KINDS:
            raise SloMoError(f"unknown --kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        for label, value, low in (
            ("--instances", self.instances, 1),
            ("--max-batch", self.max_batch, 1),
            ("pair instances", self.pair_instances, 1),
            ("pair batch", self.pair_batch, 1),
            ("queue delay", self.queue_delay_us, 0),
            ("--threads", self.threads, 0),
        ):
            if not isinstance(value, int) or value < low:
                raise SloMoError(f"{label} must be a whole number >= {low}, got {value!r}")
        if self.accelerator != "none" and self.backend != "onnxruntime":
            raise SloMoError("--accelerator is for --backend onnxruntime (engines are TensorRT already)")
        if self.accelerator != "none" and self.instance_kind == "KIND_CPU":
            raise SloMoError("--accelerator needs GPU instances; drop --kind cpu")
        if self.backend == "tensorrt" and self.instance_kind == "KIND_CPU":
            raise SloMoError("TensorRT plans run on GPU instances only; drop --kind cpu")
        name = self.name
        if not name or not all(c.isalnum() or c in "_-" for c in name):
            raise SloMoError(f"--name must be letters, digits, '_' or '-', got {name!r}")
        if self.server_trt_version is not None:
            TrtVersion.parse(self.server_trt_version)  # a malformed version fails here, in one line

    @property
    def instance_kind(self) -> str:
        if self.kind == "auto":
            return "KIND_CPU" if self.backend == "python" else "KIND_GPU"
        return "KIND_GPU" if self.kind == "gpu" else "KIND_CPU"


def model_names(name: str = DEFAULT_NAME) -> dict[str, str]:
    return {"flow": f"{name}_flow", "interp": f"{name}_interp", "pair": name}


# ----------------------------------------------------------------------------- pbtxt text


def _scalar(value: Any) -> str:
    if isinstance(value, _Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid protobuf text string literal


def to_pbtxt(message: dict[str, Any], indent: int = 0) -> str:
    """A dict as protobuf text format: lists of dicts are repeated messages, lists of scalars are
    `[a, b]`, dicts are sub-messages."""
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if isinstance(value, dict):
            lines.append(f"{pad}{key} {{\n{to_pbtxt(value, indent + 1)}{pad}}}")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                lines.append(f"{pad}{key} {{\n{to_pbtxt(item, indent + 1)}{pad}}}")
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "".join(line + "\n" for line in lines)


def _string_map(values: dict[str, str]) -> list[dict[str, Any]]:
    """A protobuf map<string, string> in text format: one {key, value} entry per item."""
    return [{"key": k, "value": str(v)} for k, v in values.items()]


def _parameters(values: dict[str, str]) -> list[dict[str, Any]]:
    return [{"key": k, "value": {"string_value": str(v)}} for k, v in values.items()]


# ----------------------------------------------------------------------------- configs


def _frame_tensor(name: str, io: str) -> dict[str, Any]:
    if io == "uint8":
        return {"name": name, "data_type": _Enum("TYPE_UINT8"), "dims": [-1, -1, 3]}
    return {"name": name, "data_type": _Enum("TYPE_FP32"), "dims": [3, -1, -1]}


def _flow_tensor(name: str) -> dict[str, Any]:
    return {"name": name, "data_type": _Enum("TYPE_FP32"), "dims": [2, -1, -1]}


def graph_io(graph: str, io: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Inputs and outputs of a graph model, without the (implicit) batch dimension."""
    frames = [_frame_tensor("frame0", io), _frame_tensor("frame1", io)]
    if graph == "flow":
        return frames, [_flow_tensor("flow01"), _flow_tensor("flow10")]
    t = {"name": "t", "data_type": _Enum("TYPE_FP32"), "dims": [1], "reshape": {"shape": []}}
    return frames + [_flow_tensor("flow01"), _flow_tensor("flow10"), t], [_frame_tensor("frame_t", io)]


def _manifest_text(manifest: Manifest) -> str:
    return json.dumps(json.loads(manifest.to_json()), sort_keys=True, separators=(",", ":"))


def _profiles(manifest: Manifest) -> list[Profile]:
    return [Profile.from_json(p) for p in manifest.tensorrt.get("profiles", [])]


def _ep_profile_shapes(graph: str, io: str, max_batch: int, multiple: int = SIZE_MULTIPLE) -> dict[str, str]:
    """The TensorRT execution provider's min/opt/max shapes for every dynamic input of a graph,
    rounded up to the folder's size multiple (128 where a network runs at 1/4 scale)."""
    from superslomo.contracts.shapes import Shape, parse_shape, tensor_shape

    def fit(shape: Shape) -> Shape:
        return Shape(shape.n, -(-shape.h // multiple) * multiple, -(-shape.w // multiple) * multiple)

    low, opt, high = DEFAULT_EP_PROFILE
    shapes = [fit(parse_shape(low)), fit(parse_shape(opt)), fit(parse_shape(f"{max_batch}{high}"))]
    inputs = [t["name"] for t in graph_io(graph, io)[0]]
    result = {}
    for key, shape in zip(
        ("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes"), shapes, strict=True
    ):
        result[key] = ",".join(f"{n}:{'x'.join(str(d) for d in tensor_shape(n, shape, io))}" for n in inputs)
    return result


def _accelerator(options: RepoOptions, graph: str, manifest: Manifest) -> dict[str, Any] | None:
    if options.accelerator == "none":
        return None
    if options.accelerator == "cuda":
        # The CUDA provider is what a GPU instance runs anyway; named here to tune it: cuDNN's
        # exhaustive search picks the fastest convolutions once per shape, and TF32 stays off
        # because it fails the fp32 parity the local runtime keeps (runtime/loader.py).
        params = {"cudnn_conv_algo_search": "EXHAUSTIVE", "use_tf32": "0"}
        return {"gpu_execution_accelerator": [{"name": "cuda", "parameters": _string_map(params)}]}
    # Weakly typed TensorRT may run fp32-typed layers in fp16 under FP16 mode, warp coordinates
    # included (0.5 px coarse at 1920 wide, DESIGN.md decision 3); an fp16 graph already carries
    # its fp16 layers in its types, so FP32 mode keeps them and keeps the coordinates fp32. Q/DQ
    # (INT8) graphs need INT8 mode for TensorRT to honour the quantize nodes.
    precision = "INT8" if manifest.precision == "int8" else "FP32"
    params = {
        "precision_mode": precision,
        "max_workspace_size_bytes": str(4 << 30),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": f"/tmp/{options.name}_trt_cache",
        **_ep_profile_shapes(graph, manifest.io, options.max_batch, manifest.size_multiple),
    }
    return {"gpu_execution_accelerator": [{"name": "tensorrt", "parameters": _string_map(params)}]}


def graph_config(graph: str, manifest: Manifest, options: RepoOptions) -> dict[str, Any]:
    names = model_names(options.name)
    inputs, outputs = graph_io(graph, manifest.io)
    config: dict[str, Any] = {"name": names[graph]}
    instance: dict[str, Any] = {"count": options.instances, "kind": _Enum(options.instance_kind)}
    params = {PARAM_MANIFEST: _manifest_text(manifest)}
    if options.backend == "tensorrt":
        config["platform"] = "tensorrt_plan"
        config["default_model_filename"] = "model.plan"
        # Without a list an instance uses only the first profile; with it Triton picks one per request.
        instance["profile"] = [str(i) for i in range(len(_profiles(manifest)))]
        params[PARAM_PROFILES] = json.dumps([p.to_json() for p in _profiles(manifest)])
    else:
        config["backend"] = options.backend
        if options.backend == "onnxruntime":
            config["default_model_filename"] = "model.onnx"
        if options.threads:
            params["intra_op_thread_count"] = str(options.threads)
    config["max_batch_size"] = options.max_batch
    config["input"] = inputs
    config["output"] = outputs
    config["dynamic_batching"] = {"max_queue_delay_microseconds": options.queue_delay_us}
    config["instance_group"] = [instance]
    accelerator = _accelerator(options, graph, manifest) if options.backend == "onnxruntime" else None
    if accelerator is not None:
        config["optimization"] = {"execution_accelerators": accelerator}
    config["parameters"] = _parameters(params)
    return config


def pair_config(manifest: Manifest, options: RepoOptions) -> dict[str, Any]:
    names = model_names(options.name)
    frames = [_frame_tensor("frame0", manifest.io), _frame_tensor("frame1", manifest.io)]
    t = {"name": "t", "data_type": _Enum("TYPE_FP32"), "dims": [-1]}
    out = _frame_tensor("frame_t", manifest.io)
    out = {**out, "dims": [-1, *out["dims"]]}  # [T, ...] frames per pair
    params = {
        PARAM_FLOW_MODEL: names["flow"],
        PARAM_INTERP_MODEL: names["interp"],
        PARAM_INTERP_BATCH: str(options.max_batch),
        PARAM_MANIFEST: _manifest_text(manifest),
    }
    if manifest.kind == "tensorrt":
        params[PARAM_PROFILES] = json.dumps([p.to_json() for p in _profiles(manifest)])
    return {
        "name": names["pair"],
        "backend": "python",
        # Batching here only groups pair requests into one execution, which then sends all their
        # flow requests at once, so the flow model's batcher can merge them.
        "max_batch_size": options.pair_batch,
        "input": frames + [t],
        "output": [out],
        "dynamic_batching": {"max_queue_delay_microseconds": options.queue_delay_us},
        "instance_group": [{"count": options.pair_instances, "kind": _Enum("KIND_CPU")}],
        "parameters": _parameters(params),
    }


# ----------------------------------------------------------------------------- checks


def check_engines(manifest: Manifest, folder: Path, options: RepoOptions) -> list[str]:
    """Refuse engines the server cannot load; return notes for what cannot be checked here."""
    notes = []
    built = manifest.tensorrt.get("version")
    if not built or not _profiles(manifest):
        raise SloMoError(
            f"{folder}: engine manifest lacks the TensorRT version or profiles; rebuild it with "
            "slomo build-engine ONNX_DIR -o ENGINE_DIR"
        )
    if any(p.min.n > 1 for p in _profiles(manifest)):
        raise SloMoError(f"{folder}: every engine profile must admit batch 1; rebuild with --min 1xHxW")
    server = options.server_trt_version
    if server is None:
        notes.append(
            f"engines were built with TensorRT {built}: serve them with a Triton whose TensorRT is "
            f"{built} (--server-trt-version checks it), on a {manifest.tensorrt.get('gpu', '?')}-class GPU "
            f"(sm {manifest.tensorrt.get('compute_capability', '?')})"
        )
    elif not versions_compatible(built, server, bool(manifest.tensorrt.get("version_compatible"))):
        raise SloMoError(
            f"{folder}: engines were built with TensorRT {built} but the server runs TensorRT {server}; "
            f"rebuild them with TensorRT {server} (e.g. inside the server's container): "
            "slomo build-engine ONNX_DIR -o ENGINE_DIR"
        )
    top = min(p.max.n for p in _profiles(manifest))
    if options.max_batch > top:
        raise SloMoError(
            f"--max-batch {options.max_batch} exceeds the engines' largest batch ({top}); pass "
            f"--max-batch {top} or rebuild with a larger --max"
        )
    if manifest.warp == "plugin" and server is not None and TrtVersion.parse(server) < PLUGIN_MINIMUM:
        raise SloMoError(
            f"{folder} uses the BackWarp plugin, which needs TensorRT >= {PLUGIN_MINIMUM} on the server "
            f"(it runs {server}); export with --warp gridsample and rebuild"
        )
    return notes


def _check_source(manifest: Manifest, folder: Path, options: RepoOptions) -> list[str]:
    if options.backend == "tensorrt":
        if manifest.kind != "tensorrt":
            raise SloMoError(
                f"{folder} holds ONNX graphs; --backend tensorrt serves engines: slomo build-engine "
                f"{folder} -o ENGINES, or use --backend onnxruntime"
            )
        return check_engines(manifest, folder, options)
    if manifest.kind != "onnx":
        raise SloMoError(
            f"{folder} holds TensorRT engines; serve them with --backend tensorrt, or pass the ONNX "
            "folder they were built from"
        )
    if manifest.warp == "plugin":
        raise SloMoError(
            f"{folder} was exported with --warp plugin, whose BackWarp node no onnxruntime in Triton "
            "knows; export with --warp gridsample, or build engines and use --backend tensorrt"
        )
    if options.server_trt_version is not None:
        raise SloMoError("--server-trt-version is for engine folders (--backend tensorrt)")
    return []


# ----------------------------------------------------------------------------- writing


def _copy_graph(manifest: Manifest, folder: Path, graph: str, target: Path, name: str) -> None:
    source = manifest.graph_path(folder, graph)
    shutil.copyfile(source, target / name)
    if manifest.kind == "onnx":
        check_external_data(source, folder)
        # External weights stay beside the graph under the names it gives them.
        for _tensor, location in external_locations(source.read_bytes()):
            destination = target / location
            if not destination.exists():
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / location, destination)


def _write_model(stage: Path, config: dict[str, Any], files: Callable[[Path], None]) -> None:
    model = stage / config["name"]
    version = model / VERSION
    version.mkdir(parents=True)
    (model / "config.pbtxt").write_text(to_pbtxt(config))
    files(version)


def _template(name: str) -> Callable[[Path], None]:
    def write(version: Path) -> None:
        shutil.copyfile(TEMPLATES / name, version / "model.py")

    return write


@dataclass
class RepoResult:
    repo: Path
    models: dict[str, str]
    notes: list[str]


def write_repository(
    model_dir: str | os.PathLike, repo: str | os.PathLike, options: RepoOptions | None = None
) -> RepoResult:
    """Write the three models for `model_dir` into `repo` (created, or added to: other models in
    it are left alone). The models appear whole or not at all; existing ones of the same names
    are refused unless `options.overwrite`."""
    options = options or RepoOptions()
    options.validate()
    folder, repo = Path(model_dir), Path(repo)
    manifest = read_manifest(folder)
    notes = _check_source(manifest, folder, options)
    names = model_names(options.name)
    if repo.exists() and not repo.is_dir():
        raise SloMoError(f"{repo} exists and is not a folder")
    taken = [n for n in names.values() if (repo / n).exists()]
    if taken and not options.overwrite:
        raise SloMoError(f"{repo} already has model(s) {', '.join(taken)}; pass --overwrite to replace them")
    suffix = ".plan" if manifest.kind == "tensorrt" else ".onnx"
    try:
        repo.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{repo.name}-", dir=repo.parent))
    except OSError as error:
        raise SloMoError(f"cannot write in {repo.parent}: {error.strerror}") from None
    try:
        for graph in ("flow", "interp"):
            config = graph_config(graph, manifest, options)

            def files(version: Path, graph: str = graph) -> None:
                _copy_graph(manifest, folder, graph, version, f"model{suffix}")
                if options.backend == "python":
                    _template(GRAPH_TEMPLATE)(version)

            _write_model(stage, config, files)
        _write_model(stage, pair_config(manifest, options), _template(PAIR_TEMPLATE))
        if not repo.exists():
            os.replace(stage, repo)
        else:
            for name in names.values():
                if (repo / name).exists():
                    os.replace(repo / name, stage / f".old-{name}")
                os.replace(stage / name, repo / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return RepoResult(repo, names, notes)
