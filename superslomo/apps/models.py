"""How a model is resolved: the shipped default, a checkpoint's cached ONNX export, or a folder,
opened on a backend. The one place the CLI, the demo, calibration and the benchmarks ask.

A checkpoint (the shipped demo weights included) runs on the embedded default, ONNX Runtime: the
first use exports it once (seconds), cached by the checkpoint's sha256; later uses load the graphs.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from superslomo.contracts.manifest import ManifestError, read_manifest
from superslomo.errors import SloMoError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


def default_model(weights_dir: Path = WEIGHTS_DIR) -> Path:
    """The model shipped with the package: an exported ONNX folder (`weights/demo/`, runs on the
    embedded onnxruntime) if present, else a safetensors checkpoint (needs the torch extra)."""
    folder = weights_dir / "demo"
    if (folder / "manifest.json").is_file():
        return folder
    checkpoints = sorted(weights_dir.glob("*.safetensors")) if weights_dir.is_dir() else []
    if checkpoints:
        return checkpoints[0]
    raise SloMoError(
        f"no model given and none shipped in {weights_dir}; pass --model DIR (from `slomo export`) "
        "or --model CHECKPOINT"
    )


def cache_root() -> Path:
    base = os.environ.get("SLOMO_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "superslomo-trt"
    )
    return Path(base)


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# Unlike the rest of the library, the cache speaks by default: it is reached from deep inside
# every app that takes a checkpoint (the CLI's interpolate and calibrate, demo/run.py, the
# benchmarks, any embedding app via model_folder), and a silent 20-40 s stall on first use looks
# like a hang. One line on stderr keeps stdout clean for whatever parses it; say=None silences it.
def onnx_folder_for(
    checkpoint: str | os.PathLike, precision: str = "fp32", say: Callable[[str], None] | None = to_stderr
) -> Path:
    """The exported fp32/fp16 gridsample folder for this checkpoint, exporting it if needed.

    `say` gets one line before an export (none when the cache is hit)."""
    from superslomo.export.onnx_export import ExportOptions, export_model
    from superslomo.model.checkpoint import file_sha256, load_checkpoint

    checkpoint = Path(checkpoint)
    digest = file_sha256(checkpoint)
    folder = cache_root() / f"{digest[:20]}-{precision}"
    try:
        manifest = read_manifest(folder)
        if manifest.source.get("sha256") == digest:
            return folder
    except ManifestError:
        pass  # absent or stale: export again below
    model = load_checkpoint(checkpoint)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    except OSError as error:
        raise SloMoError(
            f"cannot write the ONNX cache in {folder.parent}: {error.strerror}; "
            "set SLOMO_CACHE_DIR or export by hand with slomo export"
        ) from None
    # Said only once the checkpoint loaded and the cache is writable, so an error comes alone.
    if say is not None:
        say(
            f"first use of {checkpoint.name}: exporting it to ONNX once (about 20-40 s on a CPU), "
            f"cached in {folder}"
        )
    try:
        export_model(
            model,
            staging,
            ExportOptions(precision=precision),
            source={"checkpoint": checkpoint.name, "sha256": digest},
        )
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def model_folder(
    model: str | os.PathLike | None = None, say: Callable[[str], None] | None = to_stderr
) -> Path:
    """A runnable model folder for `model`: the folder itself, a checkpoint's cached ONNX export,
    or (None) the shipped model's. `say` as for onnx_folder_for."""
    path = Path(model) if model is not None else default_model()
    return onnx_folder_for(path, say=say) if path.is_file() else path


def open_model(model: Path | None, backend: str) -> tuple[object, str]:
    """An Interpolator for a model folder (ONNX graphs or engines) or a checkpoint (PyTorch), and
    the words that say which backend runs it."""
    from superslomo.runtime import Interpolator

    path = model if model is not None else default_model()
    if not path.exists():
        raise SloMoError(f"model not found: {path}")
    if path.is_file():
        if backend == "tensorrt":
            raise SloMoError(
                f"{path} is a checkpoint; build engines first: slomo export {path} -o DIR, "
                "then slomo build-engine DIR -o ENGINES"
            )
        try:
            from superslomo.eval.torch_backend import TorchBackend
        except ImportError:
            raise SloMoError(
                "running a checkpoint needs PyTorch: pip install 'superslomo-trt[torch]' "
                "(or pass an exported model folder)"
            ) from None
        if backend == "torch":
            return Interpolator(TorchBackend.from_checkpoint(path)), "torch"
        # The embedded default: export once to ONNX (cached by the checkpoint's sha256), run on ORT.
        folder = onnx_folder_for(path)
        runtime = "openvino" if backend == "openvino" else "onnxruntime"
        interp = Interpolator.from_dir(folder, backend=runtime)
        suffix = ", picked by auto" if backend == "auto" else ""
        return interp, f"{runtime} (CPU; {path.name} exported to {folder}){suffix}"
    if backend == "torch":
        raise SloMoError(f"--backend torch needs a checkpoint file; {path} is a model folder")
    interp = Interpolator.from_dir(path, backend=backend)
    label = f"{interp.backend.name} ({interp.backend.describe()})"
    if backend == "auto":
        label += ", picked by auto"
    return interp, label
