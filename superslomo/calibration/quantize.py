"""INT8 Q/DQ graphs with onnxruntime's static quantizer, restricted to the convolutions.

Why this shape of quantization (measured, see README "INT8"):
- Conv only. The U-Nets' convolutions are almost all of the arithmetic; everything else in the
  interpolation graph is the warp (GridSample and its fp32 coordinate math), the flow
  coefficients of t and the sigmoid/visibility fusion, where 8 bits of flow is a pixel-scale
  error. Quantizing every op type destroyed accuracy in an early trial; Conv-only stays close.
- Q/DQ on conv inputs (per-tensor activations, symmetric: TensorRT's INT8 has zero point 0) and
  on weights (per output channel). Conv outputs stay float by default (`conv_outputs=False`):
  TensorRT fuses Conv+LeakyReLU+Q of the next conv by itself, and the last convs produce flows
  and visibility logits that must not be rounded to 256 levels.
- Biases stay float (`QuantizeBias: False`): ORT would otherwise write an INT32 bias with a
  DequantizeLinear, which TensorRT's DequantizeLinear (INT8/FP8/INT4 only) refuses.
- Graph optimisation off while calibrating and in the output: the quantizer must see the graph
  as exported, so every Q/DQ sits on a tensor TensorRT's parser will also see.
"""

from __future__ import annotations

import contextlib
import io as io_module
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from superslomo.calibration.calibset import CalibSet
from superslomo.contracts.frames import to_graph_frames
from superslomo.errors import SloMoError

METHODS = ("entropy", "max", "percentile")
GRAPHS = ("flow", "interp")


@dataclass
class QuantizeOptions:
    method: str = "percentile"
    percentile: float = 99.99
    batch: int = 1
    per_channel: bool = True
    # Also Q/DQ on conv outputs (except the last conv): ONNX Runtime's CPU kernels then fuse
    # DQ-Conv-Q into integer convolutions; TensorRT does not need it.
    conv_outputs: bool = False
    # Convolutions left in float by node name, per graph (e.g. the interp net's first conv, whose
    # input mixes [0,1] images with flows of tens of pixels in one per-tensor range).
    keep_float: dict[str, list[str]] = field(default_factory=dict)
    max_samples: int | None = None

    def validate(self) -> None:
        if self.method not in METHODS:
            raise SloMoError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not 0 < self.percentile <= 100:
            raise SloMoError(f"--percentile must be in (0, 100], got {self.percentile}")
        if self.batch < 1:
            raise SloMoError("--batch must be at least 1")


def ort_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {
        "entropy": CalibrationMethod.Entropy,
        "max": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
    }[method]


