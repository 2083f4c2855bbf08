"""A video job cut into independent segments that join back into exactly the single-run output.

Segments start at keyframes, found from packets without decoding (packets come in decode order:
with B-frames their timestamps must be sorted to give display order). Segment s decodes frames
K_s .. K_{s+1} (one frame of overlap: its last frame is the next segment's first), so every
frame pair of the job, the one across a boundary included, is interpolated by exactly one
segment, from the same two decoded frames a single run sees. Scene cuts, timing and the choice
of new versus held frames depend only on the pair and the job's origin, so each segment makes
exactly the output frames a single run makes for its pairs.

A segment is written losslessly (FFV1 in Matroska) in the pixel format the final encoder takes,
already converted as VideoWriter.write would convert it; the join decodes the segments in order
and hands those frames to one VideoWriter, so the final encoder sees the same input as a single
run. Frame timestamps in a segment are plain counters: the output's timing comes from the global
output index, recorded beside each segment (Matroska's 1 ms time base cannot hold rates above
1000 fps, and rounding there broke the muxer).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from superslomo.errors import SloMoError
from superslomo.video.color import from_rgb
from superslomo.video.decode import Decoded, VideoInfo, _open, color_model, decode_frames
from superslomo.video.scenes import SceneDetector
from superslomo.video.timing import Timeline

if TYPE_CHECKING:
    from superslomo.video.pipeline import JobPlan

# Fewer frames than this per segment cost more in start-up (seek, decoder warm-up, one task) than
# they save in parallelism.
MIN_SEGMENT_FRAMES = 8
SEGMENT_SUFFIX = ".mkv"


@dataclass(frozen=True)
class FrameScan:
    """Display-order frame times (seconds since the stream start, as decode_frames gives them) and
    which of them are keyframes, from packets alone."""

    times: list[Fraction]
    keyframes: list[int]  # indices into `times`
    exact: bool  # False: timestamps missing or repeated, so a decoder's times cannot be predicted
    reason: str = ""


def scan_frames(info: VideoInfo, verify: int = 12) -> FrameScan:
    """Read (not decode) every video packet: seconds for a long film. The first `verify` frames
    are also decoded, to check the packets' story against the decoder's."""
    import av

    stamps: list[int] = []
    keys: list[int] = []
    missing = False
    decode_order = True  # every pts equal to its dts
    with _open(info.path) as container:
        stream = container.streams.video[0]
        reorders = bool(stream.codec_context.has_b_frames)
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the demuxer's end marker, or an AVI "repeat" that decodes to nothing
                if packet.is_discard:
                    continue  # before an edit list's start: decoders drop these frames
                if packet.pts is None:
                    missing = True
                    continue
                stamps.append(packet.pts)
                decode_order = decode_order and packet.pts == packet.dts
                if packet.is_keyframe:
                    keys.append(packet.pts)
        except av.error.FFmpegError:
            pass  # a damaged tail: the last segment decodes what there is, as a single run does
    order = sorted(stamps)
    exact, reason = True, ""
    if missing:
        exact, reason = False, "packets without timestamps"
    elif len(set(order)) != len(order):
        exact, reason = False, "repeated timestamps"
    elif reorders and decode_order and len(order) > 1:
        # Frames are reordered but the container gave decode-order times (an mp4 without
        # composition offsets): the decoder's times cannot be told from the packets.
        exact, reason = False, "timestamps in decode order"
    times = [Fraction(p) * info.time_base - info.start_time for p in order]
    if exact and verify:
        seen = [d.time for d in itertools.islice(decode_frames(info), min(verify, len(times)))]
        if seen != times[: len(seen)]:
            exact, reason = False, "decoded timestamps differ from the packets'"
    position = {p: i for i, p in enumerate(order)}
    keyframes = sorted({position[p] for p in keys if p in position})
    return FrameScan(times, keyframes, exact, reason)


def job_range(scan: FrameScan, info: VideoInfo, start: float, duration: float | None) -> tuple[int, int]:
    """[first, end) of the frames a single run with --start/--duration decodes (decode_frames'
    rules, on the same Fractions)."""
    start_f = Fraction(start).limit_denominator(1_000_000)
    end = start_f + Fraction(duration).limit_denominator(1_000_000) if duration is not None else None
    quarter = 1 / info.rate / 4
    first = next((i for i, t in enumerate(scan.times) if t >= start_f - quarter), len(scan.times))
    stop = len(scan.times)
    if end is not None:
        stop = next((i for i, t in enumerate(scan.times) if i >= first and t >= end - quarter), stop)
    return first, stop


@dataclass(frozen=True)
class Segment:
    index: int
    first: int  # the job's frame number of its first frame (0 for the first segment)
    frames: int  # frames it decodes, the overlap frame included; the last: as many as the job has
    start: Fraction  # source seconds of its first frame
    end: Fraction | None  # source seconds of its overlap frame (the next one's first); None: last
    times: tuple[Fraction, ...] = ()  # every frame's time, to check the decoder against

    @property
    def last(self) -> bool:
        return self.end is None


@dataclass(frozen=True)
class Plan:
    origin: Fraction | None  # source seconds of the job's first frame (None: unknown, one segment)
    frames: int  # frames in the job (0 when unknown)
    segments: tuple[Segment, ...]
    note: str = ""  # why the job was not split, when it was not

    def describe(self) -> list[tuple[int, int, int]]:
        """(index, first frame, frames) per segment: what a work folder's key covers."""
        return [(s.index, s.first, s.frames) for s in self.segments]


