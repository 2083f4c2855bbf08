"""Choosing calibration triplets from footage: spread over every clip, streamed, deterministic.

A calibration set must look like what the model will see: motion from the whole of each clip
(the first seconds of a film are titles), no scene cuts (a cut's "flow" is noise the network
never produces on usable pairs) and no repeated frames (telecine or frozen video gives zero
motion and narrows every activation range). Each sample is a triplet f(i), f(i+1), f(i+2): the
outer frames are the pair, the middle one is ground truth for the accuracy report at t = 0.5.

Memory stays bounded by the number of pairs at the calibration size, never by video length:
frames are counted by demuxing (no decoding), each clip's triplets are split into equal
segments, and one seeded reservoir of size 1 per segment keeps a single candidate as frames
stream past. A small reserve (also a reservoir) refills segments whose every triplet was
rejected, e.g. a segment of frozen frames.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from superslomo.errors import SloMoError
from superslomo.video.frames import IMAGE_SUFFIXES, list_frame_files, read_image
from superslomo.video.scenes import DEFAULT_THRESHOLD, colour_signature, cut_score

# Mean absolute difference (grey levels, thumbnail) below which two consecutive frames are "the
# same picture". Encoders code a repeated frame as skipped blocks (difference ~0), while slow real
# motion still moves a grey level or so on average: the threshold sits well below that.
DEFAULT_DUPLICATE_LEVEL = 0.25
RESERVE_LIMIT = 64


@dataclass
class Sample:
    source: int  # index into the inputs
    index: int  # frame index of the triplet's first frame in its source
    frame0: np.ndarray  # HxWx3 uint8 at the calibration size
    target: np.ndarray
    frame1: np.ndarray


@dataclass
class Source:
    path: Path
    frames: int

    @property
    def triplets(self) -> int:
        return max(0, self.frames - 2)


def count_frames(path: Path) -> int:
    """Frames in a folder of images, or video packets of a video (demuxed, not decoded)."""
    if path.is_dir():
        return len(list_frame_files(path))
    import av

    from superslomo.video.decode import probe

    probe(path)  # refuses non-videos and oversized ones with a one-line message
    with av.open(str(path), metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        try:
            return sum(1 for packet in container.demux(stream) if packet.size)
        except av.error.FFmpegError as error:
            raise SloMoError(f"cannot read {path}: {str(error).splitlines()[0]}") from None


def open_sources(inputs: Sequence[str | os.PathLike]) -> list[Source]:
    if not inputs:
        raise SloMoError("no inputs: give videos and/or folders of frames")
    sources = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise SloMoError(f"input not found: {path}")
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            raise SloMoError(f"{path} is one image; give a video or a folder of consecutive frames")
        sources.append(Source(path, count_frames(path)))
    return sources


def _iter_frames(path: Path) -> Iterator[np.ndarray]:
    if path.is_dir():
        for file in list_frame_files(path):
            yield read_image(file)
        return
    from superslomo.video.decode import decode_frames, probe

    for decoded in decode_frames(probe(path)):
        yield decoded[0]  # the RGB image; the rest (time, native frame) is for re-encoding


def allocate(counts: Sequence[int], pairs: int) -> list[int]:
    """Pairs per source, proportional to its triplets (largest remainder), never more than it has."""
    total = sum(counts)
    if total == 0:
        return [0] * len(counts)
    wanted = min(pairs, total)
    exact = [wanted * c / total for c in counts]
    quota = [min(int(e), c) for e, c in zip(exact, counts, strict=False)]
    order = sorted(range(len(counts)), key=lambda i: (-(exact[i] - int(exact[i])), i))
    while sum(quota) < wanted:
        for i in order:
            if sum(quota) < wanted and quota[i] < counts[i]:
                quota[i] += 1
    return quota


def fit_frame(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale to fit inside width x height (aspect kept), then replicate edges to fill it.

    Edge replication, as the runtime pads, rather than black bars: a black border is a strong
    edge the network never sees at inference and it would stretch the activation ranges."""
    from PIL import Image

    h, w = frame.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    if (new_w, new_h) != (w, h):
        frame = np.asarray(Image.fromarray(frame).resize((new_w, new_h), Image.Resampling.BILINEAR))
    return np.pad(frame, ((0, height - new_h), (0, width - new_w), (0, 0)), mode="edge")