class CalibReader:
    """onnxruntime CalibrationDataReader over a CalibSet for one graph, batch by batch."""

    def __init__(
        self, calib: CalibSet, graph: str, io: str, batch: int = 1, limit: int | None = None
    ) -> None:
        self.calib, self.graph, self.io, self.batch = calib, graph, io, batch
        self.count = min(len(calib), limit) if limit else len(calib)
        self.batches_total = -(-self.count // batch)
        self._range = (0, self.batches_total)
        self._iter: Iterator[dict[str, np.ndarray]] | None = None

    def __len__(self) -> int:
        return self.batches_total

    def set_range(self, start_index: int, end_index: int) -> None:
        self._range = (start_index, min(end_index, self.batches_total))
        self._iter = None

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        for number in range(*self._range):
            start = number * self.batch
            rows = slice(start, min(start + self.batch, self.count))
            feed = {
                "frame0": to_graph_frames(self.calib["frame0"][rows], self.io),
                "frame1": to_graph_frames(self.calib["frame1"][rows], self.io),
            }
            if self.graph == "interp":
                feed["flow01"] = np.ascontiguousarray(self.calib["flow01"][rows])
                feed["flow10"] = np.ascontiguousarray(self.calib["flow10"][rows])
                feed["t"] = np.ascontiguousarray(self.calib["t"][rows])
            yield feed

    # The two methods onnxruntime calls.
    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iter is None:
            self._iter = self.batches()
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None


_BATCHES_PER_FOLD = 8


def measure_ranges(src: Path, reader: CalibReader, options: QuantizeOptions, cache: Path) -> None:
    """Activation ranges of the conv tensors, saved where quantize_static reads cached ranges.

    Run here rather than inside quantize_static for two reasons: the data is fed a few batches
    at a time (each call folds its batch into running ranges or histograms, so memory does not
    grow with the set), and entropy gets TensorRT's 2048-bin histogram: quantize_static's
    default of 128 bins for 128 quantized levels leaves KL divergence one candidate threshold,
    the maximum, so "entropy" silently equalled "max"."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    calib_options = {"symmetric": True}
    if options.method == "entropy":
        calib_options.update(num_bins=2048, num_quantized_bins=128)
    elif options.method == "percentile":
        calib_options.update(num_bins=2048, percentile=options.percentile)
    calibrator = create_calibrator(
        src,
        ["Conv"],
        augmented_model_path=str(cache.with_name("augmented.onnx")),
        calibrate_method=ort_method(options.method),
        extra_options=calib_options,
    )
    for start in range(0, len(reader), _BATCHES_PER_FOLD):
        reader.set_range(start, start + _BATCHES_PER_FOLD)
        calibrator.collect_data(reader)
    save_tensors_data(calibrator.compute_data(), cache)


def conv_nodes(model) -> list:
    return [node for node in model.graph.node if node.op_type == "Conv"]


def quantize_graph(
    src: Path, dst: Path, graph: str, calib: CalibSet, io: str, options: QuantizeOptions
) -> dict:
    """Write the Q/DQ version of one graph; returns the facts for the manifest."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    model = onnx.load(str(src))
    convs = conv_nodes(model)
    if not convs:
        raise SloMoError(f"{src} has no Conv nodes to quantize")
    names = {node.name for node in convs}
    keep = list(options.keep_float.get(graph, []))
    if options.conv_outputs and convs[-1].name not in keep:
        # The last conv makes flows / visibility logits: its output must stay float, and the
        # quantizer has no per-node switch for outputs, so that conv stays float altogether.
        keep.append(convs[-1].name)
    unknown = [name for name in keep if name not in names]
    if unknown:
        raise SloMoError(f"{graph} graph has no Conv named {', '.join(unknown)}")
    reader = CalibReader(calib, graph, io, options.batch, options.max_samples)
    extra = {
        "QuantizeBias": False,
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "ForceQuantizeNoInputCheck": False,
    }
    if not options.conv_outputs:
        extra["OpTypesToExcludeOutputQuantization"] = ["Conv"]
    import logging
    import tempfile

    root = logging.getLogger()
    level = root.level
    # onnxruntime advises "pre-processing" through the root logger and prints calibration
    # progress on stdout; the exported graphs are already shape-inferred, so both are noise.
    root.setLevel(logging.ERROR)
    try:
        with (
            tempfile.TemporaryDirectory(prefix=".calib.", dir=dst.parent) as scratch,
            contextlib.redirect_stdout(io_module.StringIO()),
        ):
            cache = Path(scratch) / "ranges.json"
            measure_ranges(src, reader, options, cache)
            quantize_static(
                str(src),
                str(dst),
                None,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv"],
                nodes_to_exclude=keep,
                per_channel=options.per_channel,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=ort_method(options.method),
                extra_options=extra,
                calibration_cache_path=str(cache),
            )
    except SloMoError:
        raise
    except Exception as error:  # onnxruntime raises many types; report one line
        raise SloMoError(f"quantizing {src.name} failed: {str(error).splitlines()[0]}") from None
    finally:
        root.setLevel(level)
    check_qdq_graph(dst, graph)
    return {
        "convs": len(convs),
        "convs_int8": len(convs) - len(keep),
        "kept_float": keep,
        "calibration_samples": reader.count,
    }


# Op types of the float islands: the warp, its coordinate math, flow coefficients, visibility.
WARP_OPS = ("GridSample", "BackWarp")


def qdq_facts(path: str | os.PathLike) -> dict:
    """Counts that say where Q/DQ went (used by tests and the report)."""
    import onnx

    model = onnx.load(str(path))
    producers = {out: node for node in model.graph.node for out in node.output}
    initialisers = {init.name: init for init in model.graph.initializer}
    facts = {
        "quantize": 0,
        "dequantize": 0,
        "convs": 0,
        "convs_qdq_input": 0,
        "convs_qdq_weight": 0,
        "int32_dequantize": 0,
        "warp_inputs_from_qdq": 0,
        "float_ops_after_dq": [],
    }
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            facts["quantize"] += 1
        elif node.op_type == "DequantizeLinear":
            facts["dequantize"] += 1
            source = node.input[0]
            if source in initialisers and initialisers[source].data_type == onnx.TensorProto.INT32:
                facts["int32_dequantize"] += 1
        elif node.op_type == "Conv":
            facts["convs"] += 1
            data = producers.get(node.input[0])
            weight = producers.get(node.input[1])
            facts["convs_qdq_input"] += bool(data is not None and data.op_type == "DequantizeLinear")
            facts["convs_qdq_weight"] += bool(weight is not None and weight.op_type == "DequantizeLinear")
        elif node.op_type in WARP_OPS:
            for name in node.input:
                facts["warp_inputs_from_qdq"] += _reaches_dq(name, producers)
    return facts


def _reaches_dq(tensor: str, producers: Mapping[str, object]) -> bool:
    """Whether a warp input is computed, through float ops only, from a DequantizeLinear.

    The walk stops at a Conv (its output is float by construction) or a graph input."""
    stack, seen = [tensor], set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        node = producers.get(name)
        if node is None or node.op_type == "Conv":
            continue
        if node.op_type in ("DequantizeLinear", "QuantizeLinear"):
            return True
        stack.extend(node.input)
    return False


def check_qdq_graph(path: Path, graph: str) -> None:
    facts = qdq_facts(path)
    if facts["int32_dequantize"]:
        raise SloMoError(f"{path.name}: INT32 DequantizeLinear present (TensorRT refuses it); this is a bug")
    if facts["warp_inputs_from_qdq"]:
        raise SloMoError(f"{path.name}: Q/DQ reached the warp inputs; this is a bug")


@dataclass
class QuantizeResult:
    output: Path
    manifest: object
    report: dict
    refused: str | None = None


REPORT_NAME = "accuracy.json"


def quantize_model(
    model_dir: str | os.PathLike,
    calib_path: str | os.PathLike,
    output: str | os.PathLike,
    options: QuantizeOptions | None = None,
    graphs: tuple[str, ...] = GRAPHS,
    max_drop_db: float = 0.5,
    force: bool = False,
    eval_count: int = 16,
) -> QuantizeResult:
    """Quantize an fp32 ONNX folder into `output` (INT8 graphs, manifest, accuracy.json).

    Everything is made in a temporary sibling folder and renamed into place only when the
    accuracy gate passes (or `force`): a refusal leaves no output behind. A graph not in `graphs`
    is copied in fp32 (a mixed setting).
    Raises CheckFailed when the PSNR drop of the chosen setting exceeds `max_drop_db`."""
    import dataclasses
    import shutil
    import tempfile

    import onnxruntime

    from superslomo.calibration.accuracy import measure
    from superslomo.contracts.files import file_sha256
    from superslomo.contracts.manifest import GraphEntry, read_manifest, write_manifest
    from superslomo.errors import CheckFailed

    options = options or QuantizeOptions()
    options.validate()
    graphs = tuple(graphs)
    if not graphs or any(g not in GRAPHS for g in graphs):
        raise SloMoError(f"--graphs must name flow and/or interp, got {','.join(graphs) or 'nothing'}")
    model_dir, output = Path(model_dir), Path(output)
    manifest = read_manifest(model_dir)
    if manifest.kind != "onnx" or manifest.precision != "fp32":
        raise SloMoError(
            f"{model_dir} is a {manifest.kind} {manifest.precision} folder; quantize an fp32 ONNX "
            "export (slomo export CKPT -o DIR)"
        )
    if manifest.warp != "gridsample":
        raise SloMoError(
            f"{model_dir} uses the BackWarp plugin, which ONNX Runtime's calibrator cannot run; "
            "quantize a --warp gridsample export (the Q/DQ placement does not depend on the warp)"
        )
    if output.resolve() == model_dir.resolve():
        raise SloMoError("the INT8 output folder must differ from the fp32 folder")
    if output.exists() and (
        not output.is_dir() or (any(output.iterdir()) and not (output / "manifest.json").is_file())
    ):
        raise SloMoError(f"{output} exists and is not an empty folder or a model folder; choose another -o")
    calib = CalibSet(calib_path)
    made_with = calib.meta.get("model", {}).get("source", {}).get("sha256")
    if made_with and manifest.source.get("sha256") and made_with != manifest.source["sha256"]:
        raise SloMoError(
            f"{calib_path} was made with another model's flows (checkpoint sha256 {made_with[:12]}...); "
            f"re-run slomo calibrate with --model {model_dir}"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp", dir=output.parent))
    work.chmod(0o755)  # mkdtemp's 0700 would follow the folder through the rename
    try:
        facts = {}
        paths = {}
        for graph in GRAPHS:
            src = manifest.graph_path(model_dir, graph)
            dst = work / f"{graph}.onnx"
            if graph in graphs:
                facts[graph] = quantize_graph(src, dst, graph, calib, manifest.io, options)
            else:
                shutil.copyfile(src, dst)
            paths[graph] = dst
        fp32 = {g: manifest.graph_path(model_dir, g) for g in GRAPHS}
        settings = ("flow", "interp", "both") if len(graphs) == 2 else graphs
        report = measure(fp32, {g: paths[g] for g in graphs}, calib, manifest.io, eval_count, settings)
        chosen = "both" if len(graphs) == 2 else graphs[0]
        drop = report["settings"][chosen]["psnr_drop_db"]
        report.update(
            {
                "chosen": chosen,
                "max_drop_db": max_drop_db,
                "passed": drop <= max_drop_db,
                "forced": bool(force),
                "model": {"folder": str(model_dir), "source": manifest.source},
                "calibration": {"file": str(calib_path), "sha256": file_sha256(calib_path), **calib.meta},
                "quantizer": _quantizer_facts(options, onnxruntime.__version__),
                "graphs": facts,
            }
        )
        refused = None
        if drop > max_drop_db:
            refused = (
                f"INT8 ({chosen}) loses {drop:.2f} dB PSNR vs fp32 on {report['triplets']} calibration "
                f"triplets (limit {max_drop_db} dB)"
            )
            if not force:
                raise CheckFailed(
                    refused + "; nothing was written (use --force to write it anyway, or try "
                    "--method, more --pairs, or --graphs flow / interp)"
                )
        (work / REPORT_NAME).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        entries = {}
        for graph in GRAPHS:
            old = manifest.graphs[graph]
            entries[graph] = GraphEntry(
                file=f"{graph}.onnx",
                sha256=file_sha256(paths[graph]),
                inputs=old.inputs,
                outputs=old.outputs,
                precision="int8" if graph in graphs else old.precision,
            )
        summary = {s: {k: round(v, 4) for k, v in report["settings"][s].items()} for s in report["settings"]}
        new = dataclasses.replace(
            manifest,
            precision="int8",
            graphs=entries,
            extra={
                **manifest.extra,
                "calibration": {
                    "sha256": report["calibration"]["sha256"],
                    "pairs": len(calib),
                    "size": list(calib.size),
                    "seed": calib.meta.get("seed"),
                    "inputs": [i["path"] for i in calib.meta.get("inputs", [])],
                },
                "quantizer": report["quantizer"],
                "accuracy": {
                    "chosen": chosen,
                    "settings": summary,
                    "report": REPORT_NAME,
                    "forced": refused is not None,
                },
            },
        )
        write_manifest(work, new)
        _replace_folder(work, output)
        return QuantizeResult(output, new, report, refused)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _quantizer_facts(options: QuantizeOptions, version: str) -> dict:
    return {
        "tool": f"onnxruntime {version} quantize_static",
        "format": "QDQ",
        "ops": ["Conv"],
        "method": options.method,
        **({"percentile": options.percentile} if options.method == "percentile" else {}),
        "weights": "int8 symmetric per output channel"
        if options.per_channel
        else "int8 symmetric per tensor",
        "activations": "int8 symmetric per tensor",
        "bias": "float (no INT32 DequantizeLinear)",
        "conv_outputs": options.conv_outputs,
        "kept_float": options.keep_float,
    }


def _replace_folder(new: Path, target: Path) -> None:
    """Put `new` at `target`; an old model folder there is moved aside first, then removed."""
    import shutil

    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old{os.getpid()}")
        os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
