"""The manifest.json written beside exported graphs and built engines (torch-free).

It is what makes a folder self-describing: the runtime reads it to know the graph files, the
frame I/O (float32 NCHW or uint8 NHWC), the precision and the warp variant, and an engine folder
adds what TensorRT plans are tied to (TensorRT version, GPU, profiles). File names inside it are
checked to be plain names in the same folder: a manifest is data from whoever made the folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from superslomo.contracts.files import atomic_write_text, file_sha256
from superslomo.contracts.graph_io import SIZE_MULTIPLE
from superslomo.errors import SloMoError

MANIFEST_NAME = "manifest.json"
FORMAT = "superslomo-trt"
FORMAT_VERSION = 1
GRAPHS = ("flow", "interp")
PRECISIONS = ("fp32", "fp16", "int8")
WARPS = ("gridsample", "plugin")
# How the graphs' backward warp places pixel centres (superslomo/model/warp.py): "reference" (the
# public weights', identity = a 0..1 px ramp) or "exact" (identity = zero flow). The graphs
# compute it themselves; the manifest says which, and a manifest from before the field is reference.
WARP_CONVENTIONS = ("reference", "exact")
DEFAULT_WARP_CONVENTION = "reference"
IO_TYPES = ("float32", "uint8")
# The fraction of the frame size each graph's network runs at inside the graph (model/scaled.py);
# the graphs' I/O is full size either way. A manifest from before the field is at full scale.
SCALES = (1.0, 0.5, 0.25)
FULL_SCALES = {"flow": 1.0, "interp": 1.0}


def size_multiple(scales: Mapping[str, float] | None) -> int:
    """What frame sizes must be a multiple of: the networks' 32 at the smallest scale."""
    return round(SIZE_MULTIPLE / min((scales or FULL_SCALES).values()))


def scales_words(scales: Mapping[str, float] | None, prefix: str = "") -> str:
    """ "flow at 1/4 scale, synthesis at 1/2 scale" (after `prefix`); "" at full scale."""
    names = {"flow": "flow", "interp": "synthesis"}
    parts = [f"{names[g]} at 1/{round(1 / v)} scale" for g, v in (scales or FULL_SCALES).items() if v != 1.0]
    return prefix + ", ".join(parts) if parts else ""


KINDS = ("onnx", "tensorrt")


class ManifestError(SloMoError):
    pass


@dataclass
class GraphEntry:
    file: str
    sha256: str
    inputs: list[str]
    outputs: list[str]
    precision: str = "fp32"


@dataclass
class Manifest:
    kind: str  # "onnx" (export/quantize) or "tensorrt" (build-engine)
    precision: str  # the weakest precision of the two graphs; per-graph values in `graphs`
    warp: str
    io: str
    opset: int
    graphs: dict[str, GraphEntry]
    source: dict[str, Any] = field(default_factory=dict)  # checkpoint name, sha256, width
    normalisation: dict[str, Any] = field(default_factory=dict)
    tensorrt: dict[str, Any] = field(default_factory=dict)  # engines only
    extra: dict[str, Any] = field(default_factory=dict)  # stage-specific facts (calibration...)
    size_multiple: int = SIZE_MULTIPLE
    warp_convention: str = DEFAULT_WARP_CONVENTION
    scales: dict[str, float] = field(default_factory=lambda: dict(FULL_SCALES))
    format: str = FORMAT
    version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def graph_path(self, folder: str | os.PathLike, graph: str) -> Path:
        return Path(folder) / self.graphs[graph].file

    @property
    def frame_layout(self) -> str:
        return "NHWC" if self.io == "uint8" else "NCHW"


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ManifestError(message)


