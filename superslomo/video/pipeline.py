"""`slomo interpolate`: a video in, a smoother or slower video out.

The job is small parts: `plan_job` (every check that needs no model, done once before a model
loads: the rates, the audio, the output kind, the writer's pixel format, the notes; a frozen
`JobPlan` that every runner, `run_job` here or Ray's driver, runs as it is), the pure `pair_jobs`
generator (slots, cuts, the pairs that need the model), `job_frames` (what each slot shows), the
writer; runtime/staging.py runs them as stages. Three threads and bounded queues
keep the model busy and memory flat for any video length:

    decode thread ──frames──> flow thread ──prepared pairs──> main thread ──frames──> encode thread
    (PyAV, timestamps)        (scene cuts, timing,           (synthesis of           (libx264, audio,
                               flow of pair k+1)              pair k's new frames)    temp file)

The flow of pair k+1 runs while pair k is synthesised (both backends release the GIL), and
decoding and encoding hide behind them. The main thread does synthesis so that Ctrl-C lands
there between model calls; every thread watches one stop event, and the temp file goes away on
any failure.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from superslomo.errors import SloMoError
from superslomo.runtime.staging import Stages, Stopped
from superslomo.video.decode import DEFAULT_MAX_SIZE, VideoInfo, decode_frames, probe
from superslomo.video.encode import (
    DEFAULT_CODEC,
    DEFAULT_PRESET,
    AudioSource,
    VideoWriter,
    check_output_path,
    check_preset,
)
from superslomo.video.publish import OutputLock
from superslomo.video.repeats import RepeatFilter
from superslomo.video.scenes import DEFAULT_THRESHOLD, SceneDetector
from superslomo.video.sequence import (
    DEFAULT_RATE,
    SequenceWriter,
    check_sequence_output,
    claim_sequence,
    is_sequence_input,
    is_sequence_output,
    probe_sequence,
    sequence_frames,
)
from superslomo.video.timing import Slot, Timeline, parse_rate

MAX_FACTOR = 64
_QUEUE_FRAMES = 6  # decoded frames waiting for the flow stage
# Prepared pairs waiting for synthesis (each holds two padded frames + flows) come from the
# interpolator's `queue_depth`: a GPU backend has a fixed ring of pair slots.
_QUEUE_OUT = 8  # output frames waiting for the encoder


@dataclass
class Options:
    factor: int | None = None  # None: 2, or no slow-down with --fps
    slowmo: bool = False
    fps: float | str | None = None
    scene_threshold: float = DEFAULT_THRESHOLD
    crf: float | None = None  # None: default_crf(width, height)
    codec: str = DEFAULT_CODEC
    preset: str = DEFAULT_PRESET
    start: float = 0.0
    duration: float | None = None
    audio: bool = True
    max_size: tuple[int, int] = DEFAULT_MAX_SIZE
    overwrite: bool = False  # replace an existing output (otherwise refused)
    input_fps: float | str | None = None  # an image sequence's frame rate (default 25)
    pix_fmt: str | None = None  # the output's pixel format (None: chosen by the writer)
    # Drop repeated frames, interpolate across the real intervals (repeats.py). Off by default:
    # measured on 7 real clips without drawn repeats (bikes, vtest, box, carphone, tree, fire2,
    # bigbuckbunny; 1192 frames) it dropped 3, so it is safe where asked for, but --ray's
    # segments cannot apply it across their boundaries yet, and a default that changes every
    # output's frames needs more footage than that.
    dedup: bool = False


@dataclass
class Summary:
    input: Path
    output: Path
    backend: str
    frames_in: int = 0
    frames_out: int = 0
    new_frames: int = 0
    held_frames: int = 0
    cuts: int = 0
    out_rate: Fraction = Fraction(0)
    slowdown: int = 1
    seconds: float = 0.0
    audio: str = "none"
    model_seconds: float = 0.0  # time spent inside prepare/synthesize calls
    repeats: int = 0  # repeated frames dropped (--dedup)
    notes: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames_out / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        speed = f"{self.slowdown}x slower" if self.slowdown > 1 else "same duration"
        cuts = f", {self.cuts} scene cut{'s' if self.cuts != 1 else ''}"
        cuts += f", {self.repeats} repeated frames dropped" if self.repeats else ""
        held = f" ({self.held_frames} held)" if self.held_frames else ""
        return (
            f"{self.output}: {self.frames_in} frames in, {self.frames_out} out, {self.new_frames} new{held}"
            f"{cuts}; {float(self.out_rate):.3f} fps, {speed}; audio {self.audio}; "
            f"{self.backend}, {self.seconds:.1f} s, {self.fps:.1f} frames/s"
        )


def rates_for(rate: Fraction, options: Options) -> tuple[Fraction, int]:
    """(output frame rate, slow-down) for a source of this frame rate (the hosts ask too)."""
    factor = options.factor
    if factor is not None and not (2 <= factor <= MAX_FACTOR):
        raise SloMoError(f"--factor must be between 2 and {MAX_FACTOR}, got {factor}")
    if options.fps is not None:
        rate = parse_rate(options.fps)
        if options.slowmo:
            return rate, factor or 2
        if factor is not None:
            raise SloMoError(
                "--factor with --fps only makes sense with --slowmo (the slow-down); "
                "--fps alone keeps the duration"
            )
        return rate, 1
    factor = factor or 2
    if options.slowmo:
        return rate.limit_denominator(100_000), factor
    return (rate * factor).limit_denominator(100_000), 1


@dataclass
class _PairJob:
    frame0: np.ndarray
    frame1: np.ndarray | None  # None: the last frame, held for its duration
    native0: object  # the decoded frames themselves, for writing originals untouched
    native1: object
    slots: list[Slot]
    times: list[float]  # the slots' t values that need the model
    pair: object | None  # PreparedPair when `times`
    cut: bool = False
    same: bool = False


def _variable_rate_notes(info: VideoInfo, options: Options, out_rate: Fraction) -> tuple[str, ...]:
    if info.variable_rate and options.fps is None:
        # No rate puts every original of such input on the output grid: say what was chosen.
        return (
            f"variable frame rate input: output at {float(out_rate):.3f} fps from its average rate, "
            "frames placed by timestamp (--fps sets the rate)",
        )
    return ()


def _audio_plan(info: VideoInfo, options: Options, to_sequence: bool, slowdown: int) -> tuple[bool, str, str]:
    """(keep the source's audio, the summary's words when it is not kept, the note said when a
    slowed video drops it). When it is kept, the writer says how (copied, re-encoded)."""
    if not info.has_audio:
        return False, "none (the source has none)", ""
    if to_sequence:
        return False, "dropped (an image sequence has none)", ""
    if not options.audio:
        return False, "dropped (--no-audio)", ""
    if slowdown > 1:
        return (
            False,
            "dropped (the video is slowed down)",
            f"audio dropped: the output is {slowdown}x slower and slowed audio is not kept "
            "(--fps or --factor without --slowmo keep it)",
        )
    return True, "none", ""


def _audio_source(info: VideoInfo, options: Options) -> AudioSource:
    end = None
    if options.duration is not None:
        end = info.start_time + Fraction(options.start + options.duration).limit_denominator(1_000_000)
    return AudioSource(info, info.start_time + Fraction(options.start).limit_denominator(1_000_000), end)


def _check_output(input_path: Path, output_path: Path, options: Options) -> None:
    if is_sequence_output(output_path):
        check_sequence_output(output_path, input_path, options.overwrite)
    else:
        check_output_path(output_path, input_path, options.overwrite)


def claim_output(output_path: str | os.PathLike) -> OutputLock:
    """Take this run's exclusive lock on the output (a second run on it is refused at once);
    release() it, or use it as a context manager, on every path."""
    if is_sequence_output(output_path):
        return claim_sequence(output_path)
    return OutputLock(Path(output_path)).acquire()


@dataclass(frozen=True)
class JobPlan:
    """One interpolate job, planned and checked once by `plan_job` before a model loads. Every
    runner (`run_job` on this machine, the Ray driver) runs it as it is and plans nothing
    again. Picklable; it holds no open file."""

    input: Path
    output: Path
    info: VideoInfo
    options: Options
    out_rate: Fraction
    slowdown: int
    output_kind: str  # "video" (a file written by VideoWriter) or "sequence" (image files)
    pix_fmt: str | None  # the video writer's pixel format (None: an image sequence)
    keep_audio: bool  # the source's audio goes into the output
    audio: str  # the summary's words: why there is none, or how it is written (the writer's mode)
    audio_note: str  # said (not kept in the summary) when a slowed video drops its audio
    notes: tuple[str, ...]  # said and kept in the summary (variable frame rate)
    picture_note: str  # the writer's note on the picture (an odd size padded); "" when none

    @property
    def to_sequence(self) -> bool:
        return self.output_kind == "sequence"

    def check_output(self) -> None:
        """The output checks again: run once the output is claimed, so no other run can write it."""
        _check_output(self.input, self.output, self.options)

    def open_audio(self) -> AudioSource | None:
        """The source's audio for the writer when the plan keeps it (the caller closes it)."""
        return _audio_source(self.info, self.options) if self.keep_audio else None

    def summary(self, backend: str) -> Summary:
        return Summary(
            input=self.input,
            output=self.output,
            backend=backend,
            out_rate=self.out_rate,
            slowdown=self.slowdown,
            audio=self.audio,
        )

    def announce(self, summary: Summary, say: Callable[[str], None]) -> None:
        """Say the plan's notes (kept in `summary`) and why the audio is dropped, if it says."""
        for note in self.notes:
            summary.notes.append(note)
            say(f"note: {note}")
        if self.audio_note:
            say(f"note: {self.audio_note}")


