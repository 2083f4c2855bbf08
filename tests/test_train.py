"""Training: losses decrease on real motion, checkpoints resume, bad options are refused."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from superslomo.errors import SloMoError
from superslomo.model import load_checkpoint
from superslomo.training.loop import FramePool, TrainConfig, train, training_loss


def _clip(folder, count=8, size=(96, 128)):
    """A textured pattern translating 2 px per frame: flow the network can learn quickly."""
    from PIL import Image

    rng = np.random.default_rng(0)
    texture = (rng.random((size[0] // 8, (size[1] + 4 * count) // 8, 3)) * 255).astype(np.uint8)
    texture = np.kron(texture, np.ones((8, 8, 1), np.uint8))
    folder.mkdir()
    for i in range(count):
        Image.fromarray(texture[:, 2 * i : 2 * i + size[1]]).save(folder / f"{i:03d}.png")
    return folder


@pytest.mark.parametrize("crop, shape", [(64, (64, 64, 3)), ((64, 96), (64, 96, 3))])
def test_frame_pool_samples_windows_with_matching_t(tmp_path, crop, shape):
    pool = FramePool(
        [str(_clip(tmp_path / "clip"))], crop=crop, max_gap=3, max_side=640, per_source=100, seed=0
    )
    for _ in range(20):
        f0, ft, f1, t = pool.sample()
        assert f0.shape == ft.shape == f1.shape == shape
        assert min(abs(t - v) for v in (1 / 3, 2 / 3, 0.5)) < 1e-9, t


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_static_fraction_repeats_one_frame_in_that_share_of_samples(tmp_path, fraction):
    pool = FramePool(
        [str(_clip(tmp_path / "clip"))],
        crop=64,
        max_gap=3,
        max_side=640,
        per_source=100,
        seed=0,
        static_fraction=fraction,
    )
    static = 0
    for _ in range(200):
        f0, ft, f1, _t = pool.sample()
        static += bool(np.array_equal(f0, ft) and np.array_equal(ft, f1))
    assert abs(static / 200 - fraction) < 0.1  # the clip moves every frame: only the repeats are still


def _tiny_config(clip, out, **changes) -> TrainConfig:
    """A width-4 model on 64 px crops: seconds per run, enough to see the loss move."""
    options = {"width": 4, "crop": 64, "batch": 2, "learning_rate": 1e-3, "threads": 1, **changes}
    return TrainConfig(data=[str(clip)], output=str(out), **options)


def test_training_reduces_the_loss_and_resumes(tmp_path):
    torch.manual_seed(0)
    clip = _clip(tmp_path / "clip")
    out = tmp_path / "m.safetensors"
    config = _tiny_config(clip, out, steps=30, save_every=10)
    pool = FramePool([str(clip)], 64, 4, 640, 100, seed=5)
    batch = pool.batch(4)
    from superslomo.model import super_slomo

    torch.manual_seed(0)
    before = training_loss(super_slomo(width=4), *batch)[0].item()
    history = train(config)
    assert history["steps"] == 30
    trained = load_checkpoint(out)
    after = training_loss(trained.train(), *batch)[0].item()
    assert after < before, f"loss {before:.3f} -> {after:.3f}"
    resumed = train(TrainConfig(**{**config.__dict__, "steps": 35, "resume": str(out)}))
    assert resumed["steps"] == 35 and resumed["samples"] == 70


def test_cli_train_refuses_bad_options(tmp_path):
    cases = ((["--crop", "100"], "multiple of 32"), (["--data", str(tmp_path / "none")], "not found"))
    for args, message in cases:
        base = ["--data", str(tmp_path)] if "--data" not in args else []
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "superslomo.cli",
                "train",
                *base,
                *args,
                "-o",
                str(tmp_path / "m.safetensors"),
            ],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("perceptual", [True])
def test_perceptual_loss_needs_user_weights(tmp_path, perceptual):
    from superslomo.errors import SloMoError

    with pytest.raises(SloMoError, match="VGG16"):
        train(
            TrainConfig(data=[str(tmp_path)], output=str(tmp_path / "m.safetensors"), vgg16_weights="vgg.pth")
        )


def test_new_runs_train_the_exact_warp_and_resumed_runs_keep_their_own(tmp_path):
    from superslomo.errors import SloMoError
    from superslomo.model.checkpoint import inspect_checkpoint

    clip = str(_clip(tmp_path / "clip"))
    base = {"data": [clip], "width": 4, "crop": 64, "batch": 1, "steps": 1, "save_every": 1, "threads": 1}
    new = tmp_path / "new.safetensors"
    train(TrainConfig(output=str(new), **base))
    assert inspect_checkpoint(new).warp == "exact"
    old = tmp_path / "old.safetensors"
    train(TrainConfig(output=str(old), warp="reference", **base))
    assert load_checkpoint(old).config.warp == "reference"
    # Resuming without --warp keeps the checkpoint's (not the new-run default) ...
    train(TrainConfig(output=str(old), resume=str(old), **{**base, "steps": 2}))
    assert load_checkpoint(old).config.warp == "reference"
    # ... and asking for the other one is refused rather than silently retraining under it.
    with pytest.raises(SloMoError, match="trained with the reference warp"):
        train(TrainConfig(output=str(old), resume=str(old), warp="exact", **{**base, "steps": 3}))


def test_training_losses_warp_with_the_models_convention():
    import torch.nn.functional as F

    from superslomo.model import super_slomo
    from superslomo.model.warp import backwarp

    torch.manual_seed(0)
    model = super_slomo(width=4, warp="exact")
    with torch.no_grad():
        model.flow_net.conv3.weight.mul_(20.0)  # flows of a few pixels, so the conventions differ
    f0, ft, f1 = (torch.rand(2, 3, 64, 64) for _ in range(3))
    t = torch.tensor([0.5, 0.3])
    parts = training_loss(model, f0, ft, f1, t)[1]
    with torch.no_grad():
        flow01, flow10 = model.flow(f0, f1)
        out = model.synthesize_with_intermediates(f0, f1, flow01, flow10, t)

    def warp_loss(convention):
        pairs = ((f0, out["flow_t0"], ft), (f1, out["flow_t1"], ft), (f1, flow01, f0), (f0, flow10, f1))
        return float(
            sum(F.l1_loss(backwarp(image, flow, convention), target) for image, flow, target in pairs)
        )

    assert parts["warp"] == pytest.approx(warp_loss("exact"), abs=1e-6)
    assert abs(warp_loss("reference") - warp_loss("exact")) > 1e-5


def test_cli_train_refuses_an_unknown_warp(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "superslomo.cli",
            "train",
            "--data",
            str(tmp_path),
            "--warp",
            "sideways",
            "-o",
            str(tmp_path / "m.safetensors"),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stderr.startswith("error: unknown --warp")
    assert result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "m.safetensors").exists()


def test_the_weight_average_is_what_is_validated_kept_and_resumed(tmp_path):
    from superslomo.training.loop import _state_paths

    clip = _clip(tmp_path / "clip")
    held_out = _clip(tmp_path / "held_out")
    out = tmp_path / "m.safetensors"
    validated = []

    def remember(model, result, metadata):
        validated.append({k: v.clone() for k, v in model.state_dict().items()})

    config = _tiny_config(
        clip,
        out,
        steps=6,
        save_every=3,
        validation=str(held_out),
        validate_every=6,
        validation_count=2,
        ema_decay=0.5,
        on_validation=remember,
    )
    torch.manual_seed(0)
    train(config)
    average = torch.load(_state_paths(out), weights_only=True)["average"]
    raw = load_checkpoint(out).state_dict()
    assert validated and all(torch.equal(validated[-1][k], average[k]) for k in average)
    assert any(not torch.allclose(raw[k], average[k]) for k in average)  # the average lags the raw weights
    # A resumed run goes on with the saved average, not a fresh copy of the raw weights.
    train(TrainConfig(**{**config.__dict__, "steps": 7, "resume": str(out), "on_validation": None}))
    resumed = torch.load(_state_paths(out), weights_only=True)["average"]
    raw = load_checkpoint(out).state_dict()
    for name, value in resumed.items():
        torch.testing.assert_close(value, average[name].lerp(raw[name], 0.5), rtol=0, atol=1e-6)


def test_train_refuses_a_weight_average_decay_outside_0_1(tmp_path):
    clip = _clip(tmp_path / "clip")
    with pytest.raises(SloMoError, match="decay must be in"):
        train(
            TrainConfig(
                data=[str(clip)], output=str(tmp_path / "m.safetensors"), width=4, crop=64, ema_decay=1.0
            )
        )
