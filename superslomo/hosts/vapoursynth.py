"""`slomo(clip, ...)`: Super SloMo as a VapourSynth filter, imported as `superslomo.vapoursynth`.

A plain Python function in the hosts' idiom, no compiled plugin: the output is the source
remapped by the video job's timing (video/timing.py FrameGrid: output frame j shows source frame
k, or the pair k, k+1 at t) and a `std.ModifyFrame` that passes originals through and fills new
frames from the model. VapourSynth asks for frames in any order and from several threads, so each
pair's new frames are made together (one flow, the times batched as the CLI batches them) and kept
in a bounded cache; a pair is cut or identical by the CLI's rules, read from the two frames
themselves, so every request answers the same.
"""

from __future__ import annotations

import threading
from fractions import Fraction
from typing import Any

import numpy as np

from superslomo.errors import SloMoError
from superslomo.hosts.pairs import DEFAULT_CACHE_PAIRS, PairCache, note, open_interpolator
from superslomo.video.pipeline import MAX_FACTOR, Options, holds_second, rates_for
from superslomo.video.scenes import DEFAULT_THRESHOLD, colour_signature, is_cut
from superslomo.video.timing import FrameGrid, parse_rate

TO_RGB24 = 'clip = core.resize.Bicubic(clip, format=vs.RGB24, matrix_in_s="709")'
CUT_NEXT, CUT_PREV = "_SceneChangeNext", "_SceneChangePrev"


def slomo(
    clip: Any,
    factor: int | None = None,
    fps: Fraction | int | str | None = None,
    model: str | None = None,
    backend: str = "auto",
    precision: str = "auto",
    scene_change: bool = True,
    scene_threshold: float = DEFAULT_THRESHOLD,
    cache_pairs: int = DEFAULT_CACHE_PAIRS,
    interpolator: Any = None,
) -> Any:
    """`clip` (RGB24, RGBS or RGBH, constant frame rate) at `factor` times its rate (default 2) or
    at `fps`, same duration; originals pass through untouched. `model`: an exported folder or a
    checkpoint (default: the shipped model); `backend`/`precision` as `slomo interpolate` takes
    them. `scene_change`: hold the nearer original across a cut (the CLI's detector, and the
    _SceneChangeNext/_SceneChangePrev props a scene detector set upstream) instead of morphing.
    `interpolator`: an open runtime Interpolator to use instead of `model`/`backend`/`precision`."""
    import vapoursynth as vs

    try:
        return _Filter(
            vs,
            clip,
            factor,
            fps,
            model,
            backend,
            precision,
            scene_change,
            scene_threshold,
            cache_pairs,
            interpolator,
        ).output
    except SloMoError as error:
        raise vs.Error(f"slomo: {error}") from None