def plan_job(
    input_path: str | os.PathLike, output_path: str | os.PathLike, options: Options | None = None
) -> JobPlan:
    """Every check that needs no model, once: run before loading one, so bad input fails at once
    (SloMoError, one line). That includes opening the encoders for the output (in memory), so a
    combination of container, codec and audio that cannot be written is refused here, and the
    pixel format and audio mode the writer will use are known."""
    options = replace(options) if options is not None else Options()
    input_path, output_path = Path(input_path), Path(output_path)
    _check_output(input_path, output_path, options)
    if options.start < 0 or (options.duration is not None and options.duration <= 0):
        raise SloMoError("--start must be >= 0 and --duration > 0")
    if not 0.0 <= options.scene_threshold <= 1.0:
        raise SloMoError(
            f"--scene-threshold must be between 0 and 1 (1 disables), got {options.scene_threshold}"
        )
    if options.crf is not None and not 0 <= options.crf <= 51:
        raise SloMoError(f"--crf must be between 0 and 51, got {options.crf:g}")
    check_preset(options.codec, options.preset)
    if is_sequence_input(input_path):
        rate = parse_rate(options.input_fps) if options.input_fps is not None else DEFAULT_RATE
        info = probe_sequence(input_path, rate, options.max_size)
    else:
        if options.input_fps is not None:
            raise SloMoError("--input-fps is for image-sequence input; a video has its own frame rate")
        info = probe(input_path, options.max_size)
    if info.duration is not None and options.start >= info.duration:
        raise SloMoError(f"--start {options.start:g}s is past the end of {input_path} ({info.duration:.2f}s)")
    out_rate, slowdown = rates_for(info.rate, options)
    to_sequence = is_sequence_output(output_path)
    keep_audio, audio_words, audio_note = _audio_plan(info, options, to_sequence, slowdown)
    pix_fmt, picture_note = None, ""
    if not to_sequence:
        audio = _audio_source(info, options) if keep_audio else None
        try:
            check = VideoWriter(
                output_path,
                info,
                out_rate,
                options.codec,
                options.crf,
                options.preset,
                audio,
                check_only=True,
                pix_fmt=options.pix_fmt,
            )
        finally:
            if audio is not None:
                audio.close()
        pix_fmt, picture_note = check.pix_fmt, check.note
        if keep_audio:
            audio_words = check.audio_mode or "none"
    return JobPlan(
        input=input_path,
        output=output_path,
        info=info,
        options=options,
        out_rate=out_rate,
        slowdown=slowdown,
        output_kind="sequence" if to_sequence else "video",
        pix_fmt=pix_fmt,
        keep_audio=keep_audio,
        audio=audio_words,
        audio_note=audio_note,
        notes=_variable_rate_notes(info, options, out_rate),
        picture_note=picture_note,
    )


