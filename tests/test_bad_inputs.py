"""The bad-input catalogue (issue 11): malformed files and absurd options for every command, and
bad frames for the runtime API, each in one table row.

A row names the exit code (DESIGN.md: 0 ok, 1 a check failed, 2 usage or input error) and a piece
of the message. Every row also checks that there is no traceback, that our own errors are one
line, and that nothing half-written is left in the output folder or beside the inputs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from videoclips import make_clip, scene_frame

from superslomo.errors import SloMoError
from tests.conftest import public_format_checkpoint
from tests.test_parity import run_cli


def _png(path: Path, image: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)  # the mode follows the array: L, RGBA, I;16
    return path


def _reseal(folder: Path) -> None:
    """Recompute the graphs' sha256 in the manifest, so that only the tampering under test (not
    the checksum) is what a command can object to."""
    from superslomo.contracts.files import file_sha256

    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    for entry in data["graphs"].values():
        entry["sha256"] = file_sha256(folder / entry["file"])
    path.write_text(json.dumps(data))


def _model_variants(good: Path, root: Path) -> dict[str, Path]:
    """Copies of an exported folder, each broken one way."""
    variants = {}

    def copy(name: str) -> Path:
        variants[name] = shutil.copytree(good, root / name)
        return variants[name]

    (copy("manifest_not_json") / "manifest.json").write_text("{ this is not json")
    (copy("manifest_a_list") / "manifest.json").write_text("[1, 2, 3]")
    folder = copy("manifest_one_graph")
    data = json.loads((folder / "manifest.json").read_text())
    del data["graphs"]["interp"]
    (folder / "manifest.json").write_text(json.dumps(data))
    folder = copy("manifest_escapes")
    data = json.loads((folder / "manifest.json").read_text())
    data["graphs"]["flow"]["file"] = "../onnx/flow.onnx"
    (folder / "manifest.json").write_text(json.dumps(data))
    folder = copy("graph_altered")
    raw = bytearray((folder / "flow.onnx").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (folder / "flow.onnx").write_bytes(bytes(raw))
    folder = copy("graph_garbage")  # resealed: the sha256 matches, the file is not ONNX
    (folder / "flow.onnx").write_bytes(b"\x07garbage, not a protobuf" * 40)
    _reseal(folder)
    folder = copy("graph_truncated")  # resealed: a valid start that stops mid-message
    (folder / "flow.onnx").write_bytes((good / "flow.onnx").read_bytes()[:5000])
    _reseal(folder)
    folder = copy("graph_is_png")
    (folder / "flow.onnx").write_bytes((root / "picture.png").read_bytes())
    _reseal(folder)
    variants["external_escape"] = external_data_folder(good, root / "external_escape", "../secret.bin")
    return variants


def external_data_folder(good: Path, folder: Path, location: str, symlink_to: Path | None = None) -> Path:
    """A copy of `good` whose flow graph keeps one weight in an external file at `location`
    (relative to the folder, or absolute), with the manifest resealed."""
    import onnx

    shutil.copytree(good, folder)
    model = onnx.load(str(folder / "flow.onnx"))
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    target = Path(location) if os.path.isabs(location) else folder / location
    if symlink_to is not None:
        symlink_to.write_bytes(tensor.raw_data)
        target.symlink_to(symlink_to)
    else:
        target.write_bytes(tensor.raw_data)
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    del tensor.external_data[:]
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    (folder / "flow.onnx").write_bytes(model.SerializeToString())
    _reseal(folder)
    return folder


@pytest.fixture(scope="module")
def files(small_model, tmp_path_factory) -> dict[str, str]:
    """Every input the table refers to, made once: `{name}` in a row's argv is replaced by it."""
    import copy

    import torch

    from superslomo.export import ExportOptions, export_model
    from superslomo.model import save_checkpoint, super_slomo

    root = tmp_path_factory.mktemp("bad_inputs")
    ckpt = root / "small.safetensors"
    save_checkpoint(small_model, ckpt)
    public = public_format_checkpoint(small_model, root / "small.ckpt")
    onnx_dir = root / "onnx"
    export_model(small_model, onnx_dir, ExportOptions(), source={"checkpoint": "small.safetensors"})
    paths: dict[str, Path] = {"ckpt": ckpt, "public": public, "onnx": onnx_dir}
    broken = copy.deepcopy(small_model)
    with torch.no_grad():
        broken.interp_net.conv1.weight[0, 0, 0, 0] = float("nan")
    save_checkpoint(broken, root / "nan.safetensors")
    save_checkpoint(small_model, root / "int.safetensors", dtype=torch.int32)
    paths["nan_weights"], paths["int_weights"] = root / "nan.safetensors", root / "int.safetensors"
    paths["two_widths"] = public_format_checkpoint(
        small_model, root / "two_widths.ckpt", state_dictAT=super_slomo(width=8).interp_net.state_dict()
    )
    paths["empty"] = root / "empty.ckpt"
    paths["empty"].write_bytes(b"")
    paths["truncated_ckpt"] = root / "truncated.ckpt"
    paths["truncated_ckpt"].write_bytes(public.read_bytes()[: public.stat().st_size // 2])
    paths["truncated_st"] = root / "truncated.safetensors"
    paths["truncated_st"].write_bytes(Path(ckpt).read_bytes()[:-1000])
    paths["png"] = _png(root / "picture.png", scene_frame(0, 64, 64))
    paths["png_as_ckpt"] = root / "picture.ckpt"
    shutil.copyfile(paths["png"], paths["png_as_ckpt"])
    paths["text_video"] = root / "notes.mp4"
    paths["text_video"].write_text("this is a shopping list, not a video\n")
    paths["ckpt_video"] = root / "weights.mp4"
    shutil.copyfile(ckpt, paths["ckpt_video"])
    paths["empty_video"] = root / "empty.mp4"
    paths["empty_video"].write_bytes(b"")
    paths["clip"] = make_clip(root / "good.mp4", frames=4, size=(64, 48))
    paths["one_frame"] = make_clip(root / "one.mp4", frames=1, size=(64, 48))
    # A transport stream cut after its tables: a video stream that never delivers a frame.
    whole = make_clip(root / "whole.ts", frames=4, size=(64, 48))
    paths["zero_frames"] = root / "zero.ts"
    paths["zero_frames"].write_bytes(whole.read_bytes()[:752])
    whole.unlink()
    # A transport stream has no index: cut mid-way, it still plays up to the cut.
    whole = make_clip(root / "whole.ts", frames=12, size=(64, 48))
    paths["cut_ts"] = root / "cut.ts"
    paths["cut_ts"].write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    whole.unlink()
    paths["cut_mp4"] = root / "cut.mp4"  # the index (moov) is at the end: a cut file has none
    paths["cut_mp4"].write_bytes(paths["clip"].read_bytes()[: paths["clip"].stat().st_size // 2])
    paths["empty_dir"] = root / "empty_dir"
    paths["empty_dir"].mkdir()
    paths["notes"] = root / "notes.txt"
    paths["notes"].write_text("not an npz\n")
    paths["fake_npz"] = root / "fake.npz"
    np.savez(paths["fake_npz"], frame0=np.zeros((2, 32, 32, 3), np.uint8))
    paths["cut_npz"] = root / "cut.npz"
    paths["cut_npz"].write_bytes(paths["fake_npz"].read_bytes()[:300])

    # Frames in the modes real files come in besides RGB: grey, RGBA, 16-bit grey.
    rgb = [scene_frame(i, 64, 64) for i in range(3)]
    grey = [np.asarray(f.mean(axis=2), np.uint8) for f in rgb]
    variants = {
        "grey": grey,
        "rgba": [np.dstack([f, np.full(f.shape[:2], 128, np.uint8)]) for f in rgb],
        "grey16": [g.astype(np.uint16) * 257 for g in grey],
    }
    for kind, images in variants.items():
        for i, image in enumerate(images):
            _png(root / kind / "seq" / f"frame{i}.png", image)
            _png(root / f"{kind}_pair" / f"{i}.png", image)
    _png(root / "mixed" / "seq" / "frame0.png", rgb[0])
    _png(root / "mixed" / "seq" / "frame1.png", rgb[1][:32])
    _png(root / "mixed" / "seq" / "frame2.png", rgb[2])
    shutil.copytree(root / "grey" / "seq", root / "cut_png" / "seq")
    frame = root / "cut_png" / "seq" / "frame2.png"
    frame.write_bytes(frame.read_bytes()[:100])
    paths.update({k: root / k for k in ("grey", "rgba", "grey16", "mixed", "cut_png")})
    for kind in variants:
        paths[f"{kind}_0"] = root / f"{kind}_pair" / "0.png"
        paths[f"{kind}_1"] = root / f"{kind}_pair" / "1.png"
    paths.update(_model_variants(onnx_dir, root))
    return {name: str(path) for name, path in paths.items()} | {"root": str(root)}


@dataclass(frozen=True)
class Bad:
    name: str
    argv: tuple[str, ...]  # `{file}` fields from the `files` fixture; `{out}`: an empty folder
    code: int
    message: str  # in our one-line stderr message; in stdout for exit 0
    usage: bool = False  # typer/click's own usage error (its boxed, multi-line text)
    leaves: tuple[str, ...] = ()  # what a successful run writes into {out}
    marks: tuple = ()


def bad(
    name: str,
    argv: str,
    code: int,
    message: str,
    usage: bool = False,
    leaves: tuple[str, ...] = (),
    marks: tuple = (),
) -> Bad:
    return Bad(name, tuple(argv.split()), code, message, usage, leaves, marks)


def _tensorrt_missing() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return True
    return False


INTERP = "interpolate {clip} -o {out}/o.mp4 --model {onnx}"
PARITY = "parity {onnx} --against {ckpt}"
EVAL = "eval --model {onnx} --data"
CALIBRATE = "calibrate --data {clip} -o {out}/c.npz --model {onnx} --pairs 2 --size 64x64"
QUANTIZE = "quantize {onnx} -o {out}/int8 --calib"
BUILD = "build-engine {onnx} -o {out}/engines"
BENCH = "bench --backends onnxruntime --sizes 64x64 --workdir {out}/bench"
TRAIN = "train --data {clip} -o {out}/t.safetensors --width 4 --crop 32 --steps 1 --batch 1"

CASES = [
    # -- checkpoints: empty, truncated, of the wrong kind -----------------------------------
    bad("info empty file", "info {empty}", 2, "not a checkpoint (file is 0 bytes)"),
    bad("info png as checkpoint", "info {png_as_ckpt}", 2, "not a Super SloMo checkpoint"),
    bad("info truncated public checkpoint", "info {truncated_ckpt}", 2, "truncated or corrupt"),
    bad("info folder as checkpoint", "info {onnx}", 2, "is a directory"),
    bad("info missing", "info {root}/nope.ckpt", 2, "checkpoint not found"),
    bad("info NaN weights", "info {nan_weights}", 2, "contains NaN or Inf"),
    bad("info integer weights", "info {int_weights}", 2, "expected float"),
    bad("info nets of two widths", "info {two_widths}", 2, "the network expects"),
    bad("convert truncated safetensors", "convert {truncated_st} -o {out}/c.safetensors", 2, "truncated"),
    bad("convert png as checkpoint", "convert {png_as_ckpt} -o {out}/c.safetensors", 2, "not a Super SloMo"),
    bad("convert wrong suffix", "convert {ckpt} -o {out}/c.pt", 2, "must end in .safetensors"),
    bad(
        "convert folder missing",
        "convert {ckpt} -o {out}/no/c.safetensors",
        2,
        "output folder does not exist",
    ),
    bad("convert onto itself", "convert {ckpt} -o {ckpt}", 2, "overwrite the input"),
    # -- export: absurd options, bad checkpoints ----------------------------------------------
    bad("export opset 21", "export {ckpt} -o {out}/x --opset 21", 2, "opset 21 is refused"),
    bad("export opset 11", "export {ckpt} -o {out}/x --opset 11", 2, "opset 11 is too old"),
    bad(
        "export opset not a number",
        "export {ckpt} -o {out}/x --opset seventeen",
        2,
        "Invalid value for '--opset'",
        usage=True,
    ),
    bad("export precision int8", "export {ckpt} -o {out}/x --precision int8", 2, "unknown precision 'int8'"),
    bad("export io uint16", "export {ckpt} -o {out}/x --io uint16", 2, "unknown io 'uint16'"),
    bad("export png as checkpoint", "export {png_as_ckpt} -o {out}/x", 2, "not a Super SloMo checkpoint"),
    bad("export empty checkpoint", "export {empty} -o {out}/x", 2, "not a checkpoint"),
    # -- interpolate: videos that are not, have no frames, or end early; absurd options ------
    bad(
        "interpolate text as video",
        "interpolate {text_video} -o {out}/o.mp4 --model {onnx}",
        2,
        "notes.mp4 as a video: Invalid data found when processing input",
    ),
    bad(
        "interpolate checkpoint as video",
        "interpolate {ckpt_video} -o {out}/o.mp4 --model {onnx}",
        2,
        "cannot open",
    ),
    bad(
        "interpolate empty video", "interpolate {empty_video} -o {out}/o.mp4 --model {onnx}", 2, "cannot open"
    ),
    bad("interpolate truncated mp4", "interpolate {cut_mp4} -o {out}/o.mp4 --model {onnx}", 2, "cannot open"),
    bad(
        "interpolate one frame", "interpolate {one_frame} -o {out}/o.mp4 --model {onnx}", 2, "only one frame"
    ),
    bad(
        "interpolate stream cut short",
        "interpolate {cut_ts} -o {out}/o.mp4 --model {onnx}",
        0,
        "frames in",
        leaves=("o.mp4",),
    ),
    bad(
        "interpolate zero frames",
        "interpolate {zero_frames} -o {out}/o.mp4 --model {onnx}",
        2,
        "no video frames",
    ),
    bad("interpolate factor 0", INTERP + " --factor 0", 2, "--factor must be between 2 and 64, got 0"),
    bad("interpolate factor 1000000", INTERP + " --factor 1000000", 2, "--factor must be between 2 and 64"),
    bad(
        "interpolate factor not a number",
        INTERP + " --factor two",
        2,
        "Invalid value for '--factor'",
        usage=True,
    ),
    bad("interpolate negative fps", INTERP + " --fps -30", 2, "frame rate must be in (0, 1000]"),
    bad("interpolate fps zero over zero", INTERP + " --fps 0/0", 2, "not a frame rate"),
    bad("interpolate crf 99", INTERP + " --crf 99", 2, "--crf must be between 0 and 51, got 99"),
    bad("interpolate crf nan", INTERP + " --crf nan", 2, "--crf must be between 0 and 51"),
    bad("interpolate max-size 0x0", INTERP + " --max-size 0x0", 2, "size must be positive"),
    bad("interpolate max-size garbage", INTERP + " --max-size huge", 2, "sizes are WIDTHxHEIGHT"),
    bad(
        "interpolate scene threshold 2",
        INTERP + " --scene-threshold 2",
        2,
        "--scene-threshold must be between",
    ),
    bad("interpolate negative start", INTERP + " --start -1", 2, "--start must be >= 0"),
    bad("interpolate zero duration", INTERP + " --duration 0", 2, "--duration > 0"),
    bad("interpolate unknown backend", INTERP + " --backend cuda", 2, "unknown backend 'cuda'"),
    bad("interpolate unknown preset", INTERP + " --preset warp9", 2, "unknown --preset 'warp9' for libx264"),
    bad(
        "interpolate existing output",
        "interpolate {clip} -o {one_frame} --model {onnx}",
        2,
        "exists; pass -y/--overwrite to replace it",
    ),
    bad(
        "interpolate codec the container cannot hold",
        INTERP.replace("o.mp4", "o.webm") + " --codec libx264",
        2,
        ".webm files cannot hold libx264 video",
    ),
    bad(
        "interpolate frame folder",
        "interpolate {grey}/seq -o {out}/o.mp4 --model {onnx}",
        0,
        "3 frames in, 6 out",
        leaves=("o.mp4",),
    ),
    bad(
        "interpolate frames of mixed sizes",
        "interpolate {mixed}/seq -o {out}/o.mp4 --model {onnx}",
        2,
        "the frames of a sequence must be one size",
    ),
    bad(
        "interpolate pattern matching nothing",
        "interpolate {grey}/seq/%04d.png -o {out}/f --model {onnx}",
        2,
        "no files match",
    ),
    bad(
        "interpolate input fps for a video",
        INTERP + " --input-fps 30",
        2,
        "--input-fps is for image-sequence input",
    ),
    bad(
        "interpolate png as model",
        "interpolate {clip} -o {out}/o.mp4 --model {png_as_ckpt}",
        2,
        "not a Super SloMo checkpoint",
    ),
    # -- model folders: malformed manifest, paths out of the folder, altered graphs ---------
    bad(
        "model manifest not json",
        "interpolate {clip} -o {out}/o.mp4 --model {manifest_not_json}",
        2,
        "unreadable manifest",
    ),
    bad(
        "model manifest a list",
        "interpolate {clip} -o {out}/o.mp4 --model {manifest_a_list}",
        2,
        "not a JSON object",
    ),
    bad(
        "model manifest one graph",
        "eval --model {manifest_one_graph} --data {grey}",
        2,
        "graphs must be exactly ('flow', 'interp')",
    ),
    bad(
        "model manifest escapes folder",
        "interpolate {clip} -o {out}/o.mp4 --model {manifest_escapes}",
        2,
        "must be a plain file name in the same folder",
    ),
    bad(
        "model graph altered",
        "interpolate {clip} -o {out}/o.mp4 --model {graph_altered}",
        2,
        "does not match its manifest",
    ),
    bad(
        "model graph garbage",
        "interpolate {clip} -o {out}/o.mp4 --model {graph_garbage}",
        2,
        "is not an ONNX model",
    ),
    bad(
        "model graph truncated",
        "interpolate {clip} -o {out}/o.mp4 --model {graph_truncated}",
        2,
        "is not an ONNX model",
    ),
    bad(
        "model graph is a png",
        "interpolate {clip} -o {out}/o.mp4 --model {graph_is_png}",
        2,
        "is not an ONNX model",
    ),
    bad(
        "model external data escapes",
        "interpolate {clip} -o {out}/o.mp4 --model {external_escape}",
        2,
        "outside its folder",
    ),
    bad(
        "model empty folder",
        "interpolate {clip} -o {out}/o.mp4 --model {empty_dir}",
        2,
        "has no manifest.json",
    ),
    bad(
        "quantize external data escapes",
        "quantize {external_escape} -o {out}/int8 --calib {fake_npz}",
        2,
        "outside its folder",
    ),
    bad(
        "quantize garbage graph",
        "quantize {graph_garbage} -o {out}/int8 --calib {fake_npz}",
        2,
        "is not an ONNX model",
    ),
    bad(
        "build-engine external data escapes",
        "build-engine {external_escape} -o {out}/engines",
        2,
        "outside its folder",
    ),
    bad(
        "build-engine altered graph",
        "build-engine {graph_altered} -o {out}/engines",
        2,
        "does not match its manifest",
    ),
    bad("parity external data escapes", "parity {external_escape} --against {ckpt}", 2, "outside its folder"),
    bad(
        "calibrate manifest escapes",
        "calibrate --data {clip} -o {out}/c.npz --model {manifest_escapes}",
        2,
        "plain file name",
    ),
    # -- parity -------------------------------------------------------------------------------
    bad("parity grey frames", PARITY + " --data {grey_0} --data {grey_1}", 0, "parity: pass"),
    bad("parity rgba frames", PARITY + " --data {rgba_0} --data {rgba_1}", 0, "parity: pass"),
    bad("parity 16-bit frames", PARITY + " --data {grey16_0} --data {grey16_1}", 0, "parity: pass"),
    bad("parity pairs 0", PARITY + " --data {grey_0} --data {grey_1} --pairs 0", 2, "--pairs must be >= 1"),
    bad("parity sizes 0x0", PARITY + " --sizes 0x0", 2, "out of range"),
    bad("parity one frame", PARITY + " --data {grey_0}", 2, "needs at least two frames"),
    bad("parity text as video", PARITY + " --data {text_video}", 2, "cannot open video"),
    bad("parity one-frame video", PARITY + " --data {one_frame}", 2, "needs at least two frames"),
    bad(
        "parity truncated png",
        PARITY + " --data {cut_png}/seq/frame2.png --data {grey_0}",
        2,
        "cannot read image",
    ),
    bad("parity negative atol", PARITY + " --atol -1", 2, "--atol must be a finite number >= 0"),
    bad("parity nan rtol", PARITY + " --rtol nan", 2, "--rtol must be a finite number >= 0"),
    bad(
        "parity png as reference", "parity {onnx} --against {png_as_ckpt}", 2, "not a Super SloMo checkpoint"
    ),
    bad(
        "parity report folder missing",
        PARITY + " --report {out}/no/r.json",
        2,
        "report folder does not exist",
    ),
    # -- eval: grey / alpha / 16-bit frames are converted, broken ones refused ---------------
    bad("eval grey frames", EVAL + " {grey}", 0, "eval: 1 triplet(s)"),
    bad("eval rgba frames", EVAL + " {rgba}", 0, "eval: 1 triplet(s)"),
    bad("eval 16-bit frames", EVAL + " {grey16}", 0, "eval: 1 triplet(s)"),
    bad("eval frames of different sizes", EVAL + " {mixed}", 2, "frames of a triplet differ in size"),
    bad("eval truncated png", EVAL + " {cut_png}", 2, "cannot read image"),
    bad("eval limit 0", EVAL + " {grey} --limit 0", 2, "--limit must be >= 1"),
    bad("eval empty folder", EVAL + " {empty_dir}", 2, "cannot tell the layout"),
    bad("eval one-frame video", EVAL + " {one_frame}", 2, "holds no triplets"),
    bad("eval text as video", EVAL + " {text_video}", 2, "as a video"),
    bad("eval unknown layout", EVAL + " {grey} --layout kitti", 2, "unknown layout 'kitti'"),
    bad(
        "eval report folder missing",
        EVAL + " {grey} --report {out}/no/r.json",
        2,
        "report folder does not exist",
    ),
    # -- calibrate ----------------------------------------------------------------------------
    bad("calibrate size 0x0", CALIBRATE + " --size 0x0", 2, "size must be positive"),
    bad("calibrate size not multiple of 32", CALIBRATE + " --size 70x64", 2, "multiples of 32"),
    bad("calibrate pairs 0", CALIBRATE + " --pairs 0", 2, "--pairs must be"),
    bad(
        "calibrate one-frame video",
        "calibrate --data {one_frame} -o {out}/c.npz --model {onnx} --pairs 2 --size 64x64",
        2,
        "hold 0 frame triplets",
    ),
    bad(
        "calibrate text as video",
        "calibrate --data {text_video} -o {out}/c.npz --model {onnx} --pairs 2 --size 64x64",
        2,
        "cannot open",
    ),
    bad(
        "calibrate wrong suffix",
        "calibrate --data {clip} -o {out}/c.bin --model {onnx} --pairs 2 --size 64x64",
        2,
        "must be a .npz file",
    ),
    # -- quantize -----------------------------------------------------------------------------
    bad("quantize empty calib", QUANTIZE + " {empty}", 2, "is not a calibration set"),
    bad("quantize text calib", QUANTIZE + " {notes}", 2, "is not a calibration set"),
    bad("quantize npz missing arrays", QUANTIZE + " {fake_npz}", 2, "missing"),
    bad("quantize truncated npz", QUANTIZE + " {cut_npz}", 2, "is not a calibration set"),
    bad("quantize unknown method", QUANTIZE + " {fake_npz} --method minmax", 2, "unknown method 'minmax'"),
    bad(
        "quantize percentile 0",
        QUANTIZE + " {fake_npz} --percentile 0",
        2,
        "--percentile must be in (0, 100]",
    ),
    bad(
        "quantize graphs bogus",
        QUANTIZE + " {fake_npz} --graphs warp",
        2,
        "--graphs must name flow and/or interp",
    ),
    bad(
        "quantize checkpoint as folder",
        "quantize {ckpt} -o {out}/int8 --calib {fake_npz}",
        2,
        "model folder not found",
    ),
    # -- build-engine: shapes checked before any GPU work -----------------------------------
    bad("build-engine height not multiple of 32", BUILD + " --min 1x65x64", 2, "multiple of 32"),
    bad("build-engine width 0", BUILD + " --min 1x64x0", 2, "multiple of 32"),
    bad("build-engine batch 0", BUILD + " --min 0x64x64", 2, "batch must be at least 1"),
    bad("build-engine opt above max", BUILD + " --opt 8x64x64 --max 4x64x64", 2, "need min <= opt <= max"),
    bad("build-engine not NxHxW", BUILD + " --max 1920x1080", 2, "must be NxHxW"),
    bad("build-engine profiles 0", BUILD + " --profiles 0", 2, "--profiles must be at least 1"),
    bad("build-engine workspace 0", BUILD + " --workspace 0", 2, "--workspace must be a positive"),
    bad("build-engine builder level 9", BUILD + " --builder-level 9", 2, "--builder-level must be 0..5"),
    bad(
        "build-engine without TensorRT",
        BUILD,
        2,
        "TensorRT is not importable",
        marks=(
            pytest.mark.skipif(not _tensorrt_missing(), reason="TensorRT is installed: this would build"),
        ),
    ),
    bad(
        "build-engine from a checkpoint", "build-engine {ckpt} -o {out}/engines", 2, "model folder not found"
    ),
    # -- bench --------------------------------------------------------------------------------
    # -- serving: a repository from a bad folder, a server with impossible settings ----------
    bad("triton-repo missing folder", "triton-repo {root}/nope -o {out}/repo", 2, "model folder not found"),
    bad("triton-repo instances 0", "triton-repo {onnx} -o {out}/repo --instances 0", 2, "--instances must"),
    bad("serve missing folder", "serve {root}/nope", 2, "model folder not found"),
    bad("serve port 0", "serve {onnx} --http-port 0", 2, "--http-port must be 1..65535"),
    bad("serve no such server", "serve {onnx} --tritonserver {root}/nope", 2, "tritonserver not found"),
    bad("bench size 0x0", BENCH.replace("64x64", "0x0"), 2, "sizes must be at least 32x32"),
    bad("bench times 2", BENCH + " --times 2", 2, "--times must be one of 1, 3, 7"),
    bad("bench iters 0", BENCH + " --iters 0", 2, "--iters >= 1"),
    bad(
        "bench unknown backend",
        "bench --backends tensorrt-fp8 --workdir {out}/bench",
        2,
        "unknown backend 'tensorrt-fp8'",
    ),
    bad("bench png as model", BENCH + " --model {png_as_ckpt}", 2, "not a Super SloMo checkpoint"),
    bad("bench json folder missing", BENCH + " --json {out}/no/b.json", 2, "report folder does not exist"),
    # -- train --------------------------------------------------------------------------------
    bad(
        "train crop not multiple of 32",
        TRAIN.replace("--crop 32", "--crop 100"),
        2,
        "--crop must be a positive multiple of 32",
    ),
    bad("train steps 0", TRAIN.replace("--steps 1", "--steps 0"), 2, "must be positive"),
    bad("train wrong suffix", TRAIN.replace("t.safetensors", "t.pt"), 2, "must end in .safetensors"),
    bad("train negative learning rate", TRAIN + " --lr -1", 2, "--lr must be"),
    bad("train nan learning rate", TRAIN + " --lr nan", 2, "--lr must be"),
    bad("train negative threads", TRAIN + " --threads -2", 2, "--threads must be"),
    bad("train one-frame video", TRAIN.replace("{clip}", "{one_frame}"), 2, "no usable training data"),
    bad("train text as video", TRAIN.replace("{clip}", "{text_video}"), 2, "cannot open"),
    bad("train png as resume", TRAIN + " --resume {png_as_ckpt}", 2, "not a Super SloMo checkpoint"),
    # -- campaign, scales, gst-env --------------------------------------------------------------
    bad("campaign minutes 0", "campaign --minutes 0", 2, "--minutes must be positive, got 0"),
    bad("campaign minutes nan", "campaign --minutes nan", 2, "--minutes must be positive, got nan"),
    bad("campaign minutes a word", "campaign --minutes soon", 2, "Invalid value for '--minutes'", usage=True),
    bad(
        "scales missing checkpoint", "scales {root}/nope.safetensors --data {clip}", 2, "checkpoint not found"
    ),
    bad("scales unknown band", "scales {ckpt} --data {clip} --bands 999p", 2, "unknown band 999p"),
    bad(
        "scales on an evaluation set",
        "scales {ckpt} --data {root}/ucf101/clip.mp4",
        2,
        "ucf101 evaluation set",
    ),
    bad("gst-env extra argument", "gst-env now", 2, "Got unexpected extra argument", usage=True),
    bad("train validation missing", TRAIN + " --validation {root}/nope", 2, "validation data not found"),
]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name, marks=case.marks) for case in CASES])
def test_bad_input(case: Bad, files: dict[str, str], tmp_path: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(tmp_path)  # so that files written relative to the working folder are seen too
    argv = [arg.format(out=out, **files) for arg in case.argv]
    inputs_before = _tree(Path(files["root"]))
    code, stdout, stderr = run_cli(capsys, *argv)
    assert "Traceback" not in stderr + stdout and "[Errno" not in stderr, stderr
    assert code == case.code, f"exit {code}, expected {case.code}; stderr: {stderr!r}"
    if case.code == 0:
        assert case.message in stdout, stdout
    elif case.usage:
        text = " ".join(re.sub("[│╭╮╰╯─]", " ", stderr).split())  # unwrap click's box
        assert case.message in text, stderr
    else:
        lines = [line for line in stderr.splitlines() if not line.startswith(("backend:", "note:"))]
        assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line: {stderr!r}"
        assert case.message in lines[0], lines[0]
    assert sorted(p.name for p in out.iterdir()) == sorted(case.leaves), (
        "partial output or temp files left behind"
    )
    assert _tree(Path(files["root"])) == inputs_before, "files appeared beside the inputs"
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "files appeared in the working folder"


def test_the_catalogue_covers_every_command() -> None:
    from superslomo.cli import app

    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    covered = {case.argv[0] for case in CASES}
    assert commands <= covered, commands - covered
    assert len(CASES) >= 30 and len({case.name for case in CASES}) == len(CASES)


# -- the runtime API: frames an app may hand over ------------------------------------------
@pytest.fixture(scope="module")
def interpolator(files):
    from superslomo.runtime import Interpolator

    with Interpolator.from_dir(files["onnx"], backend="onnxruntime") as interp:
        yield interp


GOOD = np.zeros((40, 56, 3), np.uint8)
_nan = np.full((40, 56, 3), 0.5, np.float32)
_nan[3, 4, 1] = np.nan

FRAME_CASES = [
    ("float frame", np.zeros((40, 56, 3), np.float32), GOOD, [0.5], "must be uint8, got float32"),
    ("float frame with NaN", _nan, GOOD, [0.5], "must be uint8, got float32"),
    ("16-bit frame", np.zeros((40, 56, 3), np.uint16), GOOD, [0.5], "must be uint8, got uint16"),
    ("grey HxW", np.zeros((40, 56), np.uint8), GOOD, [0.5], "must be HxWx3 RGB, got shape (40, 56)"),
    ("grey HxWx1", np.zeros((40, 56, 1), np.uint8), GOOD, [0.5], "must be HxWx3 RGB"),
    (
        "RGBA HxWx4",
        GOOD,
        np.zeros((40, 56, 4), np.uint8),
        [0.5],
        "frame1 must be HxWx3 RGB, got shape (40, 56, 4)",
    ),
    ("CHW layout", np.zeros((3, 40, 56), np.uint8), GOOD, [0.5], "must be HxWx3 RGB"),
    ("batch of frames", np.zeros((1, 40, 56, 3), np.uint8), GOOD, [0.5], "must be HxWx3 RGB"),
    ("empty frame", np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0, 3), np.uint8), [0.5], "is empty"),
    ("list, not array", [[0, 0, 0]], GOOD, [0.5], "must be a numpy array, got list"),
    (
        "mismatched sizes",
        GOOD,
        np.zeros((40, 64, 3), np.uint8),
        [0.5],
        "frames differ in size: 56x40 vs 64x40",
    ),
    ("time 0", GOOD, GOOD, [0.0], "strictly between 0 and 1, got 0.0"),
    ("time 1", GOOD, GOOD, [0.25, 1.0], "strictly between 0 and 1, got 1.0"),
    ("time negative", GOOD, GOOD, [-0.5], "strictly between 0 and 1"),
    ("time NaN", GOOD, GOOD, [float("nan")], "strictly between 0 and 1, got nan"),
    ("time not a number", GOOD, GOOD, ["half"], "times must be numbers, got 'half'"),
    ("times not a list", GOOD, GOOD, 0.5, "times must be a sequence of numbers, got float"),
    ("empty times, bad frame", np.zeros((40, 56), np.uint8), GOOD, [], "must be HxWx3 RGB"),
]


