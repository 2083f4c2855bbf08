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
from collections.abc import Callable, Mapping
from pathlib import Path

from superslomo.apps import weights
from superslomo.apps.weights import FOLDER_REPORT, WEIGHTS_DIR
from superslomo.contracts.manifest import FULL_SCALES, ManifestError, read_manifest, scales_words
from superslomo.errors import SloMoError


def default_model(weights_dir: Path = WEIGHTS_DIR) -> Path:
    """The model shipped with the package: an exported ONNX folder (`weights/demo/`, runs on the
    embedded onnxruntime) if present, else the default record's checkpoint (apps/weights.py;
    needs the torch extra)."""
    folder = weights_dir / weights.EXPORTED_FOLDER
    if (folder / "manifest.json").is_file():
        return folder
    checkpoint = weights.shipped_checkpoint(weights_dir)
    if checkpoint is not None:
        return checkpoint
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
    checkpoint: str | os.PathLike,
    precision: str = "fp32",
    say: Callable[[str], None] | None = to_stderr,
    scales: Mapping[str, float] | None = None,
    exported: list[Path] | None = None,
) -> Path:
    """The exported fp32/fp16 gridsample folder for this checkpoint, exporting it if needed
    (then appended to `exported`);
    `scales` below 1 (model/scaled.py) make a folder of their own.

    `say` gets one line before an export (none when the cache is hit)."""
    from superslomo.contracts.files import file_sha256

    checkpoint = Path(checkpoint)
    digest = file_sha256(checkpoint)
    scales = dict(scales or FULL_SCALES)
    reduced = "".join(f"-{graph}{round(100 * v)}" for graph, v in scales.items() if v != 1.0)
    folder = cache_root() / f"{digest[:20]}{reduced}-{precision}"
    try:
        manifest = read_manifest(folder)
        if manifest.source.get("sha256") == digest and manifest.scales == scales:
            return folder
    except ManifestError:
        pass  # absent or stale: export again below
    # Only a cache miss needs PyTorch: importing it costs seconds that every job would pay.
    try:
        from superslomo.export.onnx_export import ExportOptions, export_model
        from superslomo.model.checkpoint import load_checkpoint
    except ImportError:
        raise SloMoError(
            "running a checkpoint needs PyTorch the first time (to export it): "
            "pip install 'superslomo-trt[torch]' (or pass an exported model folder)"
        ) from None
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
            f"first use of {checkpoint.name}{scales_words(scales, ' with ')}: exporting it to ONNX "
            f"once (about 20-60 s on a CPU), cached in {folder}"
        )
    try:
        export_model(
            model,
            staging,
            ExportOptions(precision=precision, flow_scale=scales["flow"], interp_scale=scales["interp"]),
            source={"checkpoint": checkpoint.name, "sha256": digest},
        )
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if exported is not None:
        exported.append(folder)
    return folder


def model_folder(
    model: str | os.PathLike | None = None,
    say: Callable[[str], None] | None = to_stderr,
    size: tuple[int, int] | None = None,
) -> Path:
    """A runnable model folder for `model`: the folder itself, a checkpoint's cached ONNX export,
    or (None) the shipped model's. `say` as for onnx_folder_for. With the job's `size` (WIDTH,
    HEIGHT), a checkpoint's export is the one `slomo interpolate` runs there (HD scales)."""
    path = Path(model) if model is not None else default_model()
    if not path.is_file():
        return path
    return onnx_folder_for(path, say=say, scales=job_scales(path, size) if size is not None else None)


# The accuracy report shipped beside a checkpoint: its record's `precision` (apps/weights.py, see
# MODEL_CARD.md); an exported folder may hold its own (FOLDER_REPORT); an INT8 folder from
# `slomo quantize` has its `accuracy.json`, whose drop is measured on ONNX Runtime.
PIN_PRECISIONS = ("auto", "fp32", "bf16", "int8", "fp16")


def accuracy_report(folder: Path, checkpoint: Path | None = None):
    """The accuracy report that applies to this model folder (and the checkpoint it came from).

    A checkpoint's report counts only when its sha256 is the checkpoint's: a report of other
    weights would vouch for a precision nobody measured on these."""
    from superslomo.runtime.selection import Report

    report = Report()
    if (folder / FOLDER_REPORT).is_file():
        report = report.merge(Report.load(folder / FOLDER_REPORT))
    if checkpoint is not None:
        shipped = weights.record_for(checkpoint).precision
        if shipped.is_file() and _sha_matches(shipped, checkpoint):
            report = report.merge(Report.load(shipped))
    for int8 in (folder, sibling(folder, "int8")):
        if int8 is not None and (int8 / "accuracy.json").is_file():
            report = report.merge(_quantize_report(int8 / "accuracy.json"))
    return report