def interpolate_video(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    interpolator,
    backend: str,
    options: Options | None = None,
    progress: bool | None = None,
    say: Callable[[str], None] | None = None,
    claim: OutputLock | None = None,
) -> Summary:
    """Interpolate `input_path` into `output_path` with `interpolator` (a runtime Interpolator):
    `plan_job`, then `run_job`. Either may be an image sequence (see sequence.py).

    Raises SloMoError (one line) for bad input or options; never leaves a partial output, and
    never replaces an existing one unless `options.overwrite`. `claim`: the output's lock, when
    the caller took it (claim_output) before loading the model; otherwise it is taken here.
    """
    plan = plan_job(input_path, output_path, options)
    return run_job(plan, interpolator, backend, progress, say, claim)


def run_job(
    plan: JobPlan,
    interpolator,
    backend: str,
    progress: bool | None = None,
    say: Callable[[str], None] | None = None,
    claim: OutputLock | None = None,
) -> Summary:
    """Run a planned job (`plan_job`) on this machine with `interpolator`; `claim` as in
    interpolate_video."""
    lock = claim if claim is not None else claim_output(plan.output)
    try:
        plan.check_output()  # again, now that no other run can write it
        return _run(plan, interpolator, backend, progress, say or (lambda text: print(text, file=sys.stderr)))
    finally:
        if claim is None:
            lock.release()


