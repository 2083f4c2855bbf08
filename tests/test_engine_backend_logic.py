"""The TensorRT backend's pure logic, without a GPU: manifest checks, buffers, batching, versions."""

from __future__ import annotations

import numpy as np
import pytest

from superslomo.contracts.manifest import GraphEntry, Manifest, ManifestError, parse_manifest
from superslomo.contracts.shapes import Shape, parse_profiles
from superslomo.contracts.tensorrt_version import (
    TrtVersion,
    check_plugin_supported,
    check_supported,
    versions_compatible,
)
from superslomo.engine.builder import BuildError, engine_manifest, validate_options
from superslomo.errors import SloMoError
from superslomo.runtime.backend import check_inputs
from superslomo.runtime.tensorrt_backend import (
    check_engine_manifest,
    manifest_profiles,
    plan_buffers,
)

PROFILES = parse_profiles("1x64x64", "1x128x128", "4x256x256", 2)


def engine_folder_manifest(**tensorrt) -> Manifest:
    info = {
        "version": "10.3.0.30",
        "gpu": "Orin",
        "compute_capability": "8.7",
        "profiles": [p.to_json() for p in PROFILES],
        **tensorrt,
    }
    graphs = {
        g: GraphEntry(file=f"{g}.plan", sha256="0" * 64, inputs=[], outputs=[]) for g in ("flow", "interp")
    }
    return Manifest(
        kind="tensorrt",
        precision="fp16",
        warp="gridsample",
        io="float32",
        opset=17,
        graphs=graphs,
        tensorrt=info,
    )


def test_matching_engine_is_accepted():
    check_engine_manifest(engine_folder_manifest(), "10.3.0.30", "Orin", "8.7")
    assert manifest_profiles(engine_folder_manifest()) == PROFILES


@pytest.mark.parametrize(
    "version, gpu, cc, needle",
    [
        ("10.8.0.43", "Orin", "8.7", "built with TensorRT 10.3.0.30 but this is TensorRT 10.8.0.43"),
        ("10.3.0.30", "NVIDIA H100", "9.0", "built for Orin \\(sm 8.7\\) but this GPU is NVIDIA H100"),
    ],
)
def test_mismatched_engine_is_refused_with_a_rebuild_hint(version, gpu, cc, needle):
    with pytest.raises(ManifestError, match=needle) as info:
        check_engine_manifest(engine_folder_manifest(), version, gpu, cc)
    assert "slomo build-engine" in str(info.value)
    assert "\n" not in str(info.value)


def test_compatibility_flags_relax_exactly_what_they_promise():
    hw = engine_folder_manifest(hardware_compatible=True)
    check_engine_manifest(hw, "10.3.0.30", "NVIDIA A100", "8.0")
    with pytest.raises(ManifestError, match="Ampere or newer"):
        check_engine_manifest(hw, "10.3.0.30", "Tesla T4", "7.5")
    vc = engine_folder_manifest(version_compatible=True)
    check_engine_manifest(vc, "10.9.0.34", "Orin", "8.7")
    with pytest.raises(ManifestError):
        check_engine_manifest(vc, "10.2.0.0", "Orin", "8.7")
    with pytest.raises(ManifestError):
        check_engine_manifest(vc, "11.0.0.1", "Orin", "8.7")


def test_onnx_folder_and_incomplete_manifest_are_refused():
    onnx = engine_folder_manifest()
    onnx.kind = "onnx"
    with pytest.raises(ManifestError, match="not an engine folder"):
        check_engine_manifest(onnx, "10.3.0.30", "Orin", "8.7")
    partial = engine_folder_manifest()
    del partial.tensorrt["compute_capability"]
    with pytest.raises(ManifestError, match="lacks tensorrt.compute_capability"):
        check_engine_manifest(partial, "10.3.0.30", "Orin", "8.7")


def test_versions():
    assert TrtVersion.parse("10.3.0.30") == TrtVersion(10, 3, 0)
    assert TrtVersion.parse("11.1") > TrtVersion(10, 13, 5)
    assert versions_compatible("10.3.0.30", "10.3.0.26", False)
    assert not versions_compatible("10.3.0", "10.4.0", False)
    with pytest.raises(SloMoError, match="too old"):
        check_supported(TrtVersion(8, 6, 1))
    with pytest.raises(SloMoError, match="--warp gridsample"):
        check_plugin_supported(TrtVersion(10, 3, 0))
    check_plugin_supported(TrtVersion(11, 0, 0))
    with pytest.raises(SloMoError):
        TrtVersion.parse("banana")


DTYPES = {
    "frame0": np.float16,
    "frame1": np.float16,
    "flow01": np.float32,
    "flow10": np.float32,
    "t": np.float32,
    "frame_t": np.float16,
}


def test_plan_buffers_follow_engine_types_and_shapes():
    specs = {s.name: s for s in plan_buffers("interp", Shape(3, 64, 96), "float32", DTYPES)}
    assert [n for n, s in specs.items() if s.is_input] == ["frame0", "frame1", "flow01", "flow10", "t"]
    assert specs["frame_t"].shape == (3, 3, 64, 96) and not specs["frame_t"].is_input
    assert specs["frame0"].nbytes == 3 * 3 * 64 * 96 * 2
    assert specs["flow01"].nbytes == 3 * 2 * 64 * 96 * 4
    assert specs["t"].nbytes == 12
    flow = plan_buffers("flow", Shape(1, 32, 32), "uint8", {**DTYPES, "frame0": np.uint8, "frame1": np.uint8})
    assert flow[0].shape == (1, 32, 32, 3) and flow[0].dtype == np.uint8
    with pytest.raises(ManifestError, match="no tensor 'frame_t'"):
        plan_buffers(
            "interp", Shape(1, 32, 32), "float32", {k: v for k, v in DTYPES.items() if k != "frame_t"}
        )
    with pytest.raises(SloMoError):
        plan_buffers("refine", Shape(1, 32, 32), "float32", DTYPES)


