"""The TensorRT backend: two plans, two CUDA streams, pinned host memory, optional CUDA graphs.

Torch-free (numpy + tensorrt + cuda-python's `cuda.bindings`). The pure parts (manifest checks,
profile choice, buffer planning, batching of time steps) are plain functions at the top of this
file so they are tested without a GPU; the classes below them are the thin CUDA/TensorRT layer,
exercised by the `gpu` test suite.

The pair protocol (TensorRTBackend.prepare / synthesize) keeps frames and flows on the GPU; the
Interpolator and the video job call it from two threads, so the flow engine of pair k+1 runs on
its stream while the interpolation engine of pair k runs on the other, ordered by events.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from superslomo.contracts.device import CudaError, cuda_call, device_identity, import_cudart
from superslomo.contracts.graph_io import GRAPH_INPUTS, GRAPH_OUTPUTS
from superslomo.contracts.manifest import GRAPHS, Manifest, ManifestError
from superslomo.contracts.shapes import Profile, Shape, choose_profile, tensor_shape
from superslomo.contracts.tensorrt_version import (
    TrtVersion,
    import_tensorrt,
    versions_compatible,
)
from superslomo.errors import SloMoError
from superslomo.runtime.backend import Backend, GraphRunner, check_inputs
from superslomo.runtime.options import TensorRTOptions
from superslomo.runtime.pair_ring import PairRing, ShapeCache

if TYPE_CHECKING:
    import tensorrt as trt

GRAPH_IO = {graph: (GRAPH_INPUTS[graph], GRAPH_OUTPUTS[graph]) for graph in GRAPHS}
# The synchronous path's buffers, apart from the ring of prepared pairs (slots 0..pair_slots-1).
_SYNC_SLOT = -1
# Buffer sets an engine keeps beyond those of held pairs: enough for a job's frame size at every
# batch size of its times and the synchronous path; a job that changes size often (an app fed
# frames of many sizes) frees the least recently used instead of growing without bound.
SHAPE_CACHE = 12


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
    """One deserialised plan with its execution context, stream and per-shape buffers.

    `lock` is the execution context's: held by every caller from binding to the download of the
    outputs, so two threads never bind, run or read one context's buffers at once."""

    def __init__(
        self,
        runtime: trt.Runtime,
        plan: Path,
        graph: str,
        io: str,
        profiles: list[Profile],
        in_use: Any = None,
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
        self.lock = threading.Lock()
        # (shape, slot index) -> buffers; `in_use(key)` protects the buffers of a held pair.
        self.slots: ShapeCache[_ShapeSlot] = ShapeCache(SHAPE_CACHE, self._evict)
        self._in_use = in_use or (lambda key: False)
        self.active_profile = -1
        self.bound: tuple[Shape, int] | None = None

    def slot(self, shape: Shape, index: int = 0) -> _ShapeSlot:
        """The buffers for `shape` in slot `index` (call with `lock` held)."""
        found = self.slots.get(
            (shape, index),
            lambda: _ShapeSlot(plan_buffers(self.graph, shape, self.io, self.dtypes)),
            self._in_use,
        )
        if self.bound is not None and self.bound not in self.slots:
            self.bound = None  # its buffers were evicted: bind again before the next run
        return found

    def _evict(self, slot: _ShapeSlot) -> None:
        cudart = import_cudart()
        cuda_call(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        slot.free()

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

    def run(self, shape: Shape, index: int, use_graphs: bool) -> None:
        """Enqueue the plan on slot `index`'s buffers at `shape` (binding them first if needed)."""
        slot = self.slot(shape, index)
        if self.bound != (shape, index):
            self.bind(shape, slot, (shape, index))
        self.execute(slot, use_graphs)

    def upload(self, slot: _ShapeSlot, name: str, array: np.ndarray) -> None:
        """`array` into the slot's pinned buffer, then queued to the device on this stream (the
        caller makes sure no queued copy still reads that pinned buffer)."""
        cudart = import_cudart()
        np.copyto(slot.host[name].array, array, casting="same_kind")
        _copy_async(
            slot.device[name].ptr,
            slot.host[name].ptr,
            slot.specs[name].nbytes,
            cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
            self.stream,
        )

    def download(self, slot: _ShapeSlot, name: str) -> np.ndarray:
        """One output (or input) of `slot` to the host, after the stream's queued work."""
        cudart = import_cudart()
        _copy_async(
            slot.host[name].ptr,
            slot.device[name].ptr,
            slot.specs[name].nbytes,
            cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
            self.stream,
        )
        cuda_call(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return slot.host[name].array.copy()

    def close(self) -> None:
        cudart = import_cudart()
        cuda_call(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        self.slots.clear()
        cuda_call(cudart.cudaStreamDestroy(self.stream), "cudaStreamDestroy")
        # TensorRT frees its objects when the last reference goes; the context must go first.
        del self.context
        del self.engine


class _EngineRunner(GraphRunner):
    """One plan on its own stream; `infer` is the synchronous path (host in, host out)."""

    def __init__(self, backend: TensorRTBackend, graph: str) -> None:
        super().__init__(graph, backend.manifest)
        self.backend = backend
        self.engine: _Engine | None = None

    def activate_impl(self) -> None:
        backend = self.backend
        assert backend.trt_runtime is not None and backend.folder is not None
        self.engine = _Engine(
            backend.trt_runtime,
            self.manifest.graph_path(backend.folder, self.graph),
            self.graph,
            self.manifest.io,
            backend.profiles,
            backend.buffers_in_use if self.graph == "flow" else None,
        )

    def infer_impl(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.engine is not None
        self.backend.use_device()
        engine = self.engine
        n, h, w = check_inputs(self.graph, inputs, self.manifest)
        shape = Shape(n, h, w)
        with engine.lock:
            slot = engine.slot(shape, _SYNC_SLOT)
            for name in GRAPH_IO[self.graph][0]:  # the last call's download synchronised the stream
                engine.upload(slot, name, inputs[name])
            engine.run(shape, _SYNC_SLOT, self.backend.options.cuda_graphs)
            outputs = {}
            for name in GRAPH_IO[self.graph][1]:
                outputs[name] = engine.download(slot, name)
            return outputs

    def deactivate_impl(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None


@dataclass(frozen=True)
class DevicePair:
    """A prepared pair on the GPU: frames and flows in flow-engine slot `slot` (of the ring of
    `pair_slots`), valid until released (the ring's generation of the slot is still `generation`)."""

    slot: int
    generation: int
    shape: Shape


class TensorRTBackend(Backend):
    """Two TensorRT plans (flow, interp) of an engine folder, each on its own CUDA stream.

    The pair protocol keeps everything on the GPU: `prepare` uploads the two frames into one slot
    of a ring, runs the flow engine on the flow stream and records an event; `synthesize` makes
    the interp stream wait on that event, broadcasts the pair over the batch of times by
    device-to-device copies, runs the interpolation engine and copies only frame_t back. The flow
    of pair k+1 (prepared by the Interpolator's or the video job's flow thread) overlaps the
    interpolation of pair k; a slot is rewritten only after the interp stream has finished with it.

    `prepare` takes a slot of the ring (`PairRing`) and `release` returns it: while every slot is
    held, `prepare` waits (backpressure). Each engine's execution context has its own lock, so an
    `Interpolator` on this backend is safe from several threads.
    """

    name = "tensorrt"
    kinds = ("tensorrt",)

    def __init__(
        self, folder: str | Path, options: TensorRTOptions | None = None, manifest: Manifest | None = None
    ) -> None:
        super().__init__(folder, manifest)
        self.options = options or TensorRTOptions()
        if self.options.pair_slots < 3:
            raise SloMoError(
                f"pair_slots must be >= 3 (one prepared, one waiting, one synthesized), "
                f"got {self.options.pair_slots}"
            )
        self.profiles = manifest_profiles(self.manifest)
        self.trt_runtime: trt.Runtime | None = None
        self.ring = PairRing(self.options.pair_slots, self.options.pair_wait_s)
        self._flow_ready: list[Any] = []
        self._slot_free: list[Any] = []
        self._slot_used = [False] * self.options.pair_slots

    def use_device(self) -> None:
        """The CUDA device is a per-thread setting: every entry point may come from another thread."""
        cudart = import_cudart()
        cuda_call(cudart.cudaSetDevice(self.options.device), f"cudaSetDevice({self.options.device})")

    def activate(self) -> TensorRTBackend:
        if self.trt_runtime is None and not self.closed:
            import_tensorrt()  # a clear message when TensorRT is missing
            import tensorrt as trt

            cudart = import_cudart()
            self.use_device()
            gpu = device_identity(self.options.device)
            check_engine_manifest(self.manifest, str(trt.__version__), gpu["name"], gpu["compute_capability"])
            self.trt_runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            if self.manifest.tensorrt.get("version_compatible"):
                # Version-compatible plans carry their own lean runtime, which is host code.
                self.trt_runtime.engine_host_code_allowed = True
            flags = cudart.cudaEventDisableTiming
            self._flow_ready = [
                cuda_call(cudart.cudaEventCreateWithFlags(flags), "cudaEventCreateWithFlags")
                for _ in range(self.options.pair_slots)
            ]
            self._slot_free = [
                cuda_call(cudart.cudaEventCreateWithFlags(flags), "cudaEventCreateWithFlags")
                for _ in range(self.options.pair_slots)
            ]
        super().activate()
        self._check_engines_agree()
        return self

    def _check_engines_agree(self) -> None:
        flow, interp = self._engine("flow"), self._engine("interp")
        for name in ("frame0", "frame1", "flow01", "flow10"):
            if flow.dtypes[name] != interp.dtypes[name]:
                raise ManifestError(
                    f"the flow engine's {name} is {flow.dtypes[name]} but the interpolation engine takes "
                    f"{interp.dtypes[name]}; {rebuild_hint(self.manifest)}"
                )

    def make_runner(self, graph: str) -> GraphRunner:
        return _EngineRunner(self, graph)

    def _engine(self, graph: str) -> _Engine:
        if not self.is_active:
            self.activate()
        engine = self.runners[graph].engine  # type: ignore[attr-defined]
        assert engine is not None
        return engine

    def deactivate(self) -> None:
        if self.trt_runtime is None:
            return
        cudart = import_cudart()
        self.use_device()
        super().deactivate()  # synchronises and frees each engine's streams and buffers
        for event in self._flow_ready + self._slot_free:
            cuda_call(cudart.cudaEventDestroy(event), "cudaEventDestroy")
        self._flow_ready, self._slot_free = [], []
        self._slot_used = [False] * self.options.pair_slots
        self.ring.reset()  # handles from before point at freed memory
        # TensorRT frees its objects when the last reference goes; engines went first.
        self.trt_runtime = None

    @property
    def max_batch(self) -> int:
        return max(p.max.n for p in self.profiles)

    @property
    def max_pairs_alive(self) -> int:
        return self.options.pair_slots

    def buffers_in_use(self, key: tuple[Shape, int]) -> bool:
        """Whether the flow engine's buffers `key` (shape, slot) may hold a live pair."""
        return key[1] >= 0 and self.ring.held(key[1])

    def describe(self) -> str:
        return f"GPU {self.options.device}" + (", CUDA graphs" if self.options.cuda_graphs else "")

    @property
    def captured_graphs(self) -> int:
        """CUDA graphs captured so far, over both engines (0 when off or every capture failed)."""
        return sum(
            slot.graph_exec is not None
            for runner in self.runners.values()
            for slot in runner.engine.slots.values()  # type: ignore[attr-defined]
        )

    # -- the pair protocol on the GPU ----------------------------------------------------
    def prepare(self, frame0: np.ndarray, frame1: np.ndarray) -> DevicePair:
        cudart = import_cudart()
        flow = self._engine("flow")
        self.use_device()
        n, h, w = check_inputs("flow", {"frame0": frame0, "frame1": frame1}, self.manifest)
        if n != 1:
            raise SloMoError(f"prepare takes one pair (batch 1 frames), got a batch of {n}")
        shape = Shape(1, h, w)
        k, generation = self.ring.acquire()  # waits while every slot holds a pair
        try:
            with flow.lock:
                if self._slot_used[k]:  # the interpolation that read this slot last must be finished
                    cuda_call(
                        cudart.cudaStreamWaitEvent(flow.stream, self._slot_free[k], 0), "cudaStreamWaitEvent"
                    )
                slot = flow.slot(shape, k)
                # The pinned buffers of this slot may still feed an earlier upload of the stream.
                cuda_call(cudart.cudaStreamSynchronize(flow.stream), "cudaStreamSynchronize")
                flow.upload(slot, "frame0", frame0)
                flow.upload(slot, "frame1", frame1)
                flow.run(shape, k, self.options.cuda_graphs)
                cuda_call(cudart.cudaEventRecord(self._flow_ready[k], flow.stream), "cudaEventRecord")
                self._slot_used[k] = True
        except BaseException:
            self.ring.release(k, generation)
            raise
        return DevicePair(k, generation, shape)

    def release(self, pair: DevicePair) -> None:
        """The pair's slot goes back to the ring (a second release changes nothing)."""
        if isinstance(pair, DevicePair):
            self.ring.release(pair.slot, pair.generation)

    def _check_alive(self, pair: DevicePair) -> None:
        if not isinstance(pair, DevicePair):
            raise SloMoError(f"not a pair prepared by this TensorRT backend: {type(pair).__name__}")
        if not self.ring.is_alive(pair.slot, pair.generation):
            raise SloMoError("this prepared pair was released (or the backend deactivated): prepare it again")

    def synthesize(self, pair: DevicePair, times: Sequence[float]) -> np.ndarray:
        cudart = import_cudart()
        flow, interp = self._engine("flow"), self._engine("interp")
        self.use_device()
        if not 1 <= len(times) <= self.max_batch:
            raise SloMoError(f"synthesize takes 1 to {self.max_batch} times per call, got {len(times)}")
        self._check_alive(pair)
        with flow.lock:  # a held pair's buffers are never evicted; the lookup guards the cache
            fslot = flow.slot(pair.shape, pair.slot)
        with interp.lock:
            shape = Shape(len(times), pair.shape.h, pair.shape.w)
            islot = interp.slot(shape, 0)
            cuda_call(
                cudart.cudaStreamWaitEvent(interp.stream, self._flow_ready[pair.slot], 0),
                "cudaStreamWaitEvent",
            )
            for name in ("frame0", "frame1", "flow01", "flow10"):
                per = fslot.specs[name].nbytes
                for b in range(shape.n):  # the pair broadcast over the batch of times, on the device
                    _copy_async(
                        islot.device[name].ptr + b * per,
                        fslot.device[name].ptr,
                        per,
                        cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice,
                        interp.stream,
                    )
            # The slot's frames and flows are read: the next prepare into it may overwrite them.
            cuda_call(cudart.cudaEventRecord(self._slot_free[pair.slot], interp.stream), "cudaEventRecord")
            interp.upload(islot, "t", np.asarray(times, dtype=islot.specs["t"].dtype))
            interp.run(shape, 0, self.options.cuda_graphs)
            return interp.download(islot, "frame_t")

    def host_flows(self, pair: DevicePair) -> tuple[np.ndarray, np.ndarray]:
        flow = self._engine("flow")
        self.use_device()
        self._check_alive(pair)
        with flow.lock:
            slot = flow.slot(pair.shape, pair.slot)
            return flow.download(slot, "flow01"), flow.download(slot, "flow10")