def pair_jobs(
    decoded: Iterable[tuple[np.ndarray, float, object]],
    timeline: Timeline,
    detector: SceneDetector,
    prepare: Callable[[np.ndarray, np.ndarray], object] | None,
    nominal_gap: Fraction,
    on_first: Callable[[float], None] = lambda when: None,
) -> Iterator[_PairJob]:
    """The plan of a job, pure and in order: one job per consecutive pair of decoded frames
    (frame, seconds, native frame), with the output slots that fall in its interval, the times
    that need the model (none across a cut or between identical frames) and, when there are any
    and `prepare` is given, the prepared pair; then the last frame held for one interval.
    Tests drive it without threads or a model (`prepare=None`)."""
    previous = None
    origin = 0.0
    gap = nominal_gap
    for frame, when, native in decoded:
        cut = detector.is_cut(frame)
        if previous is None:
            origin = when
            on_first(when)
            previous = (frame, when, native)
            continue
        frame0, t0, native0 = previous
        gap = when - t0
        slots = timeline.slots(t0 - origin, when - origin)
        same = not cut and np.array_equal(frame0, frame)
        times = [s.t for s in slots if s.t > 0] if not (cut or same) else []
        pair = prepare(frame0, frame) if times and prepare is not None else None
        yield _PairJob(frame0, frame, native0, native, slots, times, pair, cut, same)
        previous = (frame, when, native)
    if previous is not None:
        frame0, t0, native0 = previous
        # The last frame is shown for one frame interval, so the output lasts as long as the source.
        yield _PairJob(frame0, None, native0, None, timeline.slots(t0 - origin, t0 - origin + gap), [], None)


def holds_second(t: float) -> bool:
    """Across a cut (or between identical frames) an output slot at t shows the nearer original:
    the pair's second frame from the middle on."""
    return t >= 0.5


def job_frames(job: _PairJob, made: list, summary: Summary) -> Iterator[object]:
    """The output frames of one job's slots, in order: originals as decoded, the model's frames,
    and held originals (the last frame, either side of a cut); counts them in `summary`."""
    new = iter(made)
    for slot in job.slots:
        if slot.t == 0.0:
            frame = job.native0
        elif job.frame1 is None:
            frame = job.native0
            summary.held_frames += 1
        elif job.cut or job.same:
            # Never morph across a cut: hold whichever original is nearer in time.
            frame = job.native1 if holds_second(slot.t) else job.native0
            summary.held_frames += int(job.cut)
        else:
            frame = next(new)
            summary.new_frames += 1
        summary.frames_out += 1
        yield frame


def _open_output(plan: JobPlan, summary: Summary, say):
    """The writer (video or image sequence) and the audio source it copies, if the plan keeps it;
    says the writer's note on the picture, and how the audio is written, in `summary`."""
    audio = plan.open_audio()
    try:
        if plan.to_sequence:
            writer = SequenceWriter(plan.output, plan.info, plan.options.overwrite)
        else:
            options = plan.options
            writer = VideoWriter(
                plan.output,
                plan.info,
                plan.out_rate,
                options.codec,
                options.crf,
                options.preset,
                audio,
                overwrite=options.overwrite,
                pix_fmt=plan.pix_fmt,
            )
    except BaseException:
        if audio is not None:
            audio.close()
        raise
    if plan.picture_note:
        summary.notes.append(plan.picture_note)
        say(f"note: {plan.picture_note}")
    if audio is not None:
        summary.audio = writer.audio_mode or "none"
    return writer, audio