def plan_segments(
    info: VideoInfo,
    start: float = 0.0,
    duration: float | None = None,
    workers: int = 1,
    segment_frames: int | None = None,
    scan: FrameScan | None = None,
) -> Plan:
    """Cut the job at keyframes into segments of about `segment_frames` frames (default: about
    three per worker, so a slow segment does not leave the rest idle, and at least
    MIN_SEGMENT_FRAMES). Sources whose timestamps cannot be predicted from packets run as one
    segment."""
    scan = scan if scan is not None else scan_frames(info)
    if not scan.exact:
        whole = Segment(0, 0, 0, Fraction(0), None)
        return Plan(None, 0, (whole,), note=f"not split: {scan.reason}")
    first, stop = job_range(scan, info, start, duration)
    total = stop - first
    if total < 2:
        where = " in that segment" if start or duration else ""
        if total == 0:
            raise SloMoError(f"{info.path} has no video frames{where}")
        raise SloMoError(f"{info.path} has only one frame{where}: there is nothing to interpolate between")
    times = scan.times[first:stop]
    if segment_frames is None:
        segment_frames = max(MIN_SEGMENT_FRAMES, math.ceil(total / max(1, 3 * workers)))
    segment_frames = max(1, segment_frames)
    cuts = [0]
    for key in scan.keyframes:
        at = key - first
        # Every segment decodes at least two frames (one pair), the last one included: its held
        # tail frame lasts as long as its own last pair.
        if at - cuts[-1] >= segment_frames and total - at >= 2 and at - cuts[-1] >= 1:
            cuts.append(at)
    segments = []
    for n, at in enumerate(cuts):
        last = n == len(cuts) - 1
        upto = total if last else cuts[n + 1] + 1
        segments.append(
            Segment(
                n,
                at,
                upto - at,
                times[at],
                None if last else times[cuts[n + 1]],
                tuple(times[at:upto]),
            )
        )
    note = "" if len(segments) > 1 else "not split: no keyframe inside the job"
    return Plan(times[0], total, tuple(segments), note)


@dataclass(frozen=True)
class SegmentJob:
    """Everything a worker needs for one segment (picklable; no model)."""

    info: VideoInfo
    segment: Segment
    origin: Fraction | None
    out_rate: Fraction
    slowdown: int
    scene_threshold: float
    pix_fmt: str  # the final encoder's pixel format
    start: float  # the job's --start and --duration (the first and last segments use them)
    duration: float | None