DEFAULT_SIZE = (1280, 720)  # what a job's speed probe measures at when no size is given


def job_scales(checkpoint: Path, size: tuple[int, int]) -> dict[str, float] | None:
    """The scales a job of this frame size (WIDTH, HEIGHT) runs the checkpoint at: those of its
    size band in the checkpoint's scale table (its record's `scales`, made by `slomo scales`;
    apps/scales.py); None: full scale (no table, a table of other weights, or under its bands)."""
    from superslomo.apps.scales import scales_for

    return scales_for(checkpoint, size)[0]


def job_scales_words(checkpoint: Path, size: tuple[int, int]) -> str:
    """How the `backend:` line names the scales of a job: "720p band: flow at 1/4 scale, ..."."""
    from superslomo.apps.scales import scales_for

    scales, band = scales_for(checkpoint, size)
    if not band:
        return ""
    table = weights.record_for(checkpoint).scales.name
    return f"{band} band of {table}: {scales_words(scales) or 'full scale'}"


def _sha_matches(report: Path, checkpoint: Path | None) -> bool:
    import json

    from superslomo.contracts.files import file_sha256

    return checkpoint is not None and json.loads(report.read_text()).get("sha256") == file_sha256(checkpoint)


def _quantize_report(path: Path):
    """`slomo quantize`'s accuracy.json as a report entry for onnxruntime int8 (where it measured)."""
    import json

    from superslomo.runtime.selection import Report

    try:
        data = json.loads(path.read_text())
        chosen = data.get("chosen", "both")
        drop = float(data["settings"][chosen]["psnr_drop_db"])
    except (OSError, ValueError, KeyError, TypeError):
        return Report()  # no usable figure: INT8 stays unmeasured, hence never picked by auto
    return Report(drops={"onnxruntime/int8": drop}, source=f"{path.parent.name}/{path.name}")


def sibling(folder: Path, precision: str) -> Path | None:
    """The folder of another precision beside this one: `onnx/` -> `onnx-int8/`, and the export
    cache's `<digest>-fp32/` -> `<digest>-int8/` (the names `slomo quantize onnx/ -o onnx-int8/`
    and onnx_folder_for give them)."""
    stem = folder.name.removesuffix("-fp32")
    for name in (f"{stem}-{precision}", f"{folder.name}-{precision}"):
        candidate = folder.with_name(name)
        if candidate != folder and (candidate / "manifest.json").is_file():
            return candidate
    return None


# How the CPU INT8 folder of a model is made, the same for the accuracy report, `slomo bench --data`
# and the first use of a shipped model: a few real pairs are enough for the conv activation
# ranges (percentile), and Q/DQ on conv outputs is what lets ONNX Runtime run integer convolutions.
INT8_CALIB_PAIRS = 8
INT8_CALIB_SIZE = (448, 256)


