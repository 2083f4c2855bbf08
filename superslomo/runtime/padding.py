"""Padding frames to the graphs' size multiple and cropping results back (numpy only)."""

from __future__ import annotations

import numpy as np

from superslomo.errors import SloMoError
from superslomo.runtime.manifest import SIZE_MULTIPLE


def padded_size(height: int, width: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def check_frame(frame: np.ndarray, name: str = "frame") -> np.ndarray:
    """An HxWx3 uint8 RGB frame, or a one-line error saying what it is instead."""
    if not isinstance(frame, np.ndarray):
        raise SloMoError(f"{name} must be a numpy array, got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise SloMoError(f"{name} must be HxWx3 RGB, got shape {frame.shape}")
    if frame.dtype != np.uint8:
        raise SloMoError(f"{name} must be uint8, got {frame.dtype}")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise SloMoError(f"{name} is empty: {frame.shape}")
    return frame


def pad_frame(frame: np.ndarray, multiple: int = SIZE_MULTIPLE) -> np.ndarray:
    """Replicate the right and bottom edges up to the next multiple (no new content at the seams)."""
    height, width = frame.shape[:2]
    ph, pw = padded_size(height, width, multiple)
    if (ph, pw) == (height, width):
        return frame
    return np.pad(frame, ((0, ph - height), (0, pw - width), (0, 0)), mode="edge")


def crop_frame(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    return frame[:height, :width]