def segment_jobs(job: JobPlan, plan: Plan) -> list[SegmentJob]:
    """The workers' jobs for a planned interpolate job (pipeline.plan_job), one per segment of
    `plan`: the job's rates, scene threshold, span and the final writer's pixel format."""
    options = job.options
    return [
        SegmentJob(
            job.info,
            seg,
            plan.origin,
            job.out_rate,
            job.slowdown,
            options.scene_threshold,
            job.pix_fmt,
            options.start,
            options.duration,
        )
        for seg in plan.segments
    ]


@dataclass
class SegmentResult:
    index: int
    first_output: int  # global output frame number of its first frame
    frames_out: int
    frames_in: int  # frames it owns (the overlap frame belongs to the next segment)
    new_frames: int = 0
    held_frames: int = 0
    cuts: int = 0
    origin: Fraction | None = None  # the job's origin as this segment saw it (the first segment)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        data = dict(self.__dict__)
        data["origin"] = None if self.origin is None else [self.origin.numerator, self.origin.denominator]
        return data

    @classmethod
    def from_json(cls, data: dict) -> SegmentResult:
        data = dict(data)
        origin = data.pop("origin", None)
        return cls(**data, origin=None if origin is None else Fraction(*origin))


class SegmentMismatch(SloMoError):
    """The decoder disagreed with the packets about a segment's frames."""


def _decode_segment(job: SegmentJob) -> Iterator[Decoded]:
    """The segment's frames, each exactly as a single run decodes it, in display order."""
    info, seg = job.info, job.segment
    if seg.index == 0:
        # The same call a single run makes: the first segment is that run's beginning.
        yield from _until_end(job, decode_frames(info, job.start, job.duration))
        return
    interval = 1 / info.rate
    # Aim the seek a little after the keyframe's timestamp, so float rounding cannot land it on
    # the keyframe before; frames before the segment are dropped by their exact times.
    seeked = decode_frames(info, float(seg.start + interval / 8), None)
    first = next(_from_start(seeked, seg.start), None)
    if first is None or first.time != seg.start:
        # The demuxer's seek index disagreed (a B-frame delay, a sparse index): decode from the
        # top. Slow, but right.
        seeked.close()
        seeked = decode_frames(info, 0.0, None)
        first = next(_from_start(seeked, seg.start), None)
        if first is None or first.time != seg.start:
            raise SegmentMismatch(
                f"{info.path}: no frame at {float(seg.start):.6f}s where the packets put segment "
                f"{seg.index}'s keyframe; run without --ray"
            )
    yield from _until_end(job, _chain(first, seeked))


def _from_start(frames: Iterator[Decoded], start: Fraction) -> Iterator[Decoded]:
    for item in frames:
        if item.time >= start:
            yield item
            yield from frames
            return


def _chain(first: Decoded, rest: Iterator[Decoded]) -> Iterator[Decoded]:
    yield first
    yield from rest


def _until_end(job: SegmentJob, frames: Iterator[Decoded]) -> Iterator[Decoded]:
    """Stop after the overlap frame, or at the job's --duration end (decode_frames' rule)."""
    info, seg = job.info, job.segment
    end = None
    if job.duration is not None:
        start_f = Fraction(job.start).limit_denominator(1_000_000)
        end = start_f + Fraction(job.duration).limit_denominator(1_000_000) - 1 / info.rate / 4
    count = 0
    try:
        for item in frames:
            if end is not None and item.time >= end:
                break
            if seg.times:
                if count >= len(seg.times) or item.time != seg.times[count]:
                    expected = f"{float(seg.times[count]):.6f}s" if count < len(seg.times) else "none"
                    raise SegmentMismatch(
                        f"{info.path}: frame {seg.first + count} decodes at {float(item.time):.6f}s, "
                        f"the packets said {expected}; run without --ray"
                    )
            yield item
            count += 1
            if seg.end is not None and item.time == seg.end:
                return
    finally:
        with contextlib.suppress(AttributeError):
            frames.close()
    if seg.end is not None:
        raise SegmentMismatch(
            f"{info.path}: segment {seg.index} ended after {count} of {seg.frames} frames "
            "(damaged in the middle?); run without --ray"
        )


