"""Triplet data sets (frame0, frame1, ground-truth middle frame) in the layouts people have."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from superslomo.errors import SloMoError
from superslomo.video.frames import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    iter_source_frames,
    list_frame_files,
    read_image,
)

LAYOUTS = ("auto", "middlebury", "ucf", "frames")


# Triplet sets the project reports quality on; training, validating or tuning on them would make
# those figures meaningless, so paths naming them are refused (matched on any path component).
EVALUATION_SETS = ("ucf101", "middlebury", "davis", "vimeo", "toflow")


def check_not_evaluation_set(path: str | os.PathLike, role: str) -> None:
    """Refuse a path that names an evaluation set (EVALUATION_SETS) as `role` data."""
    # The path as given and the last components of where it leads (a link may rename a set); not
    # every resolved component, so a home folder called "davis" does not trip it.
    parts = [part.lower() for part in (*Path(path).parts, *Path(path).resolve().parts[-3:])]
    for name in EVALUATION_SETS:
        if any(name in part for part in parts):
            raise SloMoError(
                f"{path} looks like the {name} evaluation set; it cannot be {role} data "
                "(quality is reported on it). Use held-out footage instead, "
                "e.g. ../shared/data/debian_opencv_doc/cup.mp4 (training/README.md)"
            )


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


MIDDLEBURY = ("frame10", "frame11", "frame10i11")
UCF = ("frame0", "frame2", "frame1")

# Middlebury's official downloads keep inputs and ground truth in separate trees
# (other-data/<seq>/frame10,frame11 + other-gt-interp/<seq>/frame10i11); people who rearrange a set
# for other tools use input/ + gt/. Each pair is (inputs folder, ground-truth folder).
SPLIT_TREES = (("other-data", "other-gt-interp"), ("input", "gt"))


def _holders(path: Path, stems: tuple[str, ...]) -> list[Path]:
    """`path` itself when it holds every stem, else its sub-folders that do, in name order."""
    if not path.is_dir():
        return []
    if all(_find(path, s) for s in stems):
        return [path]
    folders = sorted((p for p in path.iterdir() if p.is_dir()), key=lambda p: (len(p.name), p.name))
    return [f for f in folders if all(_find(f, s) for s in stems)]


def _missing_ground_truth(inputs: Path) -> SloMoError:
    return SloMoError(
        f"no ground truth for the input pairs in {inputs} (<seq>/frame10,frame11 without "
        "frame10i11): pass the folder that holds <seq>/frame10i11 with --gt DIR"
    )


def split_roots(path: Path, gt: Path | None = None) -> tuple[Path, Path | None] | None:
    """(inputs, ground truth) of a Middlebury set whose middle frames live in another tree; the
    ground truth is None when it is nowhere to be found. None when `path` is not such a set."""
    if gt is not None:
        inputs = next((path / name for name, _ in SPLIT_TREES if (path / name).is_dir()), path)
        if not _holders(inputs, MIDDLEBURY[:2]):
            raise SloMoError(
                f"--gt names the ground truth of Middlebury-style input pairs, but {inputs} "
                "holds no <seq>/frame10,frame11"
            )
        if not gt.is_dir():
            raise SloMoError(f"ground-truth folder not found: {gt}")
        return inputs, gt
    for inputs_name, gt_name in SPLIT_TREES:
        if (path / inputs_name).is_dir() and _holders(path / inputs_name, MIDDLEBURY[:2]):
            return path / inputs_name, path / gt_name if (path / gt_name).is_dir() else None
        if path.name == inputs_name and (path.parent / gt_name).is_dir() and _holders(path, MIDDLEBURY[:2]):
            return path, path.parent / gt_name
    return None


def detect_layout(path: Path, gt: Path | None = None) -> str:
    if gt is not None:
        split_roots(path, gt)  # raises when the inputs or the ground truth are not there
        return "middlebury"
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
    split = split_roots(path)
    if split is not None:
        if split[1] is None:
            raise _missing_ground_truth(split[0])
        return "middlebury"
    if len(list_frame_files(path)) >= 3:
        return "frames"
    if _holders(path, MIDDLEBURY[:2]):
        raise _missing_ground_truth(path)
    raise SloMoError(
        f"cannot tell the layout of {path}: expected <seq>/frame0,frame1,frame2 (ucf), "
        "<seq>/frame10,frame10i11,frame11 (middlebury; or other-data/ + other-gt-interp/, input/ + gt/, "
        "--gt DIR), or a folder of >= 3 frames or a video"
    )


def ground_truth_root(
    path: str | os.PathLike, layout: str = "auto", gt: str | os.PathLike | None = None
) -> Path | None:
    """Where the middle frames of a Middlebury set come from when they are not beside the inputs
    (None otherwise); raises when they are missing. `layout` is the resolved one."""
    path, gt = Path(path), Path(gt) if gt is not None else None
    if layout != "middlebury":
        if gt is not None:
            raise SloMoError(
                f"--gt is for Middlebury-style input pairs; the {layout} layout holds its own ground truth"
            )
        return None
    split = split_roots(path, gt)
    if split is None:
        if not _holders(path, MIDDLEBURY) and _holders(path, MIDDLEBURY[:2]):
            raise _missing_ground_truth(path)
        return None
    if split[1] is None:
        raise _missing_ground_truth(split[0])
    return split[1]


def _folder_triplets(path: Path, names: tuple[str, str, str]) -> Iterator[Triplet]:
    found = False
    for folder in _holders(path, names):
        found = True
        f0, f1, target = (read_image(_find(folder, n)) for n in names)  # type: ignore[arg-type]
        yield Triplet(folder.name, f0, f1, target)
    if not found:
        raise SloMoError(f"no {'/'.join(names)} triplets found under {path}")


def _split_triplets(inputs: Path, gt: Path) -> Iterator[Triplet]:
    """Input pairs from one tree, middle frames from the other, paired by sequence name."""
    folders = _holders(inputs, MIDDLEBURY[:2])
    if folders == [inputs]:  # one sequence's folder given directly: its ground truth is gt itself
        targets = {inputs.name: _find(gt, MIDDLEBURY[2]) or _find(gt / inputs.name, MIDDLEBURY[2])}
    else:
        targets = {f.name: _find(gt / f.name, MIDDLEBURY[2]) for f in folders}
    missing = sorted(name for name, target in targets.items() if target is None)
    if not folders:
        raise SloMoError(f"no <seq>/frame10,frame11 input pairs found under {inputs}")
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise SloMoError(
            f"no ground truth (frame10i11) in {gt} for {len(missing)} of {len(folders)} sequence(s): {shown}"
        )
    for folder in folders:
        f0, f1 = (read_image(_find(folder, n)) for n in MIDDLEBURY[:2])  # type: ignore[arg-type]
        yield Triplet(folder.name, f0, f1, read_image(targets[folder.name]))  # type: ignore[arg-type]


def iter_triplets(
    path: str | os.PathLike,
    layout: str = "auto",
    limit: int | None = None,
    gt: str | os.PathLike | None = None,
) -> Iterator[Triplet]:
    """Triplets from ucf (frame0/1/2, frame1 is the target), middlebury (frame10, frame10i11,
    frame11; beside each other, or the middle frames in a separate tree: other-gt-interp/, gt/ or
    `gt`) or frames (every other frame of a folder or video is held out as the target)."""
    path = Path(path)
    if layout not in LAYOUTS:
        raise SloMoError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if not path.exists():
        raise SloMoError(f"data set not found: {path}")
    if layout == "auto":
        layout = detect_layout(path, Path(gt) if gt is not None else None)
    gt_root = ground_truth_root(path, layout, gt)
    if layout == "ucf":
        source = _folder_triplets(path, UCF)
    elif layout == "middlebury" and gt_root is not None:
        split = split_roots(path, gt_root)
        source = _split_triplets(split[0] if split else path, gt_root)
    elif layout == "middlebury":
        source = _folder_triplets(path, MIDDLEBURY)
    else:
        if path.is_dir() and not list_frame_files(path):
            raise SloMoError(f"no image frames in {path}")
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            raise SloMoError(f"{path} is one image; the frames layout needs a folder or a video")
        source = _every_other(path)
    for count, triplet in enumerate(source, 1):
        if triplet.frame0.shape != triplet.frame1.shape or triplet.frame0.shape != triplet.target.shape:
            raise SloMoError(f"{path}/{triplet.name}: frames of a triplet differ in size")
        yield triplet
        if limit is not None and count >= limit:
            return


def iter_pairs(path: str | os.PathLike) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, frame0, frame1) of each sequence of a triplet data set, ground truth or not: ucf
    (frame0, frame2) and Middlebury (frame10, frame11, in any of its trees)."""
    path = Path(path)
    split = split_roots(path)
    inputs = split[0] if split is not None else path
    for stems in (UCF[:2], MIDDLEBURY[:2]):
        folders = _holders(inputs, stems)
        if folders:
            for folder in folders:
                yield (folder.name, *(read_image(_find(folder, s)) for s in stems))  # type: ignore[misc]
            return
    raise SloMoError(f"no <seq>/frame0,frame2 or <seq>/frame10,frame11 pairs found under {path}")


