"""The TensorRT backend: two plans, two CUDA streams, pinned host memory, optional CUDA graphs.

Torch-free (numpy + tensorrt + cuda-python's `cuda.bindings`). The pure parts (manifest checks,
profile choice, buffer planning, batching of time steps) are plain functions at the top of this
file so they are tested without a GPU; the classes below them are the thin CUDA/TensorRT layer,
exercised by the `gpu` test suite.

Pipelining: `infer_pair` runs the flow engine on the flow stream and the interpolation engine on
the interp stream, ordered by an event. Flow outputs live in one of two device slots, so the
host-to-device copies and flow of pair k+1 overlap the interpolation of pair k.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from superslomo.contracts.device import CudaError, cuda_call, device_identity, import_cudart
from superslomo.contracts.graph_io import FLOW_INPUTS, FLOW_OUTPUTS, INTERP_INPUTS, INTERP_OUTPUTS
from superslomo.contracts.manifest import GRAPHS, Manifest, ManifestError, read_manifest
from superslomo.contracts.shapes import Profile, Shape, choose_profile, tensor_shape
from superslomo.contracts.tensorrt_version import (
    TrtVersion,
    import_tensorrt,
    versions_compatible,
)
from superslomo.errors import SloMoError
from superslomo.runtime.interpolator import schedule_times

if TYPE_CHECKING:
    import tensorrt as trt

GRAPH_IO = {"flow": (FLOW_INPUTS, FLOW_OUTPUTS), "interp": (INTERP_INPUTS, INTERP_OUTPUTS)}


# ----------------------------------------------------------------------------- pure logic


def rebuild_hint(manifest: Manifest) -> str:
    return (
        "rebuild the engines on this machine: slomo build-engine ONNX_DIR -o ENGINE_DIR "
        "(from the `slomo export` folder; "
        f"these were built with TensorRT {manifest.tensorrt.get('version', '?')} "
        f"on {manifest.tensorrt.get('gpu', '?')})"
    )


def check_engine_manifest(
    manifest: Manifest, trt_version: str, gpu_name: str, compute_capability: str
) -> None:
    """Refuse plans built for another TensorRT or GPU, with a message saying how to rebuild.

    Plans are tied to the TensorRT version (unless built version-compatible) and to the GPU's
    compute capability (unless built hardware-compatible, which needs Ampere or newer).
    """
    if manifest.kind != "tensorrt":
        raise ManifestError(
            f"not an engine folder (kind={manifest.kind!r}); build one with `slomo build-engine`"
        )
    info = manifest.tensorrt
    for key in ("version", "gpu", "compute_capability", "profiles"):
        if key not in info:
            raise ManifestError(f"engine manifest lacks tensorrt.{key}; {rebuild_hint(manifest)}")
    if not versions_compatible(info["version"], trt_version, bool(info.get("version_compatible"))):
        raise ManifestError(
            f"engines were built with TensorRT {info['version']} but this is TensorRT {trt_version}; "
            f"{rebuild_hint(manifest)}"
        )
    built_cc, running_cc = str(info["compute_capability"]), str(compute_capability)
    if info.get("hardware_compatible"):
        if TrtVersion.parse(running_cc + ".0") < TrtVersion(8, 0):
            raise ManifestError(
                f"hardware-compatible engines need an Ampere or newer GPU (sm >= 8.0); "
                f"this {gpu_name} is sm {running_cc}; {rebuild_hint(manifest)}"
            )
    elif built_cc != running_cc:
        raise ManifestError(
            f"engines were built for {info['gpu']} (sm {built_cc}) but this GPU is {gpu_name} "
            f"(sm {running_cc}); {rebuild_hint(manifest)}"
        )
    if not manifest_profiles(manifest):
        raise ManifestError(f"engine manifest has no profiles; {rebuild_hint(manifest)}")


def manifest_profiles(manifest: Manifest) -> list[Profile]:
    return [Profile.from_json(p) for p in manifest.tensorrt.get("profiles", [])]


@dataclass(frozen=True)
class BufferSpec:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    is_input: bool

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def plan_buffers(graph: str, shape: Shape, io: str, dtypes: Mapping[str, Any]) -> list[BufferSpec]:
    """Every I/O buffer of `graph` at engine shape NxHxW: name, shape, dtype, direction.

    `dtypes` are the engine's own tensor types (a strongly typed fp16 engine may take fp16 flows
    if the graph says so): buffers follow the engine, never an assumption.
    """
    if graph not in GRAPH_IO:
        raise SloMoError(f"unknown graph {graph!r}; expected one of {GRAPHS}")
    inputs, outputs = GRAPH_IO[graph]
    specs = []
    for names, is_input in ((inputs, True), (outputs, False)):
        for name in names:
            if name not in dtypes:
                raise ManifestError(
                    f"the {graph} engine has no tensor {name!r}; rebuild it from a current export"
                )
            specs.append(BufferSpec(name, tensor_shape(name, shape, io), np.dtype(dtypes[name]), is_input))
    return specs


def input_shape_of(graph: str, inputs: Mapping[str, np.ndarray], io: str) -> Shape:
    """The engine shape NxHxW implied by the inputs, after checking they agree with each other."""
    names = GRAPH_IO[graph][0]
    missing = [n for n in names if n not in inputs]
    if missing:
        raise SloMoError(f"{graph}: missing inputs {missing}")
    frame = np.asarray(inputs["frame0"])
    if frame.ndim != 4:
        raise SloMoError(f"{graph}: frame0 must be 4-D, got shape {frame.shape}")
    n, h, w = (
        (frame.shape[0], frame.shape[1], frame.shape[2])
        if io == "uint8"
        else (frame.shape[0], frame.shape[2], frame.shape[3])
    )
    shape = Shape(int(n), int(h), int(w))
    for name in names:
        expected = tensor_shape(name, shape, io)
        if tuple(np.shape(inputs[name])) != expected:
            raise SloMoError(
                f"{graph}: {name} has shape {tuple(np.shape(inputs[name]))}, expected {expected}"
            )
    return shape


# ----------------------------------------------------------------------------- CUDA helpers


class PinnedArray:
    """A numpy array over page-locked host memory (cudaHostAlloc), so async copies really are async."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        cudart = import_cudart()
        self.nbytes = max(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize, 1)
        self.ptr = int(
            cuda_call(cudart.cudaHostAlloc(self.nbytes, cudart.cudaHostAllocDefault), "cudaHostAlloc")
        )
        raw = (ctypes.c_byte * self.nbytes).from_address(self.ptr)
        self.array = (
            np.frombuffer(memoryview(raw).cast("B"), dtype=np.uint8)[
                : int(np.prod(shape)) * np.dtype(dtype).itemsize
            ]
            .view(dtype)
            .reshape(shape)
        )

    def free(self) -> None:
        if self.ptr:
            cudart = import_cudart()
            cuda_call(cudart.cudaFreeHost(self.ptr), "cudaFreeHost")
            self.ptr = 0