def ffv1_format(pix_fmt: str) -> str:
    """The FFV1 pixel format with the same planes as `pix_fmt` (yuvj* differ only in their tag)."""
    import av

    formats = {f.name for f in av.codec.Codec("ffv1", "w").video_formats}
    if pix_fmt in formats:
        return pix_fmt
    if pix_fmt.startswith("yuvj") and "yuv" + pix_fmt[4:] in formats:
        return "yuv" + pix_fmt[4:]
    raise SloMoError(f"cannot keep {pix_fmt} frames losslessly between machines; run without --ray")


def retag(frame, pix_fmt: str):
    """The same planes, bit for bit, in a frame of another format with the same layout."""
    import av

    if frame.format.name == pix_fmt:
        return frame
    out = av.VideoFrame(frame.width, frame.height, pix_fmt)
    for src, dst in zip(frame.planes, out.planes, strict=True):
        width = min(src.line_size, dst.line_size)
        rows_in = np.frombuffer(src, np.uint8).reshape(src.height, src.line_size)
        rows_out = np.frombuffer(dst, np.uint8).reshape(dst.height, dst.line_size)
        rows_out[:, :width] = rows_in[:, :width]
    out.color_range = frame.color_range
    return out


def encoder_frame(frame, pix_fmt: str, color) -> object:
    """The av.VideoFrame VideoWriter.write would hand its encoder for `frame` (an RGB array for a
    new frame, a decoded frame for an original). Keep in step with VideoWriter.write: the tests
    compare a Ray run's output with a single run's frame by frame."""
    if not isinstance(frame, np.ndarray) and frame.format.is_rgb:
        frame = frame.to_ndarray(format="rgb24")
    if isinstance(frame, np.ndarray):
        return from_rgb(frame, pix_fmt, color)
    if frame.format.name != pix_fmt:
        same = "JPEG" if color.full_range else "MPEG"
        return frame.reformat(format=pix_fmt, src_color_range=same, dst_color_range=same)
    return frame


