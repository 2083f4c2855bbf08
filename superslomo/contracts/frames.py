"""Frames on the host (HxWx3 uint8 RGB, any size) <-> what the graphs take (numpy only).

The graphs run at multiples of SIZE_MULTIPLE: frames are padded by replicating their right and
bottom edges (no new content at the seams) and results are cropped back.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from superslomo.contracts.graph_io import SIZE_MULTIPLE
from superslomo.errors import SloMoError


def padded_size(height: int, width: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """(height, width) rounded up to the graphs' size multiple; note the order: height first."""
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
    height, width = frame.shape[:2]
    ph, pw = padded_size(height, width, multiple)
    if (ph, pw) == (height, width):
        return frame
    return np.pad(frame, ((0, ph - height), (0, pw - width), (0, 0)), mode="edge")


def crop_frame(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    return frame[:height, :width]


def to_graph_frames(frames: np.ndarray, io: str = "float32") -> np.ndarray:
    """NxHxWx3 uint8 -> what a graph with this io takes: the same uint8 NHWC, or float32 NCHW in
    [0,1]. No padding: H and W must already be multiples (see frame_to_graph)."""
    if io == "uint8":
        return np.ascontiguousarray(frames)
    return np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


def frame_to_graph(frame: np.ndarray, io: str = "float32", multiple: int = SIZE_MULTIPLE) -> np.ndarray:
    """One HxWx3 uint8 frame -> a batch of one in graph layout, edge-padded to the multiple."""
    return to_graph_frames(pad_frame(frame, multiple)[None], io)


def graph_to_frames(
    frames: np.ndarray, height: int, width: int, io: str = "float32", as_float: bool = False
) -> list[np.ndarray]:
    """A graph's frame_t batch -> HxWx3 frames cropped to (height, width): uint8 (rounded to
    nearest, clamped), or float32 in [0,1] unclamped with `as_float` (for parity checks)."""
    result = []
    for frame in frames:
        if io == "uint8":
            image = crop_frame(frame, height, width)
            result.append(image.astype(np.float32) / 255.0 if as_float else np.ascontiguousarray(image))
            continue
        image = crop_frame(frame.transpose(1, 2, 0), height, width)
        if as_float:
            result.append(np.ascontiguousarray(image))
        else:
            result.append((np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    return result


def interp_inputs(
    frame0: np.ndarray, frame1: np.ndarray, flow01: np.ndarray, flow10: np.ndarray, times: Sequence[float]
) -> dict[str, np.ndarray]:
    """The interpolation graph's inputs for one pair (batch of one) at several times: the pair is
    repeated along the batch, one time per sample."""
    n = len(times)

    def batch(array: np.ndarray) -> np.ndarray:  # one time (every 2x job): no 12 MB copies per frame
        return array if n == 1 and array.shape[0] == 1 else np.repeat(array, n, axis=0)

    return {
        "frame0": batch(frame0),
        "frame1": batch(frame1),
        "flow01": batch(flow01),
        "flow10": batch(flow10),
        "t": np.asarray(times, dtype=np.float32),
    }
