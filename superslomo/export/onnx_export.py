"""PyTorch -> ONNX: the flow graph and the interpolation graph, checked, with a manifest."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import signal
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from superslomo.contracts.files import atomic_path, file_sha256
from superslomo.contracts.graph_io import (
    FLOW_INPUTS,
    FLOW_OUTPUTS,
    INTERP_INPUTS,
    INTERP_OUTPUTS,
    SIZE_MULTIPLE,
)
from superslomo.contracts.manifest import SCALES, GraphEntry, Manifest, size_multiple, write_manifest
from superslomo.errors import SloMoError
from superslomo.export.graphs import FlowGraph, InterpGraph
from superslomo.model.slomo import MEAN, SuperSloMo

MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 16, 19, 17
PRECISIONS = ("fp32", "fp16")
WARPS = ("gridsample", "plugin")
IO_TYPES = ("float32", "uint8")


@dataclass
class ExportOptions:
    opset: int = DEFAULT_OPSET
    warp: str = "gridsample"
    precision: str = "fp32"
    io: str = "float32"
    # Below 1: that network runs on the pair downscaled, the warps at full size (model/scaled.py);
    # frames then pad to the networks' multiple over the smaller scale.
    flow_scale: float = 1.0
    interp_scale: float = 1.0
    # Only for measuring what float32 warp coordinates buy; not offered on the command line.
    fp16_coordinates: bool = False

    @property
    def scales(self) -> dict[str, float]:
        return {"flow": self.flow_scale, "interp": self.interp_scale}

    def validate(self) -> None:
        if self.opset >= 20:
            raise SloMoError(
                f"opset {self.opset} is refused: TensorRT's ONNX parser turns opset-20 GridSample mode "
                "'linear' into nearest sampling (NVIDIA/TensorRT#4646); use --opset 16..19 (default 17)"
            )
        if self.opset < MIN_OPSET:
            raise SloMoError(f"opset {self.opset} is too old: GridSample needs opset >= {MIN_OPSET}")
        for value, allowed, what in (
            (self.warp, WARPS, "warp"),
            (self.precision, PRECISIONS, "precision"),
            (self.io, IO_TYPES, "io"),
        ):
            if value not in allowed:
                raise SloMoError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
        for graph, scale in self.scales.items():
            if scale not in SCALES:
                raise SloMoError(
                    f"unknown {graph} scale {scale:g}; choose one of {', '.join(f'{v:g}' for v in SCALES)}"
                )
        if self.fp16_coordinates and (self.warp != "gridsample" or self.precision != "fp16"):
            raise SloMoError("fp16 coordinates exist only as a gridsample fp16 comparison variant")


def _example_inputs(io: str, multiple: int = SIZE_MULTIPLE, n: int = 2):
    h, w = 2 * multiple, 3 * multiple  # unequal multiples, so neither is specialised
    if io == "uint8":
        frame = torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8)
    else:
        frame = torch.rand(n, 3, h, w)
    flow = torch.randn(n, 2, h, w)
    return frame, frame.clone(), flow, flow.clone(), torch.rand(n)


def _dynamic_shapes(io: str, names: tuple[str, ...], multiple: int = SIZE_MULTIPLE):
    batch = torch.export.Dim("batch", min=1, max=64)
    # H and W are multiples of 32 (five pooling levels; more below full scale); say so, so the
    # graph stays symbolic.
    rows = multiple * torch.export.Dim("rows", min=1, max=8192 // multiple)
    cols = multiple * torch.export.Dim("cols", min=1, max=8192 // multiple)
    frame = {0: batch, 1: rows, 2: cols} if io == "uint8" else {0: batch, 2: rows, 3: cols}
    nchw = {0: batch, 2: rows, 3: cols}
    table = {"frame0": frame, "frame1": frame, "flow01": nchw, "flow10": nchw, "t": {0: batch}}
    return {name: table[name] for name in names}


def _quiet(line: str) -> None:
    pass


def _export_one(
    module: torch.nn.Module,
    args: tuple,
    names: tuple[str, ...],
    outputs: tuple[str, ...],
    path: Path,
    options: ExportOptions,
    say: Callable[[str], None] = _quiet,
) -> None:
    import onnx

    from superslomo.export.warp_lowering import LOWERINGS

    lowering = "gridsample-fp16-coords" if options.fp16_coordinates else options.warp
    say(f"exporting {path.name} (opset {options.opset}, warp {options.warp}, io {options.io}) ...")
    # The exporter logs opset-conversion and torchvision notices at WARNING on every call.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    logging.getLogger("onnxscript").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _interrupts_pass_through():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            args,
            input_names=list(names),
            output_names=list(outputs),
            opset_version=options.opset,
            dynamo=True,
            external_data=False,
            dynamic_shapes=_dynamic_shapes(options.io, names, size_multiple(options.scales)),
            custom_translation_table={torch.ops.superslomo.backwarp.default: LOWERINGS[lowering]},
            optimize=True,
            verbose=False,
        )
    model = program.model_proto
    _rename_dims(model, options.io, names)
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))
        say(f"checking {path.name} (ONNX checker, shape inference) ...")
        check_graph(tmp, plugin=options.warp == "plugin")


class _ExportInterrupted(BaseException):
    """Ctrl-C inside torch.onnx.export: a BaseException, which its `except Exception` lets by."""


@contextlib.contextmanager
def _interrupts_pass_through():
    """The exporter catches every Exception (the CLI's interrupt error among them), wraps it in
    a report of hundreds of lines and tries its next strategy. So inside it Ctrl-C raises a
    BaseException, turned back into what the caller's own SIGINT handler does on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):
        yield
        return

    def handler(signum, frame):
        raise _ExportInterrupted

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    except _ExportInterrupted:
        signal.signal(signal.SIGINT, previous)
        previous(signal.SIGINT, None)  # the CLI's raises its one-line error; Python's, KeyboardInterrupt
        raise KeyboardInterrupt from None
    finally:
        signal.signal(signal.SIGINT, previous)


def _rename_dims(model, io: str, names: tuple[str, ...]) -> None:
    """Name the dynamic dimensions N, H, W in the interface (exporter gives s0/32*s1 names)."""
    nhwc = {"frame0", "frame1"} if io == "uint8" else set()
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if not len(dims):
            continue
        labels = (
            ("N", "H", "W", None)
            if value.name in nhwc or (io == "uint8" and value.name == "frame_t")
            else ("N", None, "H", "W")
        )
        if len(dims) == 1:
            labels = ("N",)
        for dim, label in zip(dims, labels, strict=False):
            if label and not dim.HasField("dim_value"):
                dim.dim_param = label


def check_graph(path: Path, plugin: bool) -> None:
    """onnx.checker (full check with shape inference) on the saved file."""
    import onnx

    try:
        # The plugin node's domain is ours, so strict inference cannot know its output shape.
        onnx.checker.check_model(str(path), full_check=not plugin)
        onnx.shape_inference.infer_shapes_path(str(path), str(path), check_type=True, strict_mode=not plugin)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise SloMoError(
            f"exported graph {path.name} failed the ONNX checker: {str(error).splitlines()[0]}"
        ) from None


def export_model(
    model: SuperSloMo,
    out_dir: str | os.PathLike,
    options: ExportOptions | None = None,
    source: dict | None = None,
    say: Callable[[str], None] | None = None,
) -> Manifest:
    """Write flow.onnx, interp.onnx and manifest.json into out_dir (each by temp file + rename).

    `say` gets a line as each step starts (the caller decides where it goes and stamps the time);
    None: silent."""
    say = say or _quiet
    options = options or ExportOptions()
    options.validate()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SloMoError(f"output exists and is not a folder: {out}")
    out.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).eval().float()
    if options.precision == "fp16":
        say("converting the U-Nets to fp16 (warp coordinates and I/O stay fp32) ...")
        model.flow_net.half()
        model.interp_net.half()
    multiple = size_multiple(options.scales)
    frame0, frame1, flow01, flow10, t = _example_inputs(options.io, multiple)
    graphs = {}
    with torch.no_grad():
        _export_one(
            FlowGraph(model, options.io, options.flow_scale),
            (frame0, frame1),
            FLOW_INPUTS,
            FLOW_OUTPUTS,
            out / "flow.onnx",
            options,
            say,
        )
        _export_one(
            InterpGraph(model, options.io, options.interp_scale),
            (frame0, frame1, flow01, flow10, t),
            INTERP_INPUTS,
            INTERP_OUTPUTS,
            out / "interp.onnx",
            options,
            say,
        )
    for name, inputs, outputs in (
        ("flow", FLOW_INPUTS, FLOW_OUTPUTS),
        ("interp", INTERP_INPUTS, INTERP_OUTPUTS),
    ):
        graphs[name] = GraphEntry(
            file=f"{name}.onnx",
            sha256=file_sha256(out / f"{name}.onnx"),
            inputs=list(inputs),
            outputs=list(outputs),
            precision=options.precision,
        )
    manifest = Manifest(
        kind="onnx",
        precision=options.precision,
        warp=options.warp,
        io=options.io,
        opset=options.opset,
        graphs=graphs,
        # The graphs compute the model's convention themselves; this says which, for people and checks.
        warp_convention=model.config.warp,
        scales=options.scales,
        size_multiple=multiple,
        source={"width": model.config.width, **(source or {})},
        normalisation={
            "mean": list(MEAN),
            "std": [1.0, 1.0, 1.0],
            "range": [0.0, 1.0],
            "frames": "uint8 NHWC 0..255" if options.io == "uint8" else "float32 NCHW 0..1",
        },
        extra={"warp_coordinates": "fp16" if options.fp16_coordinates else "fp32"},
    )
    write_manifest(out, manifest)
    return manifest