@pytest.mark.parametrize(
    "frame0, frame1, times, message", [c[1:] for c in FRAME_CASES], ids=[c[0] for c in FRAME_CASES]
)
def test_bad_frames_for_the_runtime(interpolator, frame0, frame1, times, message) -> None:
    with pytest.raises(SloMoError, match=re.escape(message)) as error:
        interpolator.interpolate(frame0, frame1, times)
    assert "\n" not in str(error.value)


def test_awkward_but_valid_frames_work(interpolator) -> None:
    # Views an app naturally makes (BGR->RGB flip, a crop, Fortran order) are valid frames.
    image = scene_frame(2, 70, 50)
    views = {"flipped": image[:, :, ::-1], "cropped": image[5:45, 3:59], "fortran": np.asfortranarray(image)}
    for name, view in views.items():
        out = interpolator.interpolate(view, view, [0.5])
        assert out[0].shape == view.shape and out[0].dtype == np.uint8, name
    assert interpolator.interpolate(image, image, []) == []  # no times asked, none given


# -- ONNX external data that points out of its folder ----------------------------------------
@pytest.fixture(scope="module")
def escaping_folders(files, tmp_path_factory) -> dict[str, Path]:
    good, root = Path(files["onnx"]), tmp_path_factory.mktemp("external")
    outside = root / "outside"
    outside.mkdir()
    return {
        "parent": external_data_folder(good, root / "parent", "../secret.bin"),
        "absolute": external_data_folder(good, root / "absolute", str(outside / "weights.bin")),
        "symlink": external_data_folder(
            good, root / "symlink", "weights.bin", symlink_to=outside / "target.bin"
        ),
    }