class _Filter:
    def __init__(
        self, vs, clip, factor, fps, model, backend, precision, scene_change, scene_threshold, cache_pairs,
        interpolator,
    ) -> None:  # fmt: skip
        self.vs = vs
        if not isinstance(clip, vs.VideoNode):
            raise SloMoError(f"clip must be a video clip, got {type(clip).__name__}")
        formats = {vs.RGB24: np.uint8, vs.RGBS: np.float32, vs.RGBH: np.float16}
        if clip.format is None or clip.width == 0:
            raise SloMoError("the clip changes format or size between frames; give it one of each first")
        if clip.format.id not in formats:
            raise SloMoError(f"takes RGB24, RGBS or RGBH, not {clip.format.name}; convert first: {TO_RGB24}")
        if clip.fps == 0:
            raise SloMoError(
                "the clip has no constant frame rate (fps 0/1); give it one first, e.g. "
                "clip = core.std.AssumeFPS(clip, fpsnum=24000, fpsden=1001)"
            )
        if clip.num_frames < 2:
            raise SloMoError("the clip has one frame: there is nothing to interpolate between")
        if factor is not None and fps is not None:
            raise SloMoError("give factor or fps, not both")
        if factor is not None and (isinstance(factor, bool) or not isinstance(factor, int)):
            raise SloMoError(f"factor must be a whole number, got {factor!r}")
        if factor is not None and not 2 <= factor <= MAX_FACTOR:
            raise SloMoError(f"factor must be between 2 and {MAX_FACTOR}, got {factor}")
        if not 0.0 <= scene_threshold <= 1.0:
            raise SloMoError(f"scene_threshold must be between 0 and 1 (1 disables), got {scene_threshold}")
        in_rate = Fraction(clip.fps_num, clip.fps_den)
        rate = parse_rate(fps) if fps is not None else None
        out_rate, _ = rates_for(in_rate, Options(factor=factor, fps=rate))
        self.grid = FrameGrid(in_rate, out_rate, clip.num_frames)
        self.dtype = formats[clip.format.id]
        self.scene_change, self.threshold = bool(scene_change), scene_threshold
        self.cache: PairCache[dict[int, np.ndarray]] = PairCache(cache_pairs)
        if interpolator is None:
            interpolator, _ = open_interpolator(
                model, backend, precision, (clip.width, clip.height), say=note
            )
        elif model is not None:
            raise SloMoError("give model (with backend, precision) or an open interpolator, not both")
        self.interp = interpolator.activate()
        # The CLI's concurrency: one flow and one synthesis at a time, and no more pairs alive
        # than its queue holds (a GPU backend keeps a fixed ring of them).
        self._flow_lock, self._synth_lock = threading.Lock(), threading.Lock()
        self._alive = threading.BoundedSemaphore(self.interp.queue_depth + 1)

        core, grid = vs.core, self.grid
        shows = [grid.first(k + 1) - grid.first(k) for k in range(grid.frames - 1)]
        shows.append(grid.count - grid.first(grid.frames - 1))
        previous = clip[0] + clip[:-1]
        following = clip[1:] + clip[-1]
        base = _remap(core, clip, shows).std.AssumeFPS(fpsnum=out_rate.numerator, fpsden=out_rate.denominator)
        clips = [_remap(core, c, shows) for c in (previous, clip, following)]
        self.output = core.std.ModifyFrame(base, clips=clips, selector=self._frame)

    # -- one output frame ------------------------------------------------------------------
    def _pixels(self, frame) -> np.ndarray:
        """HxWx3 uint8 RGB, what the model and the CLI's rules see (float clips rounded to 8 bits)."""
        planes = np.dstack([np.asarray(frame[p]) for p in range(3)])
        if self.dtype == np.uint8:
            return planes
        return (np.clip(planes.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    def _cut(self, frame0, frame1, pixels0: np.ndarray, pixels1: np.ndarray) -> bool:
        if not self.scene_change:
            return False
        if frame0.props.get(CUT_NEXT) or frame1.props.get(CUT_PREV):
            return True
        return is_cut(colour_signature(pixels0), colour_signature(pixels1), self.threshold)

    def _new_frames(self, k: int, pixels0: np.ndarray, pixels1: np.ndarray) -> dict[int, np.ndarray]:
        slots = self.grid.pair_times(k)
        with self._alive:
            with self._flow_lock:
                pair = self.interp.prepare(pixels0, pixels1)
            try:
                with self._synth_lock:
                    made = self.interp.synthesize(
                        pair, [t for _, t in slots], as_float=self.dtype != np.uint8
                    )
            finally:
                self.interp.release(pair)
        if self.dtype != np.uint8:
            made = [np.clip(frame, 0.0, 1.0).astype(self.dtype) for frame in made]
        return {j: frame for (j, _), frame in zip(slots, made, strict=True)}

    def _frame(self, n: int, f):
        try:
            return self._make(n, f)
        except SloMoError as error:
            raise self.vs.Error(f"slomo: {error}") from None

    def _make(self, n: int, f):
        previous, current, following = f
        grid = self.grid
        k, t = grid.slot(n)
        last = k == grid.frames - 1
        pixels = self._pixels(current)
        cuts: dict[int, bool] = {}  # source index i -> a cut between frames i and i+1
        if k > 0:
            cuts[k - 1] = self._cut(previous, current, self._pixels(previous), pixels)
        made = None
        if not last:
            following_pixels = self._pixels(following)
            cuts[k] = self._cut(current, following, pixels, following_pixels)
            if t > 0 and not cuts[k] and not np.array_equal(pixels, following_pixels):
                made = self.cache.get(k, lambda key: self._new_frames(k, pixels, following_pixels))[n]
        if made is not None:
            out = current.copy()
            for p in range(3):
                np.copyto(np.asarray(out[p]), made[..., p])
        else:  # an original: the pair's own frame, or the nearer one across a cut or a still
            out = (following if t > 0 and not last and holds_second(t) else current).copy()

        def shows(m: int) -> int:  # the source frame whose shot output frame m belongs to
            km, tm = grid.slot(m)
            return km + int(tm > 0 and cuts.get(km, False) and holds_second(tm))

        here = shows(n)
        props = out.props
        props[CUT_PREV] = int(n > 0 and shows(n - 1) < here and cuts.get(here - 1, False))
        props[CUT_NEXT] = int(n + 1 < grid.count and shows(n + 1) > here and cuts.get(here, False))
        props["_DurationNum"] = grid.out_rate.denominator
        props["_DurationDen"] = grid.out_rate.numerator
        if "_AbsoluteTime" in props:  # the source's clock, moved to this frame's place on it
            offset = Fraction(n) / grid.out_rate - Fraction(k) / grid.in_rate
            props["_AbsoluteTime"] = float(current.props["_AbsoluteTime"]) + float(offset)
        return out


def _remap(core, clip, shows: list[int]):
    """`clip` with its frame k repeated shows[k] times (dropped when 0), by C filters: the
    output's frame list for a long clip stays in the core, not in Python."""
    dropped = [k for k, count in enumerate(shows) if count == 0]
    if dropped:
        clip = core.std.DeleteFrames(clip, frames=dropped)
    kept = [count for count in shows if count > 0]
    repeats = [p for p, count in enumerate(kept) for _ in range(count - 1)]
    if repeats:
        clip = core.std.DuplicateFrames(clip, frames=repeats)
    return clip
