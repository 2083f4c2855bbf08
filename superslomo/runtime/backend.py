"""The runner protocol every inference backend implements (onnxruntime, OpenVINO, TensorRT).

Shaped like Polygraphy's backends: constructing a backend reads only its manifest and checks its
options; `activate` loads the graphs (sessions, compiled models, engines); `deactivate` frees them;
every backend is a context manager. Each graph has one runner (`GraphRunner`), whose public `infer`
checks the inputs once, here, against the manifest, then calls the backend's `infer_impl`.

The pair is the unit (DESIGN.md decision 6): `prepare(frame0, frame1)` runs the flow graph and
returns a handle that may keep frames and flows where the backend computes (TensorRT: on the GPU);
`synthesize(handle, times)` runs the interpolation graph for a batch of times. The CPU backends
keep both on the host and use the defaults below.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from superslomo.contracts.frames import interp_inputs
from superslomo.contracts.graph_io import GRAPH_INPUTS
from superslomo.contracts.manifest import GRAPHS, Manifest, read_manifest
from superslomo.errors import SloMoError

# Per-input (rank, dtype) for float32-I/O folders; a uint8-I/O folder takes frames as NHWC uint8.
_FLOAT_FRAME = (4, np.dtype(np.float32))
_UINT8_FRAME = (4, np.dtype(np.uint8))
_FLOW = (4, np.dtype(np.float32))
_TIME = (1, np.dtype(np.float32))


def check_inputs(graph: str, inputs: Mapping[str, np.ndarray], manifest: Manifest) -> tuple[int, int, int]:
    """The batch, height and width of `inputs` for `graph`, or a one-line error saying what is wrong:
    a missing or unknown name, a wrong type or rank, frames and flows that disagree in size, a
    size off the graphs' multiple, a batch of t that is not the frames' batch."""
    if graph not in GRAPH_INPUTS:
        raise SloMoError(f"unknown graph {graph!r}; the graphs are {', '.join(GRAPHS)}")
    names = GRAPH_INPUTS[graph]
    missing = [n for n in names if n not in inputs]
    unknown = [n for n in inputs if n not in names]
    if missing or unknown:
        said = f"missing {missing}" if missing else f"unknown {unknown}"
        raise SloMoError(f"{graph}: inputs {said}; it takes {', '.join(names)}")
    uint8 = manifest.io == "uint8"
    shape: tuple[int, int, int] | None = None
    for name in names:
        value = inputs[name]
        if not isinstance(value, np.ndarray):
            raise SloMoError(f"{graph}: {name} must be a numpy array, got {type(value).__name__}")
        if name.startswith("frame"):
            rank, dtype = _UINT8_FRAME if uint8 else _FLOAT_FRAME
        else:
            rank, dtype = _TIME if name == "t" else _FLOW
        if value.ndim != rank or value.dtype != dtype:
            raise SloMoError(
                f"{graph}: {name} must be {rank}-D {dtype}, got {value.ndim}-D {value.dtype} {value.shape}"
            )
        if name == "t":
            continue
        channels = value.shape[3] if uint8 and name.startswith("frame") else value.shape[1]
        n, h, w = (
            (value.shape[0], value.shape[1], value.shape[2])
            if uint8 and name.startswith("frame")
            else (value.shape[0], value.shape[2], value.shape[3])
        )
        if channels != (3 if name.startswith("frame") else 2):
            raise SloMoError(f"{graph}: {name} has {channels} channels in shape {value.shape}")
        if shape is None:
            shape = (n, h, w)
        elif (n, h, w) != shape:
            raise SloMoError(f"{graph}: {name} is {n}x{h}x{w} (NxHxW), frame0 is {'x'.join(map(str, shape))}")
    assert shape is not None
    n, h, w = shape
    multiple = manifest.size_multiple
    if n < 1 or h < multiple or w < multiple or h % multiple or w % multiple:
        raise SloMoError(
            f"{graph}: frames are {n}x{h}x{w} (NxHxW); height and width must be positive multiples of "
            f"{multiple} (the Interpolator pads frames of any size)"
        )
    if graph == "interp" and inputs["t"].shape != (n,):
        raise SloMoError(f"interp: t has shape {inputs['t'].shape}, expected ({n},), one time per frame")
    return shape


class GraphRunner(ABC):
    """One graph of a folder on one backend: activate / infer / deactivate."""

    def __init__(self, graph: str, manifest: Manifest) -> None:
        self.graph, self.manifest = graph, manifest
        self.is_active = False

    def activate(self) -> None:
        if not self.is_active:
            self.activate_impl()
            self.is_active = True

    def deactivate(self) -> None:
        if self.is_active:
            self.is_active = False
            self.deactivate_impl()

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.is_active:
            raise SloMoError(f"the {self.graph} runner is not active (use the backend as a context manager)")
        check_inputs(self.graph, inputs, self.manifest)
        return self.infer_impl(inputs)

    @abstractmethod
    def activate_impl(self) -> None: ...

    @abstractmethod
    def infer_impl(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def deactivate_impl(self) -> None:  # noqa: B027 - most runners only drop references
        pass


@dataclass
class HostPair:
    """A prepared pair kept in host memory, in graph layout (padded, batch of one)."""

    frame0: np.ndarray
    frame1: np.ndarray
    flow01: np.ndarray
    flow10: np.ndarray


class Backend(ABC):
    """Runs the two graphs of one model folder. Subclasses say how to make a runner for a graph and
    which manifest kinds they take; the pair protocol defaults to host memory."""

    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]] = ("onnx",)

    def __init__(self, folder: str | Path | None, manifest: Manifest | None = None) -> None:
        """`folder` None: a backend that runs in memory (the PyTorch reference, test doubles),
        described by `manifest` alone."""
        if folder is None and manifest is None:
            raise SloMoError("a backend needs a model folder or, running in memory, a manifest")
        self.folder = Path(folder) if folder is not None else None
        # The loader has already read (and hashed) the manifest; reading it again costs a pass
        # over both graphs.
        self.manifest = manifest if manifest is not None else read_manifest(self.folder)
        if self.manifest.kind not in self.kinds:
            if self.manifest.kind == "tensorrt":
                raise SloMoError(
                    f"{self.folder} holds TensorRT engines, not ONNX graphs; use --backend tensorrt "
                    "(the other backends run the ONNX folder the engines were built from)"
                )
            raise SloMoError(
                f"{self.folder} holds ONNX graphs; build engines first: "
                f"slomo build-engine {self.folder} -o ENGINES"
            )
        self.runners: dict[str, GraphRunner] = {}
        self.closed = False

    # -- lifecycle -----------------------------------------------------------------------
    def make_runner(self, graph: str) -> GraphRunner:
        raise NotImplementedError(f"{type(self).__name__} runs its graphs in `infer` itself")

    def activate(self) -> Backend:
        if self.closed:
            raise SloMoError(f"the {self.name} backend is closed")
        if type(self).make_runner is Backend.make_runner:
            return self  # runs its graphs in an overridden `infer`: nothing to load
        for graph in GRAPHS:
            if graph not in self.runners:
                self.runners[graph] = self.make_runner(graph)
            self.runners[graph].activate()
        return self

    def deactivate(self) -> None:
        for runner in self.runners.values():
            runner.deactivate()
        self.runners.clear()

    def close(self) -> None:
        self.deactivate()
        self.closed = True

    def __enter__(self) -> Backend:
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_active(self) -> bool:
        return bool(self.runners) and all(r.is_active for r in self.runners.values())

    # -- graphs --------------------------------------------------------------------------
    @property
    def max_batch(self) -> int | None:
        """The most samples one call may take (engine profiles cap it); None: no limit."""
        return None

    @property
    def max_pairs_alive(self) -> int | None:
        """Prepared pairs that may be alive at once (a GPU ring of slots); None: no limit."""
        return None

    def describe(self) -> str:
        """Where it runs, for the `backend:` line (e.g. "CPU")."""
        return self.name

    def infer(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one graph on host arrays; activates the backend on first use."""
        if not self.is_active:
            self.activate()
        if graph not in self.runners:
            raise SloMoError(f"unknown graph {graph!r}; the graphs are {', '.join(GRAPHS)}")
        return self.runners[graph].infer(inputs)

    # -- the pair protocol ---------------------------------------------------------------
    def prepare(self, frame0: np.ndarray, frame1: np.ndarray) -> Any:
        """Flow for one pair in graph layout (batch of one); the handle feeds `synthesize`."""
        flows = self.infer("flow", {"frame0": frame0, "frame1": frame1})
        return HostPair(frame0, frame1, flows["flow01"], flows["flow10"])

    def synthesize(self, pair: Any, times: Sequence[float]) -> np.ndarray:
        """frame_t for each time (one batch, at most `max_batch`), on the host in graph layout."""
        inputs = interp_inputs(pair.frame0, pair.frame1, pair.flow01, pair.flow10, times)
        return self.infer("interp", inputs)["frame_t"]

    def host_flows(self, pair: Any) -> tuple[np.ndarray, np.ndarray]:
        """The pair's flows on the host (a copy from the device where they live there)."""
        return pair.flow01, pair.flow10

    def release(self, pair: Any) -> None:  # noqa: B027 - host pairs are freed by the collector
        """Done with a prepared pair: its device memory may be reused."""


def check_threads(threads: int | None) -> None:
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise SloMoError(f"threads must be a whole number >= 1, got {threads!r}")
