"""ffmpeg's minterpolate as an eval baseline: it must hand back the synthesised middle frame (not a
copy of an input, not a blend), at the input size, scored by the same metric code as the model."""

from __future__ import annotations

import numpy as np
import pytest

from superslomo.errors import SloMoError
from superslomo.eval.metrics import blend, psnr
from superslomo.eval.minterpolate import minterpolate_middle
from tests.conftest import shared_data


def _smooth_scene(height: int, width: int, rng: np.random.Generator, cell: int = 8) -> np.ndarray:
    """Random colour blobs about `cell` pixels across: texture that block matching can lock onto."""
    from PIL import Image

    small = rng.integers(0, 256, (height // cell + 2, width // cell + 2, 3), dtype=np.uint8)
    size = (small.shape[1] * cell, small.shape[0] * cell)
    return np.asarray(Image.fromarray(small).resize(size, Image.BICUBIC))[:height, :width]


def test_minterpolate_follows_a_known_translation():
    # frame0 and frame1 are crops of one scene 8 px apart; the true middle is the crop halfway.
    scene = _smooth_scene(80, 140, np.random.default_rng(3))
    shift, top, left = 4, 8, 20
    f0, middle, f1 = (scene[top : top + 64, left + dx : left + dx + 96] for dx in (-shift, 0, shift))
    out = minterpolate_middle(f0, f1)
    assert out.shape == f0.shape and out.dtype == np.uint8
    assert psnr(out, middle) > psnr(blend(f0, f1), middle) + 2.0  # motion compensated, not blended
    # Neither input: each is much further from the output than the true middle is.
    assert psnr(out, f0) < psnr(out, middle) - 4.0 and psnr(out, f1) < psnr(out, middle) - 4.0


def test_minterpolate_of_a_still_pair_is_the_frame():
    # No motion: the only loss left is the RGB -> YUV 4:4:4 -> RGB round trip, which must stay far
    # below the differences the eval reports (tens of dB).
    frame = _smooth_scene(48, 64, np.random.default_rng(4))
    assert psnr(minterpolate_middle(frame, frame), frame) > 50.0


@pytest.mark.parametrize("width, height", [(317, 251), (20, 13)])
def test_minterpolate_returns_the_input_size(width, height):
    # Odd sizes pass through 4:4:4 untouched; frames under the filter's 32 px minimum are padded
    # for it and cropped back.
    rng = np.random.default_rng(width)
    f0 = _smooth_scene(height, width + 4, rng)
    f1 = np.ascontiguousarray(f0[:, 4:])
    f0 = np.ascontiguousarray(f0[:, :-4])
    out = minterpolate_middle(f0, f1)
    assert out.shape == (height, width, 3)
    assert psnr(out, blend(f0, f1)) > 15.0  # an image of this scene, not garbage from the padding


def test_minterpolate_refuses_mismatched_frames():
    with pytest.raises(SloMoError, match="differ in size"):
        minterpolate_middle(np.zeros((40, 40, 3), np.uint8), np.zeros((40, 48, 3), np.uint8))
    with pytest.raises(SloMoError, match="HxWx3 uint8"):
        minterpolate_middle(np.zeros((40, 40), np.uint8), np.zeros((40, 40), np.uint8))


def test_minterpolate_beats_the_blend_on_real_frames():
    from superslomo.eval.quality import run_eval
    from superslomo.video.frames import read_image

    data = shared_data("ucf101_adacof")
    result = run_eval(data, None, limit=4)
    assert result["count"] == 4 and result["minterpolate"]["method"].startswith("ffmpeg minterpolate")
    assert result["minterpolate"]["psnr"] > result["baseline"]["psnr"] + 1.0
    assert result["minterpolate"]["ssim"] > result["baseline"]["ssim"]
    assert result["minterpolate"]["ie"] < result["baseline"]["ie"]
    # The item figure is the shared metric code applied to the filter's frame, recomputed here.
    first = result["items"][0]
    f0, f2, target = (read_image(data / first["name"] / f"frame{i}.png") for i in (0, 2, 1))
    assert first["minterpolate"]["psnr"] == pytest.approx(psnr(minterpolate_middle(f0, f2), target))
