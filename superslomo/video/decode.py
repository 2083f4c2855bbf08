"""Probing and decoding a video with timestamps (PyAV; no system ffmpeg needed)."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from superslomo.errors import SloMoError
from superslomo.video.color import ColorModel, to_rgb, to_rgb8

# Above this many pixels a frame is refused before any decoding (issue 11): 8K UHD.
DEFAULT_MAX_SIZE = (7680, 4320)


@dataclass
class VideoInfo:
    path: Path
    width: int
    height: int
    rate: Fraction  # frames per second: the nominal rate, or the average for variable-rate input
    time_base: Fraction
    start_time: Fraction  # seconds; the origin of source times
    pix_fmt: str
    colorspace: int
    color_range: int
    color_primaries: int
    color_trc: int
    frames: int  # as the container says; 0 when unknown
    duration: float | None  # seconds, as the container says
    has_audio: bool
    variable_rate: bool = False  # timestamps are not on one frame grid (see source_rate)
    # How players show the frames, kept on the output: the display matrix (rotation, flips; 9
    # int32 in FFmpeg's layout) and the sample aspect ratio (None: square pixels).
    display_matrix: tuple[int, ...] | None = None
    sample_aspect: Fraction | None = None
    files: tuple[Path, ...] = ()  # an image sequence's frames (sequence.py); empty for a video


def _open(path: Path):
    import av

    if not path.exists():
        raise SloMoError(f"input not found: {path}")
    if not path.is_file():
        raise SloMoError(f"input is not a file: {path}")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as error:
        raise SloMoError(f"cannot open {path} as a video: {reading_error(error)}") from None


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def reading_error(error: BaseException) -> str:
    """Why a file could not be read, for a message that already names the file: FFmpeg's own
    text ("[Errno 1094995529] Invalid data ...: 'path'") repeats the path after a bare number."""
    strerror = getattr(error, "strerror", None)
    return strerror if isinstance(strerror, str) and strerror else _short(error)


def probe(path: str | os.PathLike, max_size: tuple[int, int] = DEFAULT_MAX_SIZE) -> VideoInfo:
    """Header facts, checked against `max_size` (WIDTH, HEIGHT) before anything is decoded."""
    path = Path(path)
    with _open(path) as container:
        if not container.streams.video:
            raise SloMoError(f"{path} has no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        width, height = ctx.width, ctx.height
        if width <= 0 or height <= 0:
            raise SloMoError(f"{path}: the video stream has no video frames (no frame size in its header)")
        max_w, max_h = max_size
        if width * height > max_w * max_h or max(width, height) > max(max_w, max_h):
            raise SloMoError(
                f"{path} is {width}x{height}, larger than the limit {max_w}x{max_h} "
                "(raise it with --max-size)"
            )
        time_base = stream.time_base or Fraction(1, 1000)
        sar = stream.sample_aspect_ratio or ctx.sample_aspect_ratio
        sample_aspect = Fraction(sar) if sar and sar > 0 and sar != 1 else None
        rate, variable = source_rate(container, stream, Fraction(time_base))
        start = Fraction(stream.start_time) * time_base if stream.start_time is not None else Fraction(0)
        duration = float(container.duration) / 1e6 if container.duration else None
        info = VideoInfo(
            path=path,
            width=width,
            height=height,
            rate=Fraction(rate),
            time_base=Fraction(time_base),
            start_time=start,
            pix_fmt=ctx.format.name if ctx.format else "yuv420p",
            colorspace=int(ctx.colorspace or 2),
            color_range=int(ctx.color_range or 0),
            color_primaries=int(ctx.color_primaries or 2),
            color_trc=int(ctx.color_trc or 2),
            frames=int(stream.frames or 0),
            duration=duration,
            has_audio=bool(container.streams.audio),
            variable_rate=variable,
            sample_aspect=sample_aspect,
        )
    width, height, matrix = _first_frame_facts(path, (width, height))
    return dataclasses.replace(info, width=width, height=height, display_matrix=matrix)


def video_decoder(container):
    """The first video stream, set up to decode as every reader here decodes it."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    # Crop exactly as the stream says: without this, FFmpeg keeps a few extra columns when a crop
    # offset is not aligned (a Theora .ogv whose header says 214 wide decodes 218 wide).
    stream.codec_context.options = {"flags": "unaligned"}
    return stream


