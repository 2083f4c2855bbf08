"""The calibration set file (`calib.npz`): what the two graphs are fed while ranges are measured.

Layout (one .npz, members stored uncompressed so they can be memory-mapped):
  frame0, frame1, target  uint8 [N,H,W,3]  the pair and its ground-truth middle frame
  flow01, flow10          float32 [N,2,H,W] from the fp32 flow graph (pixels)
  t                       float32 [N]       drawn uniformly over (0,1)
  source, index           int64 [N]         input number and first-frame index of each triplet
  meta                    0-d unicode       JSON: inputs, size, seed, model, rejections
Frames are kept as uint8 HWC whatever the model's io: the data reader converts them to what each
graph takes, so one set serves float32 and uint8 exports alike and is 4x smaller.

Writing streams each array into a memory-mapped .npy beside the output and zips them at the
end, so a 256-pair set never sits in RAM; the .npz appears only complete (temp name + rename).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from superslomo.contracts.frames import to_graph_frames
from superslomo.errors import SloMoError

FRAME_KEYS = ("frame0", "frame1", "target")
KEYS = ("frame0", "frame1", "target", "flow01", "flow10", "t", "source", "index", "meta")
T_RANGE = (0.05, 0.95)


class CalibSet:
    """A read-only view of a calib.npz whose arrays are memory-mapped (not loaded)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise SloMoError(f"calibration set not found: {self.path}")
        self.arrays: dict[str, np.ndarray] = {}
        try:
            with zipfile.ZipFile(self.path) as archive:
                for info in archive.infolist():
                    name = info.filename.removesuffix(".npy")
                    if info.compress_type != zipfile.ZIP_STORED:
                        # Another tool's npz: fall back to reading it into memory.
                        with archive.open(info) as handle:
                            self.arrays[name] = np.lib.format.read_array(handle, allow_pickle=False)
                        continue
                    self.arrays[name] = _map_member(self.path, info)
        except (zipfile.BadZipFile, ValueError, OSError) as error:
            raise SloMoError(f"{self.path} is not a calibration set (.npz): {error}") from None
        missing = [k for k in KEYS if k not in self.arrays]
        if missing:
            raise SloMoError(
                f"{self.path} is not a calibration set from `slomo calibrate` (missing {', '.join(missing)})"
            )
        n = len(self.arrays["t"])
        shapes_ok = all(self.arrays[k].shape[0] == n for k in KEYS if k != "meta")
        if not shapes_ok or self.arrays["frame0"].ndim != 4 or self.arrays["frame0"].dtype != np.uint8:
            raise SloMoError(f"{self.path}: arrays have inconsistent shapes; re-run slomo calibrate")
        try:
            self.meta = json.loads(str(self.arrays["meta"]))
        except ValueError:
            raise SloMoError(f"{self.path}: unreadable meta") from None

    def __len__(self) -> int:
        return len(self.arrays["t"])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        _, h, w, _ = self.arrays["frame0"].shape
        return w, h

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]


def _map_member(path: Path, info: zipfile.ZipInfo) -> np.ndarray:
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
        if local[:4] != b"PK\x03\x04":
            raise ValueError("bad zip member header")
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        start = info.header_offset + 30 + name_len + extra_len
        handle.seek(start)
        version = np.lib.format.read_magic(handle)
        read_header = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(handle)
        if dtype.hasobject:
            raise ValueError("object arrays are refused")
        offset = handle.tell()
    if shape == ():
        with zipfile.ZipFile(path) as archive, archive.open(info) as member:
            return np.lib.format.read_array(member, allow_pickle=False)
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


