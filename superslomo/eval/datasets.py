"""Triplet data sets (frame0, frame1, ground-truth middle frame) in the layouts people have."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from superslomo.errors import SloMoError
from superslomo.video.frames import IMAGE_SUFFIXES, VIDEO_SUFFIXES, iter_source_frames, list_frame_files, read_image

LAYOUTS = ("auto", "middlebury", "ucf", "frames")


@dataclass
class Triplet:
    name: str
    frame0: np.ndarray
    frame1: np.ndarray
    target: np.ndarray
    t: float = 0.5


def _find(folder: Path, stem: str) -> Path | None:
    for suffix in (".png", ".jpg", ".jpeg", ".bmp"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def detect_layout(path: Path) -> str:
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return "frames"
    if not path.is_dir():
        raise SloMoError(f"data set not found: {path}")
    candidates = [path, *sorted(p for p in path.iterdir() if p.is_dir())]
    for folder in candidates:
        if _find(folder, "frame0") and _find(folder, "frame1") and _find(folder, "frame2"):
            return "ucf"
        if _find(folder, "frame10") and _find(folder, "frame11") and _find(folder, "frame10i11"):
            return "middlebury"
    if len(list_frame_files(path)) >= 3:
        return "frames"
    raise SloMoError(
        f"cannot tell the layout of {path}: expected <seq>/frame0,frame1,frame2 (ucf), "
        "<seq>/frame10,frame10i11,frame11 (middlebury), or a folder of >= 3 frames or a video"
    )


def _folder_triplets(path: Path, names: tuple[str, str, str]) -> Iterator[Triplet]:
    folders = [path] if _find(path, names[0]) else sorted(
        (p for p in path.iterdir() if p.is_dir()), key=lambda p: (len(p.name), p.name)
    )
    found = False
    for folder in folders:
        files = [_find(folder, n) for n in names]
        if all(files):
            found = True
            f0, f1, target = (read_image(f) for f in files)  # type: ignore[arg-type]
            yield Triplet(folder.name, f0, f1, target)
    if not found:
        raise SloMoError(f"no {'/'.join(names)} triplets found under {path}")


def iter_triplets(path: str | os.PathLike, layout: str = "auto", limit: int | None = None) -> Iterator[Triplet]:
    """Triplets from ucf (frame0/1/2, frame1 is the target), middlebury (frame10, frame10i11,
    frame11) or frames (every other frame of a folder or video is held out as the target)."""
    path = Path(path)
    if layout not in LAYOUTS:
        raise SloMoError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if not path.exists():
        raise SloMoError(f"data set not found: {path}")
    if layout == "auto":
        layout = detect_layout(path)
    count = 0
    if layout == "ucf":
        source = _folder_triplets(path, ("frame0", "frame2", "frame1"))
    elif layout == "middlebury":
        source = _folder_triplets(path, ("frame10", "frame11", "frame10i11"))
    else:
        if path.is_dir() and not list_frame_files(path):
            raise SloMoError(f"no image frames in {path}")
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            raise SloMoError(f"{path} is one image; the frames layout needs a folder or a video")
        source = _every_other(path)
    for triplet in source:
        if triplet.frame0.shape != triplet.frame1.shape or triplet.frame0.shape != triplet.target.shape:
            raise SloMoError(f"{path}/{triplet.name}: frames of a triplet differ in size")
        yield triplet
        count += 1
        if limit is not None and count >= limit:
            return


def _every_other(path: Path) -> Iterator[Triplet]:
    window: list[np.ndarray] = []
    index = 0
    for frame in iter_source_frames(path):
        window.append(frame)
        if len(window) == 3:
            yield Triplet(f"{index:05d}", window[0], window[2], window[1])
            index += 2
            window = [window[2]]
