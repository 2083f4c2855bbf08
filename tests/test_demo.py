"""`make demo` on a bare clone: the shipped clip and the pieces that turn its result into a picture
and an animation (the full run, a minute or more on a CPU, is `make demo` itself)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

DEMO = Path(__file__).resolve().parents[1] / "demo"


def load_demo():
    spec = importlib.util.spec_from_file_location("demo_run", DEMO / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_the_clip_ships_with_its_licence_and_decodes():
    from superslomo.video.decode import decode_frames, probe

    clip = DEMO / "big_buck_bunny_bird.mp4"
    assert clip.stat().st_size <= 2 * 1024 * 1024
    notice = (DEMO / "README.md").read_text()
    assert "Creative Commons Attribution 3.0" in notice and "Blender Foundation" in notice
    assert "MIT" in (DEMO / "LICENCE-moviepy.txt").read_text()
    info = probe(clip)
    assert (info.width, info.height, info.rate, info.has_audio) == (640, 360, 24, True)
    assert sum(1 for _ in decode_frames(info)) == 60


def moving_square(offset: int, size=(90, 160), colour=200) -> np.ndarray:
    frame = np.full((*size, 3), 40, np.uint8)
    frame[30:50, 100 + offset : 120 + offset] = colour
    return frame


def test_busiest_window_covers_the_motion():
    demo = load_demo()
    top, left, height, width = demo.busiest_window(moving_square(0), moving_square(8))
    assert (height, width) == (22, 40)
    # The changed pixels are rows 30-49, columns 100-127: the window must overlap most of them.
    rows = set(range(top, top + height)) & set(range(30, 50))
    cols = set(range(left, left + width)) & set(range(100, 128))
    assert len(rows) >= 18 and len(cols) >= 24


def test_busiest_pair_skips_scene_cuts():
    demo = load_demo()
    rng = np.random.default_rng(0)
    cut = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)  # unrelated content: the biggest difference
    frames = [moving_square(0), moving_square(2), moving_square(10), cut, cut]
    assert demo.busiest_pair(frames) == 1


def test_picture_and_animation_are_written(tmp_path):
    from PIL import Image

    demo = load_demo()
    frames = [moving_square(2 * k) for k in range(6)]
    window = demo.busiest_window(frames[0], frames[1])
    picture = demo.side_by_side([(f"p{i}", frames[i]) for i in range(4)], window)
    assert picture.size[0] >= 4 * 160 and picture.size[1] > 90 + 22 * demo.ZOOM
    result = [moving_square(k // 2 * 2 + k % 2) for k in range(12)]  # 2x: a new frame between each pair
    count = demo.preview(frames, result, 0, 2, tmp_path / "a.gif")
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == count == 12