class CalibWriter:
    """Rows go into memory-mapped .npy files in a temp folder; `commit` zips and renames."""

    def __init__(self, output: Path, count: int, size: tuple[int, int]) -> None:
        self.output = output
        if output.suffix != ".npz":
            raise SloMoError(f"the calibration set must be a .npz file: {output}")
        if not output.parent.is_dir():
            raise SloMoError(f"output folder does not exist: {output.parent}")
        width, height = size
        self.folder = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
        specs = {
            "frame0": ((count, height, width, 3), np.uint8),
            "frame1": ((count, height, width, 3), np.uint8),
            "target": ((count, height, width, 3), np.uint8),
            "flow01": ((count, 2, height, width), np.float32),
            "flow10": ((count, 2, height, width), np.float32),
            "t": ((count,), np.float32),
            "source": ((count,), np.int64),
            "index": ((count,), np.int64),
        }
        self.arrays = {
            name: np.lib.format.open_memmap(self.folder / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
            for name, (shape, dtype) in specs.items()
        }
        self.count = count
        self.rows = 0

    def add(self, row: dict[str, object]) -> None:
        for name, array in self.arrays.items():
            array[self.rows] = row[name]
        self.rows += 1

    def commit(self, meta: dict) -> Path:
        if self.rows != self.count:
            raise SloMoError(f"internal: {self.rows} of {self.count} calibration rows written")
        for array in self.arrays.values():
            array.flush()
        self.arrays.clear()
        np.save(self.folder / "meta.npy", np.array(json.dumps(meta, sort_keys=True)))
        tmp = self.output.with_name(f".{self.output.name}.tmp{os.getpid()}")
        try:
            # Stored, not deflated: members must stay memory-mappable, and floats barely compress.
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
                for name in KEYS:
                    archive.write(self.folder / f"{name}.npy", f"{name}.npy")
            os.replace(tmp, self.output)
        finally:
            tmp.unlink(missing_ok=True)
        return self.output

    def discard(self) -> None:
        self.arrays.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


def build_calibration_set(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    model_dir: str | os.PathLike,
    pairs: int = 256,
    size: tuple[int, int] = (448, 256),
    seed: int = 0,
    scene_threshold: float | None = None,
    progress: bool | None = None,
) -> dict:
    """Sample triplets from `inputs`, compute fp32 flows with `model_dir`, write `output`.

    Returns the meta dict that is stored in the file."""
    import sys

    from superslomo.calibration.sampling import Rejections, open_sources, sample_triplets
    from superslomo.contracts.graph_io import SIZE_MULTIPLE
    from superslomo.contracts.manifest import read_manifest
    from superslomo.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from superslomo.video.scenes import DEFAULT_THRESHOLD

    width, height = size
    if width % SIZE_MULTIPLE or height % SIZE_MULTIPLE:
        raise SloMoError(
            f"--size must be multiples of {SIZE_MULTIPLE} (the graphs' size step), got {width}x{height}"
        )
    output = Path(output)
    manifest = read_manifest(model_dir)
    if manifest.precision != "fp32":
        raise SloMoError(
            f"{model_dir} is a {manifest.precision} export; calibration flows must come from an fp32 "
            "export (slomo export CKPT -o DIR)"
        )
    sources = open_sources(inputs)
    backend = OnnxRuntimeBackend(model_dir)
    rejections = Rejections()
    rng = np.random.default_rng([seed, 1])  # t draws: a stream of their own, so sampling stays put
    if progress is None:
        progress = sys.stderr.isatty()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=sum(s.frames for s in sources),
            unit="frame",
            desc="calibrating",
            file=sys.stderr,
            dynamic_ncols=True,
        )
    writer = CalibWriter(output, pairs, size)
    try:
        for sample in sample_triplets(
            sources,
            pairs,
            size,
            seed,
            DEFAULT_THRESHOLD if scene_threshold is None else scene_threshold,
            on_frame=bar.update if bar else None,
            rejections=rejections,
        ):
            frames = np.stack([sample.frame0, sample.frame1])
            graph_frames = to_graph_frames(frames, manifest.io)
            flows = backend.infer("flow", {"frame0": graph_frames[:1], "frame1": graph_frames[1:]})
            writer.add(
                {
                    "frame0": sample.frame0,
                    "frame1": sample.frame1,
                    "target": sample.target,
                    "flow01": flows["flow01"][0],
                    "flow10": flows["flow10"][0],
                    "t": rng.uniform(*T_RANGE),
                    "source": sample.source,
                    "index": sample.index,
                }
            )
        meta = {
            "inputs": [{"path": str(s.path), "frames": s.frames} for s in sources],
            "pairs": pairs,
            "size": [width, height],
            "seed": seed,
            "t_range": list(T_RANGE),
            "model": {
                "folder": str(model_dir),
                "source": manifest.source,
                "io": manifest.io,
                "warp": manifest.warp,
            },
            "rejected": asdict(rejections),
            "triplet": "frame0 = f(i), target = f(i+1), frame1 = f(i+2)",
        }
        writer.commit(meta)
    finally:
        writer.discard()
        backend.close()
        if bar is not None:
            bar.close()
    return meta
