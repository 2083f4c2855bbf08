"""The video engineer's footage (issue 28), generated with PyAV: MPEG program streams and their
seeks, rotation, sample aspect and colour tags, Theora, odd sizes, a constant rate with a gap,
duplicate frames. Each test failed on the code before its fix."""

from __future__ import annotations

import pytest
from test_video_pipeline import run
from videoclips import decode_all, make_program_stream, psnr, stream_facts

from superslomo.video.decode import decode_frames, probe


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