class DeviceBuffer:
    def __init__(self, nbytes: int) -> None:
        cudart = import_cudart()
        self.nbytes = max(int(nbytes), 1)
        self.ptr = int(cuda_call(cudart.cudaMalloc(self.nbytes), "cudaMalloc"))

    def free(self) -> None:
        if self.ptr:
            cudart = import_cudart()
            cuda_call(cudart.cudaFree(self.ptr), "cudaFree")
            self.ptr = 0


def _copy_async(dst: int, src: int, nbytes: int, kind: Any, stream: Any) -> None:
    cudart = import_cudart()
    cuda_call(cudart.cudaMemcpyAsync(dst, src, nbytes, kind, stream), "cudaMemcpyAsync")


# ----------------------------------------------------------------------------- engines


class _ShapeSlot:
    """Buffers (device + pinned host), an optional CUDA graph, for one graph at one shape."""

    def __init__(self, specs: list[BufferSpec]) -> None:
        self.specs = {s.name: s for s in specs}
        self.device = {s.name: DeviceBuffer(s.nbytes) for s in specs}
        self.host = {s.name: PinnedArray(s.shape, s.dtype) for s in specs}
        self.graph_exec: Any = None
        self.graph_failed = False

    def free(self) -> None:
        cudart = import_cudart()
        if self.graph_exec is not None:
            cuda_call(cudart.cudaGraphExecDestroy(self.graph_exec), "cudaGraphExecDestroy")
            self.graph_exec = None
        for device in self.device.values():
            device.free()
        for host in self.host.values():
            host.free()