class SegmentWriter:
    """Lossless frames to a temporary file beside `path`, renamed onto it by finish()."""

    def __init__(self, path: Path, info: VideoInfo, pix_fmt: str, tag: str = "") -> None:
        """`tag`: names this run's temporary file (a Ray run's id), so a run sharing the folder
        can tell its own from another's."""
        import av

        self.path = Path(path)
        owner = f"{tag}-{os.getpid()}" if tag else str(os.getpid())
        self.temp = self.path.with_name(f".{self.path.stem}.partial-{owner}{self.path.suffix}")
        self.pix_fmt = pix_fmt
        self.storage = ffv1_format(pix_fmt)
        self.color = color_model(info)
        self.count = 0
        self.container = av.open(str(self.temp), "w", format="matroska")
        try:
            self.stream = self.container.add_stream("ffv1", rate=1000)
            self.stream.width, self.stream.height = info.width, info.height
            self.stream.pix_fmt = self.storage
            self.stream.codec_context.time_base = Fraction(1, 1000)
            self.stream.thread_type = "AUTO"
        except BaseException:
            self.abort()
            raise

    def write(self, frame) -> None:
        image = retag(encoder_frame(frame, self.pix_fmt, self.color), self.storage)
        image.pts = self.count
        image.time_base = Fraction(1, 1000)
        self.count += 1
        self.container.mux(self.stream.encode(image))

    def finish(self) -> Path:
        try:
            self.container.mux(self.stream.encode(None))
            self.container.close()
            os.replace(self.temp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        import av

        with contextlib.suppress(av.error.FFmpegError, OSError, ValueError):
            self.container.close()
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()


def render_segment(job: SegmentJob, interpolator, path: Path, tag: str = "") -> SegmentResult:
    """Interpolate one segment into `path`, as a single run would for the segment's pairs;
    `tag` names the temporary file (SegmentWriter)."""
    seg = job.segment
    timeline = Timeline.for_source(job.info, job.out_rate, job.slowdown)
    detector = SceneDetector(job.scene_threshold)
    writer = SegmentWriter(path, job.info, job.pix_fmt, tag)
    result = SegmentResult(seg.index, 0, 0, 0, origin=job.origin)
    origin = job.origin
    previous: Decoded | None = None
    first_output: int | None = None
    gap = 1 / job.info.rate

    def emit(slot_index: int, frame) -> None:
        nonlocal first_output
        if first_output is None:
            first_output = slot_index
        elif slot_index != first_output + result.frames_out:
            raise SloMoError(f"segment {seg.index}: output frame {slot_index} out of order")
        writer.write(frame)
        result.frames_out += 1

    try:
        for item in _decode_segment(job):
            cut = detector.is_cut(item.image)
            if previous is None:
                if origin is None:
                    origin = result.origin = item.time  # one segment: the job starts here
                previous = item
                continue
            gap = item.time - previous.time
            slots = timeline.slots(previous.time - origin, item.time - origin)
            same = not cut and np.array_equal(previous.image, item.image)
            times = [s.t for s in slots if s.t > 0] if not (cut or same) else []
            made = iter(())
            if times:
                made = iter(interpolator.interpolate(previous.image, item.image, times))
            result.cuts += int(cut)
            result.frames_in += 1
            for slot in slots:
                if slot.t == 0.0:
                    frame = previous.native
                elif cut or same:
                    # Never morph across a cut: hold whichever original is nearer in time.
                    frame = previous.native if slot.t < 0.5 else item.native
                    result.held_frames += int(cut)
                else:
                    frame = next(made)
                    result.new_frames += 1
                emit(slot.index, frame)
            previous = item
        if previous is None:
            raise SloMoError(f"{job.info.path}: segment {seg.index} has no video frames")
        if seg.last:
            if result.frames_in == 0:
                where = " in that segment" if job.start or job.duration else ""
                raise SloMoError(
                    f"{job.info.path} has only one frame{where}: there is nothing to interpolate between"
                )
            # The last frame is shown for one frame interval, as in a single run.
            result.frames_in += 1
            for slot in timeline.slots(previous.time - origin, previous.time - origin + gap):
                result.held_frames += int(slot.t != 0.0)
                emit(slot.index, previous.native)
        result.first_output = first_output if first_output is not None else timeline.next_index
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    return result


def read_segment(path: Path, pix_fmt: str) -> Iterator[object]:
    """A segment's frames as av.VideoFrames in `pix_fmt`, ready for VideoWriter.write."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                yield retag(frame, pix_fmt)
    except av.error.FFmpegError as error:
        raise SloMoError(f"segment {path} cannot be read ({error}); remove it and run again") from None


def append_segment(writer, path: Path, result: SegmentResult, pix_fmt: str) -> int:
    """Write a finished segment's frames into the final `writer`; returns how many. The segment
    must start at the writer's next output frame and hold exactly the frames it says."""
    if result.first_output != writer.count:
        raise SloMoError(
            f"segment {result.index} starts at output frame {result.first_output}, "
            f"the output is at {writer.count}: the segments do not join"
        )
    count = 0
    for frame in read_segment(path, pix_fmt):
        writer.write(frame)
        count += 1
    if count != result.frames_out:
        raise SloMoError(f"segment {path} holds {count} frames, not {result.frames_out}; remove it and rerun")
    return count
