"""ONNX graphs -> TensorRT plans (strongly typed), with profiles, a timing cache and a manifest.

Precision lives in the graphs (fp16 casts, INT8 Q/DQ nodes; DESIGN.md decision 4), so the builder
sets no precision flags: the same code builds fp32, fp16 and INT8 engines on TensorRT 10.3 .. 11.x.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from superslomo.contracts.files import atomic_path, file_sha256
from superslomo.contracts.manifest import (
    GRAPHS,
    GraphEntry,
    Manifest,
    read_manifest,
    scales_words,
    write_manifest,
)
from superslomo.contracts.shapes import Profile, tensor_shape
from superslomo.contracts.tensorrt_version import (
    TrtVersion,
    check_plugin_supported,
    import_tensorrt,
    tensorrt_version,
)
from superslomo.errors import SloMoError

if TYPE_CHECKING:
    import tensorrt as trt

PLAN_FILES = {"flow": "flow.plan", "interp": "interp.plan"}
BUILDER_LEVELS = range(0, 6)


class BuildError(SloMoError):
    pass


def _write_atomic(path: Path, data: bytes | memoryview) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def validate_options(
    profiles: Sequence[Profile],
    workspace_mib: int | None,
    builder_level: int | None,
    hardware_compat: bool,
    version_compatible: bool,
) -> None:
    """Reject bad options before touching the GPU (pure; tested without TensorRT)."""
    if not profiles:
        raise BuildError("at least one optimisation profile is needed")
    if workspace_mib is not None and workspace_mib < 1:
        raise BuildError(f"--workspace must be a positive number of MiB, got {workspace_mib}")
    if builder_level is not None and builder_level not in BUILDER_LEVELS:
        raise BuildError(f"--builder-level must be 0..5, got {builder_level}")


def engine_manifest(
    source: Manifest,
    plans: dict[str, Path],
    trt_version: str,
    gpu: dict[str, Any],
    profiles: Sequence[Profile],
    onnx_sha256: dict[str, str],
    hardware_compat: bool,
    version_compatible: bool,
    builder_level: int | None,
) -> Manifest:
    """The manifest of an engine folder, derived from the ONNX folder's (pure; tested without TensorRT)."""
    graphs = {
        name: GraphEntry(
            file=plans[name].name,
            sha256=file_sha256(plans[name]),
            inputs=list(entry.inputs),
            outputs=list(entry.outputs),
            precision=entry.precision,
        )
        for name, entry in source.graphs.items()
    }
    return replace(
        source,
        kind="tensorrt",
        graphs=graphs,
        tensorrt={
            "version": trt_version,
            "gpu": gpu.get("name", "unknown"),
            "compute_capability": gpu.get("compute_capability", "unknown"),
            "profiles": [p.to_json() for p in profiles],
            "onnx_sha256": dict(onnx_sha256),
            "hardware_compatible": bool(hardware_compat),
            "version_compatible": bool(version_compatible),
            "builder_level": builder_level,
            "strongly_typed": True,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )


def _network_flags(plugin: bool) -> int:
    import tensorrt as trt

    flags = 0
    # 10.x builds strongly typed networks only when asked; 11.x always does and ignores the flag.
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if plugin and hasattr(trt.NetworkDefinitionCreationFlag, "PREFER_AOT_PYTHON_PLUGINS"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.PREFER_AOT_PYTHON_PLUGINS)
    return flags


def _parse(
    builder: trt.Builder, logger: trt.ILogger, onnx_path: Path, plugin: bool
) -> tuple[trt.INetworkDefinition, trt.OnnxParser]:
    import tensorrt as trt

    network = builder.create_network(_network_flags(plugin))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser.get_error(i).desc() for i in range(parser.num_errors)]
        hint = ""
        if any("BackWarp" in e for e in errors):
            hint = " (the BackWarp plugin was not found: is this TensorRT >= 10.9 with tensorrt.plugin?)"
        raise BuildError(
            f"TensorRT could not parse {onnx_path.name}: {'; '.join(errors) or 'unknown error'}{hint}"
        )
    # The parser keeps references into the network; return both so neither dies early.
    return network, parser


def _add_profiles(
    builder: trt.Builder,
    config: trt.IBuilderConfig,
    network: trt.INetworkDefinition,
    profiles: Sequence[Profile],
    io: str,
) -> None:
    import tensorrt as trt

    names = [network.get_input(i).name for i in range(network.num_inputs)]
    for profile in profiles:
        opt_profile = builder.create_optimization_profile()
        for name in names:
            low, opt, high = (tensor_shape(name, s, io) for s in (profile.min, profile.opt, profile.max))
            opt_profile.set_shape(name, trt.Dims(list(low)), trt.Dims(list(opt)), trt.Dims(list(high)))
        if config.add_optimization_profile(opt_profile) < 0:
            raise BuildError(f"TensorRT refused the optimisation profile {profile}")


def _load_timing_cache(config: trt.IBuilderConfig, path: Path | None) -> trt.ITimingCache:
    data = b""
    if path is not None and path.is_file():
        data = path.read_bytes()
    cache = config.create_timing_cache(data)
    # ignore_mismatch=False: a cache from another GPU or TensorRT is dropped, not trusted.
    if not config.set_timing_cache(cache, False) and data:
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


