"""Training footage rules shared by the loop and the teacher labels: what is a cut, what is a
repeated frame, and the integer downscale both apply before they crop."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# A pair whose mean absolute difference exceeds this is a scene cut, not motion.
CUT_MEAN_ABS_DIFF = 0.25
# Consecutive frames this close (mean absolute difference) are one frame shown twice (telecine,
# dropped-frame padding); an in-between of two copies is not real motion, so the copy is dropped.
DUPLICATE_MEAN_ABS_DIFF = 0.002


def downscale(frame: np.ndarray, max_side: int) -> np.ndarray:
    """Box-filtered by the smallest integer factor that brings the longer side to `max_side`."""
    height, width = frame.shape[:2]
    factor = math.ceil(max(height, width) / max_side)
    if factor <= 1:
        return frame
    h, w = height // factor * factor, width // factor * factor
    blocks = frame[:h, :w].reshape(h // factor, factor, w // factor, factor, 3)
    return blocks.mean(axis=(1, 3)).astype(np.uint8)


def drop_duplicates(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The frames without those that repeat their predecessor (see DUPLICATE_MEAN_ABS_DIFF)."""
    kept: list[np.ndarray] = []
    for frame in frames:
        if kept and np.abs(frame.astype(np.int16) - kept[-1]).mean() / 255.0 < DUPLICATE_MEAN_ABS_DIFF:
            continue
        kept.append(frame)
    return kept