def test_loader_hands_an_engine_folder_to_the_real_backend(tmp_path, monkeypatch):
    """The loader and TensorRTBackend must agree on arguments: a mismatch breaks every engine run
    and only shows on a GPU, so the real class is called here and must get as far as TensorRT."""
    from superslomo.contracts.files import file_sha256
    from superslomo.contracts.manifest import write_manifest
    from superslomo.contracts.tensorrt_version import TensorRTUnavailable
    from superslomo.runtime import loader

    graphs = {}
    for name in ("flow", "interp"):
        (tmp_path / f"{name}.plan").write_bytes(b"plan " + name.encode())
        graphs[name] = GraphEntry(
            file=f"{name}.plan", sha256=file_sha256(tmp_path / f"{name}.plan"), inputs=[], outputs=[]
        )
    manifest = engine_folder_manifest()
    manifest.graphs = graphs
    write_manifest(tmp_path, manifest)
    from superslomo.runtime.options import TensorRTOptions
    from superslomo.runtime.tensorrt_backend import TensorRTBackend

    monkeypatch.setattr(loader, "tensorrt_usable", lambda: (True, ""))
    backend = loader.open_backend(tmp_path, TensorRTOptions(device=0, pair_slots=3))
    # Lazy: constructing reads the manifest only; TensorRT and CUDA are first touched by activate.
    assert isinstance(backend, TensorRTBackend) and not backend.is_active and backend.max_batch == 4
    assert loader.open_backend(tmp_path, "auto").options == TensorRTOptions()
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(TensorRTUnavailable):
            backend.activate()
    else:  # a GPU machine: the fake plans get as far as TensorRT's deserialiser, which refuses them
        with pytest.raises(SloMoError):
            backend.activate()


def test_interpolator_batches_no_more_times_than_the_engine_profile_takes():
    from superslomo.runtime import Interpolator

    class ProfileCappedBackend:
        manifest = engine_folder_manifest()
        max_batch = max(p.max.n for p in PROFILES)

    assert Interpolator(ProfileCappedBackend(), max_batch=8).max_batch == 4
    assert Interpolator(ProfileCappedBackend(), max_batch=2).max_batch == 2


def test_input_checks_in_the_runner_base_class():
    manifest = engine_folder_manifest()
    frames = {"frame0": np.zeros((2, 3, 64, 96), np.float32), "frame1": np.zeros((2, 3, 64, 96), np.float32)}
    assert check_inputs("flow", frames, manifest) == (2, 64, 96)
    with pytest.raises(SloMoError, match=r"frame1 is 2x64x64 \(NxHxW\), frame0 is 2x64x96"):
        check_inputs("flow", {**frames, "frame1": np.zeros((2, 3, 64, 64), np.float32)}, manifest)
    with pytest.raises(SloMoError, match="inputs missing"):
        check_inputs("interp", frames, manifest)
    flows = {"flow01": np.zeros((2, 2, 64, 96), np.float32), "flow10": np.zeros((2, 2, 64, 96), np.float32)}
    with pytest.raises(SloMoError, match=r"t has shape \(3,\), expected \(2,\)"):
        check_inputs("interp", {**frames, **flows, "t": np.zeros(3, np.float32)}, manifest)
    with pytest.raises(SloMoError, match="flow01 must be 4-D float32, got 4-D float64"):
        check_inputs(
            "interp",
            {**frames, **flows, "flow01": np.zeros((2, 2, 64, 96)), "t": np.zeros(2, np.float32)},
            manifest,
        )
    with pytest.raises(SloMoError, match="multiples of 32"):
        check_inputs("flow", {k: np.zeros((1, 3, 50, 64), np.float32) for k in frames}, manifest)


def test_build_options_are_validated_before_any_gpu_work():
    validate_options(PROFILES, 1024, 3, False, False)
    with pytest.raises(BuildError, match="--builder-level"):
        validate_options(PROFILES, None, 6, False, False)
    with pytest.raises(BuildError, match="--workspace"):
        validate_options(PROFILES, 0, None, False, False)
    with pytest.raises(BuildError, match="profile"):
        validate_options([], None, None, False, False)


def test_engine_manifest_round_trips_through_the_runtime_parser(tmp_path):
    source = engine_folder_manifest()
    source.kind = "onnx"
    source.tensorrt = {}
    plans = {}
    for g in ("flow", "interp"):
        plans[g] = tmp_path / f"{g}.plan"
        plans[g].write_bytes(g.encode() * 10)
    m = engine_manifest(
        source,
        plans,
        "10.3.0.30",
        {"name": "Orin", "compute_capability": "8.7"},
        PROFILES,
        {"flow": "a" * 64, "interp": "b" * 64},
        False,
        False,
        3,
    )
    parsed = parse_manifest(__import__("json").loads(m.to_json()))
    assert parsed.kind == "tensorrt"
    assert parsed.graphs["flow"].file == "flow.plan"
    assert parsed.tensorrt["onnx_sha256"]["interp"] == "b" * 64
    check_engine_manifest(parsed, "10.3.0.30", "Orin", "8.7")
    assert manifest_profiles(parsed) == PROFILES
