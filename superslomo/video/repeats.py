"""Repeated frames (`slomo interpolate --dedup`): animation drawn on twos or threes, screen
captures and film transferred at a higher rate repeat frames, exactly or with a little coding
noise. Interpolating between two copies makes the same picture again, so the motion stutters:
hold, move, hold. Dropping the repeats and letting the timeline place the remaining frames by
their own times makes the model interpolate across the real interval, so motion is spread
evenly; the output's rate and duration do not change."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

# A repeat: no 16x16 block's mean level moves by more than this (of 255). Coding noise on a
# re-encoded copy moves block means by a few tenths; the smallest real motion worth
# interpolating (a 4-pixel object moving by 2 pixels) moves its block's mean by several levels.
BLOCK = 16
MAX_BLOCK_CHANGE = 1.5


def _block_means(image: np.ndarray) -> np.ndarray:
    """Mean grey level of each 16x16 block (the edge repeated to whole blocks)."""
    grey = image.astype(np.float32).mean(axis=2)
    height, width = grey.shape
    grey = np.pad(grey, ((0, -height % BLOCK), (0, -width % BLOCK)), mode="edge")
    rows, cols = grey.shape[0] // BLOCK, grey.shape[1] // BLOCK
    return grey.reshape(rows, BLOCK, cols, BLOCK).mean(axis=(1, 3))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and float(np.abs(a - b).max()) <= MAX_BLOCK_CHANGE


class RepeatFilter:
    """Drops each frame that repeats the last kept one; the stream's last frame is always kept
    (it ends the video, so the output lasts as long as the source). Items are (image, time,
    native) tuples, as decode_frames yields them; `dropped` counts what was left out."""

    def __init__(self) -> None:
        self.dropped = 0

    def __call__(self, frames: Iterable) -> Iterator:
        kept_means = None
        pending = None  # the last dropped frame: kept after all if nothing follows it
        for item in frames:
            means = _block_means(item[0])
            if kept_means is not None and _same(kept_means, means):
                pending = item
                self.dropped += 1
                continue
            pending = None
            kept_means = means
            yield item
        if pending is not None:
            self.dropped -= 1
            yield pending