def gpu_identity(device: int = 0) -> dict[str, Any]:
    from superslomo.contracts.device import device_identity

    return device_identity(device)


def build_engines(
    onnx_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    profiles: Sequence[Profile],
    timing_cache: str | os.PathLike | None = None,
    workspace_mib: int | None = None,
    hardware_compat: bool = False,
    version_compatible: bool = False,
    builder_level: int | None = None,
    device: int = 0,
    log: Callable[[str], None] = lambda message: None,
) -> Manifest:
    """Build flow.plan and interp.plan from an ONNX folder (`slomo export`/`quantize`) into `out_dir`."""
    validate_options(profiles, workspace_mib, builder_level, hardware_compat, version_compatible)
    onnx_dir, out_dir = Path(onnx_dir), Path(out_dir)
    source = read_manifest(onnx_dir)
    if source.kind != "onnx":
        raise BuildError(
            f"{onnx_dir} holds {source.kind} files; build-engine needs an ONNX folder from `slomo export`"
        )
    if out_dir.resolve() == onnx_dir.resolve():
        raise BuildError("the engine folder must differ from the ONNX folder (both have a manifest.json)")
    if source.warp == "plugin" and hardware_compat:
        # The plugin's PTX is compiled by Triton for the building GPU (sm_90a-style targets on
        # Hopper), so a "runs on any Ampere+" plan would carry a kernel that other GPUs reject.
        raise BuildError(
            "--hardware-compat cannot be combined with a --warp plugin folder (its kernel is "
            "compiled for this GPU); export with --warp gridsample for portable engines"
        )
    multiple = source.size_multiple
    off = [
        f"--{what} {shape}"
        for profile in profiles
        for what, shape in (("min", profile.min), ("opt", profile.opt), ("max", profile.max))
        if shape.h % multiple or shape.w % multiple
    ]
    if off:
        raise BuildError(
            f"{onnx_dir} runs {scales_words(source.scales)}: engine sizes must be multiples of {multiple} "
            f"(the runtime pads frames up to it); {off[0]} is not (e.g. --min 1x{multiple}x{multiple} "
            f"--opt 1x768x1280)"
        )
    cache_path = Path(timing_cache) if timing_cache is not None else None

    version = tensorrt_version(import_tensorrt())
    import tensorrt as trt

    plugin = source.warp == "plugin"
    if plugin:
        check_plugin_supported(version)
        from superslomo.engine.plugin import register_backwarp_plugin

        register_backwarp_plugin()
    gpu = gpu_identity(device)
    log(
        f"TensorRT {version} on {gpu['name']} (sm {gpu['compute_capability']}); warp {source.warp}, "
        f"precision {source.precision}, {len(profiles)} profile(s)"
    )

    # Made only now that TensorRT and a GPU are known to be here; removed again if the build fails.
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        logger = trt.Logger(trt.Logger.WARNING)
        plans: dict[str, Path] = {}
        onnx_sha: dict[str, str] = {}
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as scratch:
            for name in GRAPHS:
                onnx_path = source.graph_path(onnx_dir, name)
                onnx_sha[name] = source.graphs[name].sha256
                if plugin:
                    from superslomo.engine.onnx_prep import prepare_plugin_graph

                    onnx_path = prepare_plugin_graph(onnx_path, scratch, required=name == "interp")
                started = time.monotonic()
                builder = trt.Builder(logger)
                network, parser = _parse(builder, logger, onnx_path, plugin)
                config = builder.create_builder_config()
                if workspace_mib is not None:
                    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
                if hardware_compat:
                    config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
                if version_compatible:
                    config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
                if builder_level is not None:
                    config.builder_optimization_level = builder_level
                _load_timing_cache(config, cache_path)
                _add_profiles(builder, config, network, profiles, source.io)
                serialized = builder.build_serialized_network(network, config)
                if serialized is None:
                    raise BuildError(f"TensorRT failed to build the {name} engine (see the messages above)")
                plan = out_dir / PLAN_FILES[name]
                _write_atomic(plan, memoryview(serialized))
                plans[name] = plan
                if cache_path is not None:
                    # Saved after each graph so an interrupted build still keeps what it timed.
                    cache_path.parent.mkdir(parents=True, exist_ok=True)
                    _write_atomic(cache_path, memoryview(config.get_timing_cache().serialize()))
                del parser, network
                log(
                    f"{name}: {plan} ({plan.stat().st_size / 2**20:.1f} MiB, "
                    f"{time.monotonic() - started:.0f} s)"
                )

        manifest = engine_manifest(
            source,
            plans,
            version_string(),
            gpu,
            profiles,
            onnx_sha,
            hardware_compat,
            version_compatible,
            builder_level,
        )
        write_manifest(out_dir, manifest)
        return manifest
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def version_string() -> str:
    """The full running TensorRT version (e.g. 10.3.0.30), recorded in the manifest."""
    import tensorrt as trt

    return str(trt.__version__)


__all__ = ["build_engines", "engine_manifest", "validate_options", "BuildError", "TrtVersion", "PLAN_FILES"]