def _first_frame_facts(path: Path, header: tuple[int, int]) -> tuple[int, int, tuple[int, ...] | None]:
    """(width, height, display matrix) of the first decoded frame: decoded frames, not the
    header, are what the job handles; the display matrix rides on frames as side data."""
    import struct

    import av

    with _open(path) as container:
        stream = video_decoder(container)
        try:
            frame = next(iter(container.decode(stream)), None)
        except av.error.FFmpegError:
            frame = None  # decoding reports the damage later, with the file's name
        if frame is None:
            return (*header, None)
        matrix = None
        for data in frame.side_data:
            if data.type == av.sidedata.sidedata.Type.DISPLAYMATRIX and len(bytes(data)) == 36:
                values = struct.unpack("<9i", bytes(data))
                # The identity says nothing: leave the output untagged, as the source is.
                if values != (65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30):
                    matrix = values
        return frame.width, frame.height, matrix


# Packets whose timestamps decide between the nominal and the average rate: about 4 s of video,
# read (not decoded) in a few milliseconds.
_RATE_PACKETS = 100


def _valid_rate(rate) -> Fraction | None:
    return Fraction(rate) if rate and 0 < rate <= 1000 else None


def source_rate(container, stream, time_base: Fraction) -> tuple[Fraction, bool]:
    """(frames per second, variable?) of a video stream.

    The average rate is frames / duration, and a stream cut by copying packets (ffmpeg -c copy,
    any cutter) has a duration a frame or two off its frame count: a 3 s cut of 25 fps video
    says 24.67 fps, and an output grid at 4 x 24.67 misses half the originals (issue 14). So
    the nominal rate (FFmpeg's guess from r_frame_rate) is used when the first timestamps sit on
    its grid (whole multiples of one frame interval, the common step being one interval: dropped
    frames are still constant rate); truly variable-rate input keeps its average rate, and its
    frames are placed by timestamp as always."""
    average = _valid_rate(stream.average_rate)
    nominal = _valid_rate(stream.guessed_rate) or _valid_rate(stream.base_rate)
    if nominal is None:
        return average or Fraction(25), False
    import av

    times = []
    # A damaged file stops the count early; decoding reports the damage, with the file's name.
    with contextlib.suppress(av.error.FFmpegError, OSError):
        for packet in container.demux(stream):
            if packet.pts is not None:
                times.append(packet.pts)
            if len(times) >= _RATE_PACKETS:
                break
    times = sorted(set(times))
    if len(times) < 3:
        return nominal, False  # too few timestamps to tell: trust the header
    steps = sorted(b - a for a, b in itertools.pairwise(times))
    median = steps[len(steps) // 2] * time_base
    multiple = max(1, round(median * nominal))
    # The header's rate (over a whole multiple: a field-rate header, 50, on 25 fps frames), else
    # the median step's (FFmpeg guesses 60 for 30000/1001 frames whose one gap breaks its gcd).
    for rate in dict.fromkeys([nominal / multiple, (1 / median).limit_denominator(1001)]):
        if _on_grid(times, time_base, rate):
            return rate, False
    return average or nominal, True


def _on_grid(times: list[int], time_base: Fraction, rate: Fraction) -> bool:
    """Whether timestamps sit on a 1/rate grid. Positions, not steps, are checked (rounding does
    not accumulate): within the time base plus a fraction of a frame, as writers round
    timestamps to milliseconds whatever their time base says. A phone's clip is constant-rate
    with a gap or two (a dropped frame and a shift of part of a frame): the grid restarts after
    each off-grid step, and a few of those keep it constant-rate (the job snaps its frames to
    the grid: timing.Timeline's `grid`). Truly variable timing leaves the grid every few frames."""
    slack = time_base + max(Fraction(1, 1600), 1 / (40 * rate))
    anchor, jumps = times[0], 0
    for t in times[1:]:
        x = (t - anchor) * time_base * rate
        if abs(x - round(x)) > slack * rate or round(x) < 1:
            anchor, jumps = t, jumps + 1
    return jumps <= max(1, len(times) // 50)


def color_model(info: VideoInfo) -> ColorModel:
    """The YUV<->RGB matrix and range to use both ways: the source's own where it says them, so a
    decode/encode round trip leaves colours unchanged."""
    return ColorModel.of(info.colorspace, info.color_range, info.pix_fmt)


class Decoded(NamedTuple):
    image: np.ndarray  # HxWx3 uint8 RGB, what the model sees
    time: Fraction  # seconds since the stream start
    native: Any  # the decoded av.VideoFrame: originals are re-encoded from it, skipping RGB


def decode_frames(info: VideoInfo, start: float = 0.0, duration: float | None = None) -> Iterator[Decoded]:
    """Each frame of the segment, in display order.

    Times come from timestamps (variable frame rate survives); missing or non-increasing ones
    are replaced by the previous time plus a nominal frame interval.
    """
    import av

    model = color_model(info)
    start_f = Fraction(start).limit_denominator(1_000_000)
    end = start_f + Fraction(duration).limit_denominator(1_000_000) if duration is not None else None
    interval = 1 / info.rate
    with contextlib.closing(_frames_from(info, start_f)) as frames:
        previous: Fraction | None = None
        count = 0
        try:
            for frame in frames:
                when = _frame_time(frame, info)
                if when is None:
                    when = previous + interval if previous is not None else Fraction(0)
                if when < start_f - interval / 4:
                    continue
                if end is not None and when >= end - interval / 4:
                    break
                if previous is not None and when <= previous:
                    when = previous + interval
                previous = when
                if (frame.width, frame.height) != (info.width, info.height):
                    raise SloMoError(
                        f"{info.path}: frame size changes mid-stream ({info.width}x{info.height} -> "
                        f"{frame.width}x{frame.height}); that is not supported"
                    )
                image = to_rgb(frame, model)
                count += 1
                yield Decoded(to_rgb8(image, str(info.path)), when, frame)
        except av.error.FFmpegError as error:
            # A damaged tail is common in real footage: keep what decoded, stop there.
            if count == 0:
                raise SloMoError(f"cannot decode video {info.path}: {reading_error(error)}") from None


def _frame_time(frame, info: VideoInfo) -> Fraction | None:
    pts = frame.pts if frame.pts is not None else frame.dts
    return Fraction(pts) * info.time_base - info.start_time if pts is not None else None


# How far before --start the first seek aims; each retry backs off four times further.
_SEEK_BACKOFF = Fraction(1)
# Frames decoded after a seek while looking for its keyframe; past this, the first frame's time
# decides (a stream whose keyframes are not flagged).
_KEYFRAME_SEARCH = 600


def _frames_from(info: VideoInfo, start: Fraction) -> Iterator[Any]:
    """Decoded av.VideoFrames from a keyframe at or before `start` (source seconds) to the end.

    `container.seek(backward=True)` is not trusted: MPEG program streams (and other demuxers
    without an index) answer it with the next keyframe, so a seek to 1.0 s decodes from 1.44 s
    and the segment silently loses its head. So the seek aims `_SEEK_BACKOFF` earlier, the first
    keyframe decoded is checked to be at or before `start`, and when it is not the seek backs
    off further, down to decoding from the top; the caller drops frames before `start`."""
    import av

    backoff = _SEEK_BACKOFF
    while True:
        target = start - backoff
        with _open(info.path) as container:
            stream = video_decoder(container)
            if target > 0:
                try:
                    container.seek(
                        int((info.start_time + target) / info.time_base), stream=stream, backward=True
                    )
                except av.error.FFmpegError:
                    target = Fraction(0)  # unseekable: this fresh container decodes from the top
            frames = container.decode(stream)
            if target <= 0:
                yield from frames
                return
            head = []
            landed = True
            for frame in frames:
                head.append(frame)
                when = _frame_time(frame, info)
                if frame.key_frame or len(head) >= _KEYFRAME_SEARCH:
                    landed = when is None or when <= start
                    break
                if when is not None and when > start and len(head) == 1:
                    landed = False
                    break
            if landed:
                yield from head
                yield from frames
                return
        backoff *= 4