def _expected_frames(info: VideoInfo, options: Options, out_rate: Fraction, slowdown: int) -> int | None:
    if not info.duration:
        return None
    length = info.duration - options.start
    if options.duration is not None:
        length = min(length, options.duration)
    return max(1, round(length * float(out_rate) * slowdown))


def _run(
    plan: JobPlan,
    interpolator,
    backend: str,
    progress: bool | None,
    say: Callable[[str], None],
) -> Summary:
    input_path, info, options = plan.input, plan.info, plan.options
    out_rate, slowdown = plan.out_rate, plan.slowdown
    summary = plan.summary(backend)
    plan.announce(summary, say)
    segment = " in that segment" if options.start or options.duration else ""
    model_time = _Clock()
    began = time.perf_counter()
    try:
        # One owner for every thread of the job; leaving it stops them in reverse order: the
        # encoder, then the output's clean-up (so a stalled reader never keeps a partial file),
        # the flow thread (its model call returns before the caller may close the backend; its
        # queued pairs go back), the decoder.
        with Stages(say=say) as stages:
            frames = sequence_frames if info.files else decode_frames

            def counted(items):
                for item in items:
                    summary.frames_in += 1
                    yield item

            writer, audio = _open_output(plan, summary, say)
            finished = False

            def clean_up() -> None:
                try:
                    if not finished:
                        writer.abort()
                finally:
                    if audio is not None:
                        audio.close()

            def prepare(frame0: np.ndarray, frame1: np.ndarray) -> object:
                with model_time:
                    return interpolator.prepare(frame0, frame1)

            def on_first(when: float) -> None:
                if audio is not None:
                    audio.origin = info.start_time + when

            def release(job: _PairJob) -> None:  # once, whoever reaches it first
                pair, job.pair = job.pair, None
                if pair is not None:
                    interpolator.release(pair)

            detector = SceneDetector(options.scene_threshold)
            repeats = RepeatFilter() if options.dedup else None
            # The encoder's thread starts before the reader's: in the other order x264's output
            # varied from run to run (5 of 7 repeats of one job differed from the first; cause
            # not found), breaking "the same frames on every path". Sinks are joined first anyway.
            sink = stages.sink(writer.write, _QUEUE_OUT, "slomo-encode")
            try:
                source = counted(frames(info, options.start, options.duration))
                decoded = stages.source(repeats(source) if repeats else source, _QUEUE_FRAMES, "slomo-decode")
                timeline = Timeline.for_source(info, out_rate, slowdown)
                jobs = stages.source(
                    pair_jobs(decoded, timeline, detector, prepare, 1 / info.rate, on_first),
                    interpolator.queue_depth,
                    "slomo-flow",
                    discard=release,
                )
            finally:
                stages.callback(clean_up)  # after the threads, so it runs before they are joined
            bar = _progress_bar(progress, info, options, out_rate, slowdown)
            if bar is not None:
                stages.callback(bar.close)
            for job in jobs:
                summary.cuts += int(job.cut)
                made = []
                if job.times:
                    try:
                        with model_time:
                            made = interpolator.synthesize(job.pair, job.times)
                    finally:
                        release(job)
                for frame in job_frames(job, made, summary):
                    sink.put(frame)
                    if bar is not None:
                        bar.update(1)
            if summary.frames_in == 0:
                raise SloMoError(f"{input_path} has no video frames{segment}")
            if summary.frames_in < 2:
                raise SloMoError(
                    f"{input_path} has only one frame{segment}: there is nothing to interpolate between"
                )
            summary.repeats = repeats.dropped if repeats else 0
            sink.finish()
            writer.finish(audio_end=Fraction(writer.count) / out_rate if audio is not None else None)
            finished = True
    except Stopped:
        raise SloMoError("stopped") from None
    summary.seconds = time.perf_counter() - began
    summary.model_seconds = model_time.seconds
    return summary


class _Clock:
    """Seconds spent inside the model, summed over the threads that call it."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._lock = threading.Lock()
        self._began = threading.local()

    def __enter__(self) -> None:
        self._began.value = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        spent = time.perf_counter() - self._began.value
        with self._lock:
            self.seconds += spent


def _progress_bar(
    progress: bool | None, info: VideoInfo, options: Options, out_rate: Fraction, slowdown: int
):
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm import tqdm

    expected = _expected_frames(info, options, out_rate, slowdown)
    return tqdm(total=expected, unit="frame", desc="interpolating", dynamic_ncols=True, file=sys.stderr)