def quantize_for_cpu(
    fp32: Path,
    folder: Path,
    footage: list[Path],
    pairs: int = INT8_CALIB_PAIRS,
    conv_outputs: bool = True,
    say: Callable[[str], None] | None = to_stderr,
) -> Path:
    """An INT8 Q/DQ folder of `fp32` calibrated on `footage`, made once (kept while its manifest is)."""
    from superslomo.calibration.calibset import build_calibration_set
    from superslomo.calibration.quantize import QuantizeOptions, quantize_model

    if (folder / "manifest.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    calib = folder.with_name(folder.name + ".calib.npz")
    if not calib.is_file():
        if say is not None:
            say(f"calibrating INT8 on {pairs} pairs from {', '.join(p.name for p in footage)} ...")
        build_calibration_set(footage, calib, fp32, pairs=pairs, size=INT8_CALIB_SIZE, progress=False)
    if say is not None:
        say(f"quantizing to {folder} ...")
    # force: the accuracy report (or the bench's PSNR column) judges the drop, not quantize's gate
    quantize_model(
        fp32,
        calib,
        folder,
        QuantizeOptions(conv_outputs=conv_outputs),
        max_drop_db=0.5,
        force=True,
        eval_count=pairs,
    )
    return folder


def _shipped_int8(checkpoint: Path, fp32: Path, say: Callable[[str], None] | None) -> Path | None:
    """The checkpoint's INT8 folder, quantized on first use from its record's calibration clip
    (the one its accuracy report's INT8 figure was measured with); None without one."""
    clip = weights.record_for(checkpoint).calibration
    if not clip.is_file():
        return None
    target = fp32.with_name(fp32.name.removesuffix("-fp32") + "-int8")
    if say is not None and not (target / "manifest.json").is_file():
        say(f"first use of INT8 for {checkpoint.name}: quantizing once (about a minute), cached in {target}")
    return quantize_for_cpu(fp32, target, [clip], say=None)


def _folders(folder: Path, manifest) -> dict[str, Path]:
    folders = {manifest.precision: folder}
    if manifest.precision == "fp32":
        for precision in ("int8", "fp16"):
            found = sibling(folder, precision)
            if found is not None:
                folders[precision] = found
    return folders


def compile_cache(runtime: str) -> Path:
    """Where a CPU runtime keeps prepared graphs between processes: OpenVINO's compiled blobs (one
    per graph, frame size and settings) and ONNX Runtime's optimized graphs (one per graph), each
    about the size of the weights."""
    return cache_root() / runtime


def with_compile_cache(backend):
    """`backend` (a name or options) with the runtime's graph cache on: a job's start-up loads the
    graphs an earlier job prepared instead of compiling/optimizing them again. TensorRT as given."""
    from dataclasses import replace

    from superslomo.runtime.options import OnnxRuntimeOptions, OpenVinoOptions

    if backend == "openvino":
        backend = OpenVinoOptions()
    if backend == "onnxruntime":
        backend = OnnxRuntimeOptions()
    if isinstance(backend, (OpenVinoOptions, OnnxRuntimeOptions)) and backend.cache_dir is None:
        return replace(backend, cache_dir=str(compile_cache(backend.backend)))
    return backend


def open_model(
    model: Path | None,
    backend: str,
    precision: str | None = None,
    size: tuple[int, int] | None = None,
    budget_db: float | None = None,
    say: Callable[[str], None] | None = to_stderr,
) -> tuple[object, str]:
    """An Interpolator for a model folder (ONNX graphs or engines) or a checkpoint (PyTorch), and
    the words that say which backend runs it and why: `choose_model`'s choice, opened."""
    _, interp, label = choose_model(model, backend, precision, size, budget_db, say)
    return interp, label


def choose_model(
    model: Path | None,
    backend: str,
    precision: str | None = None,
    size: tuple[int, int] | None = None,
    budget_db: float | None = None,
    say: Callable[[str], None] | None = to_stderr,
):
    """The model choice (runtime/choice.py) for a model folder or a checkpoint, the Interpolator
    that runs it (opened: warm where the speed probe ran it) and the words of the `backend:` line.
    The choice is None only for a checkpoint on PyTorch (`--backend torch`), which no other path
    runs.

    `precision` None keeps a fixed backend (onnxruntime fp32 for ONNX, what parity and eval
    measure); "auto" (the default of `slomo interpolate`) picks the fastest CPU runtime and
    precision within `budget_db` of fp32, measured at `size` (WIDTH, HEIGHT; default 1280x720)."""
    from superslomo.runtime import Interpolator
    from superslomo.runtime.choice import ModelChoice
    from superslomo.runtime.options import OnnxRuntimeOptions, OpenVinoOptions, default_options, options_for

    if precision is not None and precision not in PIN_PRECISIONS:
        raise SloMoError(f"unknown precision {precision!r}; choose one of {', '.join(PIN_PRECISIONS)}")
    path = model if model is not None else default_model()
    if not path.exists():
        raise SloMoError(f"model not found: {path}")
    checkpoint = path if path.is_file() else None
    if checkpoint is not None:
        if backend == "tensorrt":
            raise SloMoError(
                f"{path} is a checkpoint; build engines first: slomo export {path} -o DIR, "
                "then slomo build-engine DIR -o ENGINES"
            )
        if backend == "torch":
            if precision not in (None, "auto", "fp32"):
                raise SloMoError(f"--backend torch runs fp32 only, not {precision}")
            try:
                from superslomo.eval.torch_backend import TorchBackend
            except ImportError:
                raise SloMoError(
                    "running a checkpoint on PyTorch needs it: pip install 'superslomo-trt[torch]'"
                ) from None
            return None, Interpolator(TorchBackend.from_checkpoint(path)), "torch"
        # The embedded default: export once to ONNX (cached by the checkpoint's sha256).
        export_precision = "fp16" if precision == "fp16" else "fp32"
        scales = None
        if precision is not None and export_precision == "fp32":
            # precision None: a fixed fp32 backend, what parity and eval measure, at full scale
            scales = job_scales(path, size or DEFAULT_SIZE)
        exported: list[Path] = []
        folder = onnx_folder_for(path, export_precision, say=say, scales=scales, exported=exported)
        # "exported" only when this run exported it; later runs load the cached graphs.
        where = f"{path.name} {'exported to' if exported else 'ONNX cached in'} {folder}"
    else:
        if backend == "torch":
            raise SloMoError(f"--backend torch needs a checkpoint file; {path} is a model folder")
        folder, where = path, ""
    manifest = read_manifest(folder)
    if precision is not None and manifest.kind == "onnx" and backend in ("auto", "onnxruntime", "openvino"):
        return _open_selected(folder, manifest, checkpoint, backend, precision, size, budget_db, say, where)
    if precision not in (None, "auto") and precision != manifest.precision:
        raise SloMoError(
            f"{folder} holds {manifest.precision} {manifest.kind} graphs; --precision {precision} "
            "needs a folder of that precision"
        )
    if checkpoint is not None:
        options = with_compile_cache(OpenVinoOptions() if backend == "openvino" else OnnxRuntimeOptions())
        suffix = ", picked by auto" if backend == "auto" else ""
        label = f"{options.backend} (CPU; {where}){suffix}"
        choice = ModelChoice.of_folder(folder, options, label)
        return choice, choice.open(), label
    options = with_compile_cache(options_for(backend) or default_options(manifest.kind))
    interp = Interpolator.from_dir(path, backend=options)
    label = f"{interp.backend.name} ({interp.backend.describe()})"
    if backend == "auto":
        label += ", picked by auto"
    return ModelChoice.of_folder(path, options, label), interp, label


def _scales_note(checkpoint: Path | None, manifest, size: tuple[int, int] | None) -> str:
    """The scales the folder runs at, named by the table's band when the job's scales are the table's."""
    size = size or DEFAULT_SIZE
    if checkpoint is not None and manifest.scales == (job_scales(checkpoint, size) or FULL_SCALES):
        return job_scales_words(checkpoint, size) or scales_words(manifest.scales)
    return scales_words(manifest.scales)


def _open_selected(folder, manifest, checkpoint, backend, precision, size, budget_db, say, where):
    from superslomo.runtime.choice import ModelChoice
    from superslomo.runtime.selection import DEFAULT_BUDGET_DB, select

    if precision == "auto" and manifest.precision != "fp32":
        precision = manifest.precision  # a folder of one precision given by hand: that is the pin
    folders = _folders(folder, manifest)
    report = accuracy_report(folder, checkpoint)
    budget = DEFAULT_BUDGET_DB if budget_db is None else budget_db
    int8_eligible = report.drops.get("onnxruntime/int8", float("inf")) <= budget and backend != "openvino"
    if (
        checkpoint is not None
        and "int8" not in folders
        and manifest.precision == "fp32"
        and (precision == "int8" or (precision == "auto" and int8_eligible))
    ):
        found = _shipped_int8(checkpoint, folder, say)
        if found is not None:
            folders["int8"] = found
    if precision == "fp16" and "fp16" not in folders:
        raise SloMoError(
            f"--precision fp16 needs an fp16 export beside {folder} (slomo export --precision fp16 "
            f"-o {folder.name}-fp16); on a CPU it is no faster than fp32"
        )
    if precision == "int8" and "int8" not in folders:
        hint = f"slomo calibrate --data CLIP -o calib.npz --model {folder}; slomo quantize {folder} "
        raise SloMoError(
            f"--precision int8 needs an INT8 folder beside {folder}: none found; make one with "
            f"{hint}--calib calib.npz -o {folder.name.removesuffix('-fp32')}-int8"
        )

    def open_interp(candidate):
        from superslomo.runtime import Interpolator, open_backend

        return Interpolator(open_backend(candidate.folder, with_compile_cache(candidate.options())))

    choice = select(
        folders,
        report,
        size or DEFAULT_SIZE,
        runtime=backend,
        precision=precision,
        budget_db=budget,
        cache_dir=cache_root() / "selection",
        open_interp=open_interp,
        say=say,
        label_note=_scales_note(checkpoint, manifest, size),
    )
    if say is not None:
        say("; ".join(part for part in (where, choice.details) if part))
    label = choice.label
    if backend == "auto" or precision == "auto":
        label += ", picked by auto"
    chosen = choice.candidate
    picked = ModelChoice(
        chosen.folder,
        chosen.options(),
        chosen.precision,
        tuple(sorted(read_manifest(chosen.folder).scales.items())),
        label,
    )
    return picked, choice.interpolator, label
