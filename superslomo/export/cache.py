"""ONNX folders exported on demand from a checkpoint, cached by the checkpoint's sha256.

This is how a checkpoint (the shipped demo weights included) runs on the embedded default,
ONNX Runtime: the first use exports once (seconds), later uses load the cached graphs.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from superslomo.errors import SloMoError
from superslomo.runtime.manifest import ManifestError, read_manifest


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
    from superslomo.video.models import default_model

    path = Path(model) if model is not None else default_model()
    return onnx_folder_for(path, say=say) if path.is_file() else path
