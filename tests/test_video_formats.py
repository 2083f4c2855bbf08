"""Every container x video encoder x audio source that `slomo interpolate` accepts gives a valid
file, and every one it cannot write gives a one-line error (exit 2) and leaves nothing (issue 14:
.webm + libvpx-vp9 from a 44.1 kHz mp3 source was a traceback from the Opus encoder).

Tiny generated clips (4 frames, 64x64) keep the whole table to seconds."""

from __future__ import annotations

import pytest
from videoclips import make_clip, stream_facts

from tests.test_parity import run_cli

FRAMES = 4
CONTAINERS = [".mp4", ".mkv", ".mov", ".webm"]
# What each container holds (None: all of them); anything else must be refused up front.
# FFmpeg's QuickTime muxer has no tag for VP9 or AV1 (its MP4 mode does).
HOLDS = {
    ".mp4": None,
    ".mkv": None,
    ".mov": {"libx264", "libx265", "mpeg4"},
    ".webm": {"libvpx-vp9", "libsvtav1", "libaom-av1"},
}
# The audio codecs a container holds as they are (others are re-encoded).
AUDIO_OUT = {
    ".mp4": {"aac", "mp3float", "mp3", "opus"},
    ".mov": {"aac", "mp3float", "mp3"},
    ".mkv": {"aac", "mp3float", "mp3", "opus", "vorbis"},
    ".webm": {"opus", "vorbis"},
}
AUDIO = {  # name: (encoder, sample rate, source suffix); vorbis lives in Matroska
    "aac48k": ("aac", 48000, ".mp4"),
    "mp3_44k": ("libmp3lame", 44100, ".mp4"),
    "vorbis44k": ("vorbis", 44100, ".mkv"),
    "none": (None, 0, ".mp4"),
}


def _encoders() -> list[str]:
    import av

    wanted = ["libx264", "libx265", "libvpx-vp9", "mpeg4"]
    av1 = [name for name in ("libaom-av1", "libsvtav1") if name in av.codecs_available]
    return [name for name in wanted + av1[:1] if name in av.codecs_available]


ENCODERS = _encoders()


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    return {
        name: make_clip(
            root / f"{name}{suffix}",
            frames=FRAMES,
            size=(64, 64),
            rate=25,
            audio=encoder,
            audio_rate=rate or None,
        )
        for name, (encoder, rate, suffix) in AUDIO.items()
    }


@pytest.mark.parametrize("audio", list(AUDIO))
@pytest.mark.parametrize("codec", ENCODERS)
@pytest.mark.parametrize("suffix", CONTAINERS)
def test_container_codec_audio_table(onnx_model, sources, tmp_path, capsys, suffix, codec, audio):
    out = tmp_path / f"out{suffix}"
    code, stdout, stderr = run_cli(
        capsys,
        "interpolate",
        str(sources[audio]),
        "-o",
        str(out),
        "--model",
        str(onnx_model),
        "--factor",
        "2",
        "--codec",
        codec,
    )
    assert "Traceback" not in stdout + stderr
    expected = HOLDS[suffix] is None or codec in HOLDS[suffix]
    if not expected:
        lines = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert code == 2 and len(lines) == 1 and "cannot hold" in lines[0], stderr
        assert list(tmp_path.iterdir()) == [], "a refused run left a file"
        return
    assert code == 0, f"exit {code}: {stderr[-400:]}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    facts = stream_facts(out)
    assert facts["frames"] == 2 * FRAMES and facts["rate"] == 50
    if audio == "none":
        assert facts["audio"] is None
    else:
        assert facts["audio"] is not None and facts["audio"]["codec"] in AUDIO_OUT[suffix]
        assert abs(facts["audio"]["seconds"] - facts["video_end"]) <= 0.05


def test_reencoded_audio_takes_a_rate_the_encoder_supports(onnx_model, sources, tmp_path, capsys):
    # The case, spelled out: Opus has no 44.1 kHz, so the mp3 is resampled to 48 kHz.
    import av

    out = tmp_path / "o.webm"
    code, stdout, stderr = run_cli(
        capsys,
        "interpolate",
        str(sources["mp3_44k"]),
        "-o",
        str(out),
        "--model",
        str(onnx_model),
        "--codec",
        "libvpx-vp9",
    )
    assert code == 0, stderr
    assert "re-encoded mp3 as opus" in stdout
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.sample_rate == 48000