class _Engine:
    """One deserialised plan with its execution context, stream and per-shape buffers."""

    def __init__(
        self, runtime: trt.Runtime, plan: Path, graph: str, io: str, profiles: list[Profile]
    ) -> None:
        import tensorrt as trt

        cudart = import_cudart()
        self.graph, self.io, self.profiles = graph, io, profiles
        engine: trt.ICudaEngine | None = runtime.deserialize_cuda_engine(plan.read_bytes())
        if engine is None:
            raise ManifestError(
                f"TensorRT could not load {plan}; it may come from another TensorRT version or GPU"
            )
        self.engine: trt.ICudaEngine = engine
        if self.engine.num_optimization_profiles != len(profiles):
            raise ManifestError(
                f"{plan.name} has {self.engine.num_optimization_profiles} profiles, "
                f"its manifest lists {len(profiles)}"
            )
        context: trt.IExecutionContext | None = self.engine.create_execution_context()
        if context is None:
            raise CudaError(f"could not create an execution context for {plan.name} (out of GPU memory?)")
        self.context: trt.IExecutionContext = context
        self.dtypes: dict[str, np.dtype] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            self.dtypes[name] = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
        self.stream = cuda_call(
            cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "cudaStreamCreateWithFlags"
        )
        self.done = cuda_call(
            cudart.cudaEventCreateWithFlags(cudart.cudaEventDisableTiming), "cudaEventCreateWithFlags"
        )
        self.slots: dict[tuple[Shape, int], _ShapeSlot] = {}
        self.active_profile = -1
        self.bound: tuple[Shape, int] | None = None

    def slot(self, shape: Shape, index: int = 0) -> _ShapeSlot:
        key = (shape, index)
        if key not in self.slots:
            self.slots[key] = _ShapeSlot(plan_buffers(self.graph, shape, self.io, self.dtypes))
        return self.slots[key]

    def bind(self, shape: Shape, slot: _ShapeSlot, key: tuple[Shape, int]) -> None:
        """Select the profile, set the input shapes and the tensor addresses for this slot."""
        import tensorrt as trt

        profile = choose_profile(self.profiles, shape)
        if profile != self.active_profile:
            if not self.context.set_optimization_profile_async(profile, int(self.stream)):
                raise CudaError(f"{self.graph}: TensorRT refused optimisation profile {profile}")
            self.active_profile = profile
        for spec in slot.specs.values():
            address = slot.device[spec.name].ptr
            if spec.is_input and not self.context.set_input_shape(spec.name, trt.Dims(list(spec.shape))):
                raise CudaError(f"{self.graph}: TensorRT refused shape {spec.shape} for {spec.name}")
            if not self.context.set_tensor_address(spec.name, address):
                raise CudaError(f"{self.graph}: TensorRT refused the address of {spec.name}")
        self.bound = key

    def execute(self, slot: _ShapeSlot, use_graphs: bool) -> None:
        """Enqueue the engine on its stream, through a captured CUDA graph when possible."""
        cudart = import_cudart()
        if use_graphs and slot.graph_exec is not None:
            cuda_call(cudart.cudaGraphLaunch(slot.graph_exec, self.stream), "cudaGraphLaunch")
            return
        if not self.context.execute_async_v3(int(self.stream)):
            raise CudaError(f"{self.graph}: execute_async_v3 failed (see TensorRT's messages)")
        if use_graphs and slot.graph_exec is None and not slot.graph_failed:
            # Captured after a first normal run: TensorRT does shape-dependent setup on first enqueue.
            slot.graph_exec = self._capture()
            slot.graph_failed = slot.graph_exec is None

    def _capture(self) -> Any:
        cudart = import_cudart()
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        cuda_call(cudart.cudaStreamBeginCapture(self.stream, mode), "cudaStreamBeginCapture")
        ok = self.context.execute_async_v3(int(self.stream))
        err, graph = cudart.cudaStreamEndCapture(self.stream)
        if not ok or err != cudart.cudaError_t.cudaSuccess or graph is None:
            cudart.cudaGetLastError()  # clear the sticky capture error; the plain path still works
            return None
        err, graph_exec = cudart.cudaGraphInstantiate(graph, 0)
        cuda_call(cudart.cudaGraphDestroy(graph), "cudaGraphDestroy")
        if err != cudart.cudaError_t.cudaSuccess:
            cudart.cudaGetLastError()
            return None
        return graph_exec

    def close(self) -> None:
        cudart = import_cudart()
        cuda_call(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        for slot in self.slots.values():
            slot.free()
        self.slots.clear()
        cuda_call(cudart.cudaEventDestroy(self.done), "cudaEventDestroy")
        cuda_call(cudart.cudaStreamDestroy(self.stream), "cudaStreamDestroy")
        # TensorRT frees its objects when the last reference goes; the context must go first.
        del self.context
        del self.engine


class TensorRTBackend:
    """Backend protocol over two TensorRT plans (flow, interp) in an engine folder."""

    name = "tensorrt"

    def __init__(
        self, folder: str | Path, manifest: Manifest | None = None, device: int = 0, cuda_graphs: bool = False
    ) -> None:
        self.folder = Path(folder)
        # The loader has already read (and hashed) the manifest; reading it again costs a full pass
        # over both plans.
        self.manifest = manifest if manifest is not None else read_manifest(self.folder)
        import_tensorrt()  # a clear message when TensorRT is missing
        import tensorrt as trt

        cudart = import_cudart()
        cuda_call(cudart.cudaSetDevice(device), f"cudaSetDevice({device})")
        gpu = device_identity(device)
        check_engine_manifest(self.manifest, str(trt.__version__), gpu["name"], gpu["compute_capability"])
        self.profiles = manifest_profiles(self.manifest)
        self.cuda_graphs = cuda_graphs
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        if self.manifest.tensorrt.get("version_compatible"):
            # Version-compatible plans carry their own lean runtime, which is host code.
            self._runtime.engine_host_code_allowed = True
        self.engines = {
            g: _Engine(
                self._runtime, self.manifest.graph_path(self.folder, g), g, self.manifest.io, self.profiles
            )
            for g in GRAPHS
        }
        self._pair = 0

    @property
    def max_batch(self) -> int:
        return max(p.max.n for p in self.profiles)

    def _run(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart = import_cudart()
        engine = self.engines[graph]
        shape = input_shape_of(graph, inputs, self.manifest.io)
        slot = engine.slot(shape)
        stream = engine.stream
        for name in GRAPH_IO[graph][0]:
            spec = slot.specs[name]
            np.copyto(slot.host[name].array, np.asarray(inputs[name]), casting="same_kind")
            _copy_async(
                slot.device[name].ptr,
                slot.host[name].ptr,
                spec.nbytes,
                cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                stream,
            )
        if engine.bound != (shape, 0):
            engine.bind(shape, slot, (shape, 0))
        engine.execute(slot, self.cuda_graphs)
        for name in GRAPH_IO[graph][1]:
            _copy_async(
                slot.host[name].ptr,
                slot.device[name].ptr,
                slot.specs[name].nbytes,
                cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                stream,
            )
        cuda_call(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        return {name: slot.host[name].array.copy() for name in GRAPH_IO[graph][1]}

    def infer(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if graph not in GRAPH_IO:
            raise SloMoError(f"unknown graph {graph!r}; expected one of {GRAPHS}")
        return self._run(graph, inputs)

    def infer_pairs(
        self, pairs: Iterable[tuple[np.ndarray, np.ndarray]], times: Sequence[float]
    ) -> Iterable[list[np.ndarray]]:
        """Pipelined: for each (frame0, frame1) [1,...] yield the frames at `times`, flows kept on the GPU.

        Flow of pair k+1 (its own stream, slot k+1 mod 2) overlaps the interpolation of pair k;
        the interp stream waits on the flow's event, and the flow stream waits on the interp's
        event before reusing a slot.
        """
        cudart = import_cudart()
        flow = self.engines["flow"]
        batches = schedule_times(times, self.max_batch)
        pending: tuple[Any, ...] | None = None
        slot_used: dict[int, Any] = {}
        for index, (frame0, frame1) in enumerate(pairs):
            k = index % 2
            shape = input_shape_of("flow", {"frame0": frame0, "frame1": frame1}, self.manifest.io)
            if shape.n != 1:
                raise SloMoError("infer_pairs takes one pair at a time (batch 1 frames)")
            if k in slot_used:  # the interp that read this flow slot must be finished
                cuda_call(cudart.cudaStreamWaitEvent(flow.stream, slot_used[k], 0), "cudaStreamWaitEvent")
            fslot = flow.slot(shape, k)
            for name, frame in (("frame0", frame0), ("frame1", frame1)):
                np.copyto(fslot.host[name].array, frame, casting="same_kind")
                _copy_async(
                    fslot.device[name].ptr,
                    fslot.host[name].ptr,
                    fslot.specs[name].nbytes,
                    cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                    flow.stream,
                )
            if flow.bound != (shape, k):
                flow.bind(shape, fslot, (shape, k))
            flow.execute(fslot, self.cuda_graphs)
            flow_done = cuda_call(
                cudart.cudaEventCreateWithFlags(cudart.cudaEventDisableTiming), "cudaEventCreateWithFlags"
            )
            cuda_call(cudart.cudaEventRecord(flow_done, flow.stream), "cudaEventRecord")
            if pending is not None:
                yield self._finish_interp(*pending)
            pending = (fslot, flow_done, shape, batches, k, slot_used)
        if pending is not None:
            yield self._finish_interp(*pending)

    def _finish_interp(
        self,
        fslot: _ShapeSlot,
        flow_done: Any,
        shape: Shape,
        batches: list[list[float]],
        k: int,
        slot_used: dict[int, Any],
    ) -> list[np.ndarray]:
        cudart = import_cudart()
        interp = self.engines["interp"]
        cuda_call(cudart.cudaStreamWaitEvent(interp.stream, flow_done, 0), "cudaStreamWaitEvent")
        results: list[np.ndarray] = []
        for batch in batches:
            bshape = Shape(len(batch), shape.h, shape.w)
            islot = interp.slot(bshape, k)
            t = islot.host["t"].array
            t[:] = np.asarray(batch, dtype=t.dtype)
            for name in ("frame0", "frame1", "flow01", "flow10"):
                src = fslot.device[name].ptr
                per = fslot.specs[name].nbytes
                for b in range(bshape.n):  # broadcast the pair over the time batch on the device
                    _copy_async(
                        islot.device[name].ptr + b * per,
                        src,
                        per,
                        cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice,
                        interp.stream,
                    )
            _copy_async(
                islot.device["t"].ptr,
                islot.host["t"].ptr,
                islot.specs["t"].nbytes,
                cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                interp.stream,
            )
            if interp.bound != (bshape, k):
                interp.bind(bshape, islot, (bshape, k))
            interp.execute(islot, self.cuda_graphs)
            _copy_async(
                islot.host["frame_t"].ptr,
                islot.device["frame_t"].ptr,
                islot.specs["frame_t"].nbytes,
                cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                interp.stream,
            )
            cuda_call(cudart.cudaStreamSynchronize(interp.stream), "cudaStreamSynchronize")
            results.extend(frame.copy() for frame in islot.host["frame_t"].array)
        cuda_call(cudart.cudaEventRecord(interp.done, interp.stream), "cudaEventRecord")
        slot_used[k] = interp.done
        cuda_call(cudart.cudaEventDestroy(flow_done), "cudaEventDestroy")
        return results

    def close(self) -> None:
        for engine in getattr(self, "engines", {}).values():
            engine.close()
        self.engines = {}

    def __enter__(self) -> TensorRTBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
