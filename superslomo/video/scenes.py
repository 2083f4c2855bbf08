"""Scene-cut detection between consecutive frames (numpy only, on small thumbnails).

A cut changes what is in the picture, not where it is, so the score compares colour
distributions (histograms), which fast motion barely changes; a plain pixel difference would
call every fast pan a cut. Interpolating across a cut morphs two unrelated shots into a ghostly
blend, so the pipeline holds the nearer original instead.
"""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLD = 0.35
_BINS = 16
_THUMB = 64  # longest side of the thumbnail the histograms are taken on


def _thumbnail(frame: np.ndarray) -> np.ndarray:
    step = max(1, max(frame.shape[:2]) // _THUMB)
    return frame[::step, ::step]


def colour_signature(frame: np.ndarray) -> np.ndarray:
    """Normalised joint-ish histogram: per-channel histograms of the thumbnail, concatenated."""
    thumb = _thumbnail(frame)
    bins = (thumb.astype(np.uint16) * _BINS) >> 8  # 0.._BINS-1 per channel
    hist = np.concatenate([np.bincount(bins[..., c].ravel(), minlength=_BINS) for c in range(3)])
    return hist.astype(np.float32) / np.float32(bins[..., 0].size)


def cut_score(sig0: np.ndarray, sig1: np.ndarray) -> float:
    """0 = same colour distribution, 1 = disjoint (1 - histogram intersection, averaged over RGB)."""
    return float(1.0 - np.minimum(sig0, sig1).sum() / 3.0)


def is_cut(sig0: np.ndarray, sig1: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """Whether a shot ends between two frames of these signatures (threshold 1 disables)."""
    return threshold < 1.0 and cut_score(sig0, sig1) > threshold


class SceneDetector:
    """Feed frames in order; `is_cut(frame)` says whether it starts a new shot."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.threshold = threshold
        self._previous: np.ndarray | None = None
        self.scores: list[float] = []

    def is_cut(self, frame: np.ndarray) -> bool:
        signature = colour_signature(frame)
        previous, self._previous = self._previous, signature
        if previous is None or self.threshold >= 1.0:
            return False
        self.scores.append(cut_score(previous, signature))
        return is_cut(previous, signature, self.threshold)