def _every_other(path: Path) -> Iterator[Triplet]:
    """Every other frame held out as the target of its neighbours. A triplet that spans a scene
    cut is skipped (nothing can predict the other shot's frame from this one's); a video's
    target sits at its own time between its neighbours (t from timestamps: variable-rate clips
    are not all at the middle)."""
    from superslomo.video.scenes import SceneDetector

    detector = SceneDetector()
    window: list[tuple[np.ndarray, Fraction, bool]] = []
    index = 0
    for frame, when in _timed_frames(path):
        window.append((frame, when, detector.is_cut(frame)))
        if len(window) == 3:
            (f0, t0, _), (f1, t1, cut1), (f2, t2, cut2) = window
            if not (cut1 or cut2):
                yield Triplet(f"{index:05d}", f0, f2, f1, float((t1 - t0) / (t2 - t0)))
            index += 2
            window = [window[2]]


def _timed_frames(path: Path) -> Iterator[tuple[np.ndarray, Fraction]]:
    """(frame, seconds): a video's from its timestamps, a folder's at one frame per second."""
    if path.is_dir():
        for index, frame in enumerate(iter_source_frames(path)):
            yield frame, Fraction(index)
        return
    from superslomo.video.decode import decode_frames, probe

    for decoded in decode_frames(probe(path)):
        yield decoded.image, decoded.time