@pytest.mark.parametrize("kind", ["parent", "absolute", "symlink"])
def test_external_data_outside_the_folder_is_refused(escaping_folders, kind) -> None:
    from superslomo.contracts.manifest import read_manifest
    from superslomo.runtime.onnxruntime_backend import OnnxRuntimeBackend

    folder = escaping_folders[kind]
    with pytest.raises(SloMoError, match="outside its folder") as error:
        read_manifest(folder)
    assert "\n" not in str(error.value)
    # A caller that builds the manifest itself does not get past the backend either.
    with pytest.raises(SloMoError, match="outside its folder"):
        OnnxRuntimeBackend(folder, manifest=read_manifest(folder, verify_files=False)).activate()


def test_external_data_inside_the_folder_still_runs(files, interpolator, tmp_path) -> None:
    from superslomo.runtime import Interpolator

    folder = external_data_folder(Path(files["onnx"]), tmp_path / "inside", "weights.bin")
    frame0, frame1 = scene_frame(0, 64, 48), scene_frame(3, 64, 48)
    with Interpolator.from_dir(folder, backend="onnxruntime") as interp:
        got = interp.interpolate(frame0, frame1, [0.5], as_float=True)[0]
    np.testing.assert_array_equal(got, interpolator.interpolate(frame0, frame1, [0.5], as_float=True)[0])