def _thumb_grey(frame: np.ndarray) -> np.ndarray:
    step = max(1, max(frame.shape[:2]) // 128)
    return frame[::step, ::step].astype(np.float32).mean(axis=2)


@dataclass
class Rejections:
    scene_cut: int = 0
    duplicate: int = 0


def triplet_problem(
    frames: Sequence[np.ndarray],
    signatures: Sequence[np.ndarray],
    scene_threshold: float,
    duplicate_level: float,
) -> str | None:
    """Why a triplet is unusable ("scene_cut", "duplicate") or None."""
    if any(cut_score(a, b) > scene_threshold for a, b in zip(signatures, signatures[1:], strict=False)):
        return "scene_cut"
    # Either half repeating is enough to reject: its flow would be zero by construction.
    greys = [_thumb_grey(f) for f in frames]
    if min(float(np.abs(a - b).mean()) for a, b in zip(greys, greys[1:], strict=False)) < duplicate_level:
        return "duplicate"
    return None


def sample_triplets(
    sources: Sequence[Source],
    pairs: int,
    size: tuple[int, int],
    seed: int = 0,
    scene_threshold: float = DEFAULT_THRESHOLD,
    duplicate_level: float = DEFAULT_DUPLICATE_LEVEL,
    on_frame: Callable[[], None] | None = None,
    rejections: Rejections | None = None,
) -> Iterator[Sample]:
    """Yield exactly `pairs` samples (raising if the inputs cannot supply them), in input order."""
    if pairs < 1:
        raise SloMoError(f"--pairs must be at least 1, got {pairs}")
    width, height = size
    rejections = rejections if rejections is not None else Rejections()
    rng = np.random.default_rng(seed)
    quotas = allocate([s.triplets for s in sources], pairs)
    if sum(quotas) < pairs:
        have = sum(s.triplets for s in sources)
        raise SloMoError(
            f"the inputs hold {have} frame triplets; cannot sample {pairs} pairs "
            "(lower --pairs or add footage)"
        )
    reserve: list[tuple[float, Sample]] = []  # (key, sample): the highest keys are kept
    reserve_size = min(RESERVE_LIMIT, pairs)
    emitted = 0
    for number, (source, quota) in enumerate(zip(sources, quotas, strict=False)):
        if quota == 0:
            continue
        # Segment j holds triplet starts [bounds[j], bounds[j+1]).
        bounds = np.linspace(0, source.triplets, quota + 1).round().astype(int)
        segment = 0
        best: tuple[float, Sample] | None = None
        seen = 0  # accepted candidates in the current segment (reservoir count)
        window: list[np.ndarray] = []
        signatures: list[np.ndarray] = []
        index = -1

        def close_segment() -> Iterator[Sample]:
            nonlocal best, seen, segment, emitted
            if best is not None:
                emitted += 1
                yield best[1]
            best, seen = None, 0
            segment += 1

        for index, frame in enumerate(_iter_frames(source.path)):
            if on_frame is not None:
                on_frame()
            window.append(frame)
            signatures.append(colour_signature(frame))
            if len(window) > 3:
                window.pop(0)
                signatures.pop(0)
            if len(window) < 3:
                continue
            start = index - 2
            while segment < quota and start >= bounds[segment + 1]:
                yield from close_segment()
            if segment >= quota:
                break
            problem = triplet_problem(window, signatures, scene_threshold, duplicate_level)
            if problem is not None:
                setattr(rejections, problem, getattr(rejections, problem) + 1)
                continue
            key = float(rng.random())
            seen += 1
            # Reservoir of one: the k-th candidate replaces the kept one with probability 1/k.
            keep = best is None or rng.random() < 1.0 / seen
            if keep or len(reserve) < reserve_size or key > reserve[0][0]:
                fitted = Sample(number, start, *(fit_frame(f, width, height) for f in window))
                if keep:
                    if best is not None:
                        _offer(reserve, reserve_size, best)
                    best = (key, fitted)
                else:
                    _offer(reserve, reserve_size, (key, fitted))
        while segment < quota:
            yield from close_segment()
    reserve.sort(key=lambda item: (item[1].source, item[1].index))
    missing = pairs - emitted
    if missing > len(reserve):
        raise SloMoError(
            f"only {emitted + len(reserve)} usable pairs in the inputs (need {pairs}; rejected "
            f"{rejections.scene_cut} scene cuts, {rejections.duplicate} repeated frames): "
            "lower --pairs or add footage"
        )
    # Refill from the reserve spread over it, not its first entries.
    for position in np.linspace(0, len(reserve) - 1, missing).round().astype(int) if missing else []:
        yield reserve[int(position)][1]


def _offer(reserve: list, limit: int, item: tuple[float, Sample]) -> None:
    if len(reserve) < limit:
        reserve.append(item)
    elif item[0] > reserve[0][0]:
        reserve[0] = item
    else:
        return
    reserve.sort(key=lambda entry: entry[0])