def parse_manifest(data: Any, where: str = MANIFEST_NAME) -> Manifest:
    _require(isinstance(data, dict), f"{where}: not a JSON object")
    _require(data.get("format") == FORMAT, f"{where}: not a superslomo-trt manifest")
    _require(
        data.get("version") == FORMAT_VERSION,
        f"{where}: manifest version {data.get('version')!r} is not supported "
        f"(this build reads {FORMAT_VERSION}); re-export with this version of superslomo-trt",
    )
    _require(data.get("kind") in KINDS, f"{where}: kind must be one of {KINDS}")
    _require(data.get("precision") in PRECISIONS, f"{where}: precision must be one of {PRECISIONS}")
    _require(data.get("warp") in WARPS, f"{where}: warp must be one of {WARPS}")
    convention = data.get("warp_convention", DEFAULT_WARP_CONVENTION)
    _require(
        convention in WARP_CONVENTIONS,
        f"{where}: warp convention {convention!r} is unknown to this version of superslomo-trt "
        f"(it knows {', '.join(WARP_CONVENTIONS)}); upgrade superslomo-trt or re-export the model "
        "with this one",
    )
    _require(data.get("io") in IO_TYPES, f"{where}: io must be one of {IO_TYPES}")
    scales = data.get("scales", FULL_SCALES)
    _require(
        isinstance(scales, dict) and set(scales) == set(GRAPHS) and all(v in SCALES for v in scales.values()),
        f"{where}: scales {scales!r} are unknown to this version of superslomo-trt (it knows "
        f"{', '.join(map(str, SCALES))} per graph); upgrade superslomo-trt or re-export the model "
        "with this one",
    )
    _require(
        data.get("size_multiple", SIZE_MULTIPLE) == size_multiple(scales),
        f"{where}: size_multiple must be {size_multiple(scales)} for scales {scales}, "
        f"got {data.get('size_multiple')!r}",
    )
    _require(isinstance(data.get("opset"), int), f"{where}: opset must be an integer")
    graphs = data.get("graphs")
    _require(
        isinstance(graphs, dict) and set(graphs) == set(GRAPHS), f"{where}: graphs must be exactly {GRAPHS}"
    )
    entries = {}
    for name, entry in graphs.items():
        _require(isinstance(entry, dict), f"{where}: graphs.{name} must be an object")
        file = entry.get("file")
        # Only a plain file name in the manifest's own folder: never a path to elsewhere.
        _require(
            isinstance(file, str) and file and Path(file).name == file and file not in (".", ".."),
            f"{where}: graphs.{name}.file must be a plain file name in the same folder, got {file!r}",
        )
        _require(
            isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64,
            f"{where}: graphs.{name}.sha256 missing",
        )
        _require(entry.get("precision", "fp32") in PRECISIONS, f"{where}: graphs.{name}.precision invalid")
        entries[name] = GraphEntry(
            file=file,
            sha256=entry["sha256"],
            inputs=list(entry.get("inputs", [])),
            outputs=list(entry.get("outputs", [])),
            precision=entry.get("precision", "fp32"),
        )
    known = {f for f in Manifest.__dataclass_fields__} - {"graphs"}
    kwargs = {k: v for k, v in data.items() if k in known}
    return Manifest(graphs=entries, **kwargs)


def read_manifest(folder: str | os.PathLike, verify_files: bool = True) -> Manifest:
    folder = Path(folder)
    if not folder.is_dir():
        raise ManifestError(f"model folder not found: {folder}")
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{folder} has no {MANIFEST_NAME}; make it with `slomo export` (or build-engine)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ManifestError(f"{path}: unreadable manifest ({error})") from None
    manifest = parse_manifest(data, str(path))
    if verify_files:
        for name, entry in manifest.graphs.items():
            file = folder / entry.file
            if not file.is_file():
                raise ManifestError(f"{folder}: {entry.file} (the {name} graph) is missing")
            if file_sha256(file) != entry.sha256:
                raise ManifestError(
                    f"{file} does not match its manifest (sha256 differs): the folder was modified "
                    "after it was written; re-run the command that made it"
                )
            if manifest.kind == "onnx":
                # The sha256 covers the graph file, not the external data files it may name.
                from superslomo.contracts.external_data import check_external_data

                check_external_data(file, folder)
    return manifest


def write_manifest(folder: str | os.PathLike, manifest: Manifest) -> Path:
    return atomic_write_text(Path(folder) / MANIFEST_NAME, manifest.to_json() + "\n")