def test_external_locations_are_found_wherever_a_tensor_can_be(files) -> None:
    from onnx import TensorProto, helper

    from superslomo.contracts.external_data import external_locations

    def tensor(name: str, location: str) -> TensorProto:
        value = helper.make_tensor(name, TensorProto.FLOAT, [1], [1.0])
        value.data_location = TensorProto.EXTERNAL
        entry = value.external_data.add()
        entry.key, entry.value = "location", location
        return value

    branch = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["y"])],
        "branch",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [tensor("in_branch", "b.bin")],
    )
    nodes = [
        helper.make_node("Constant", [], ["k"], value=tensor("constant", "../k.bin")),
        helper.make_node("If", ["cond"], ["out"], then_branch=branch, else_branch=branch),
    ]
    sparse = helper.make_sparse_tensor(
        tensor("sparse_values", "/abs/s.bin"), tensor("sparse_indices", "i.bin"), [4]
    )
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])],
        [tensor("init", "w.bin")],
        sparse_initializer=[sparse],
    )
    found = external_locations(helper.make_model(graph).SerializeToString())
    assert sorted(found) == sorted(
        [
            ("init", "w.bin"),
            ("constant", "../k.bin"),
            ("in_branch", "b.bin"),
            ("in_branch", "b.bin"),
            ("sparse_values", "/abs/s.bin"),
            ("sparse_indices", "i.bin"),
        ]
    )
    assert external_locations((Path(files["onnx"]) / "interp.onnx").read_bytes()) == []


def test_the_check_needs_neither_torch_nor_onnx(escaping_folders) -> None:
    script = textwrap.dedent(f"""
        import sys
        class Blocked:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "onnx"):
                    raise ImportError(name + " is not allowed here")
        sys.meta_path.insert(0, Blocked())
        from superslomo.errors import SloMoError
        from superslomo.contracts.manifest import read_manifest
        try:
            read_manifest({str(escaping_folders["parent"])!r})
        except SloMoError as error:
            print("refused" if "outside its folder" in str(error) else error)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.stdout.strip() == "refused", result.stderr[-2000:]
