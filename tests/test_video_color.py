"""New frames are encoded at the levels the model made them (issue 14: they came out ~1.38 grey
levels darker, because swscale's fast YUV -> RGB truncates on decode while RGB -> YUV rounds, so
frames that went decode -> model -> encode drifted dark while originals kept their own YUV).

The writer's RGB -> YUV and the decoder's YUV -> RGB must be each other's inverse for every
layout, matrix and range the writer keeps from a source."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from test_video_pipeline import BlendBackend
from videoclips import psnr, scene_frame

from superslomo.runtime import Interpolator
from superslomo.video.decode import decode_frames, probe
from superslomo.video.encode import VideoWriter
from superslomo.video.pipeline import Options, interpolate_video

W, H = 96, 64


def _tagged_source(path, pix_fmt, colorspace, color_range, frames=2):
    """A lossless clip in `pix_fmt` carrying colour tags, for the writer to take its layout from."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, pix_fmt
        stream.options = {"qp": "0", "preset": "ultrafast"}
        ctx = stream.codec_context
        ctx.colorspace, ctx.color_range = colorspace, color_range
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(scene_frame(i, W, H), format="rgb24").reformat(format=pix_fmt)
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _pictures() -> list[np.ndarray]:
    """What the model hands the writer: smooth pictures, blends of them (values off the lattice a
    decoder produces) and noise (every level, every hue)."""
    rng = np.random.default_rng(7)
    smooth = [scene_frame(i, W, H) for i in (0, 5)]
    blend = ((smooth[0].astype(np.float32) * 0.3 + smooth[1] * 0.7) + 0.5).astype(np.uint8)
    return [*smooth, blend, rng.integers(0, 256, (H, W, 3), dtype=np.uint8)]


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv422p", "yuv444p", "yuv420p10le"])
@pytest.mark.parametrize("colorspace,color_range", [(2, 0), (1, 1), (9, 1), (1, 2), (5, 2)])
def test_writer_and_decoder_are_inverses(tmp_path, pix_fmt, colorspace, color_range):
    src = _tagged_source(tmp_path / "src.mkv", pix_fmt, colorspace, color_range)
    info = probe(src)
    # A full-range H.264 stream decodes as yuvj*: the same layout under its older name.
    same = {pix_fmt, pix_fmt.replace("yuv", "yuvj", 1)}
    assert info.pix_fmt in same and info.colorspace == colorspace
    out = tmp_path / "out.mkv"
    writer = VideoWriter(out, info, Fraction(25), crf=0)  # x264 crf 0: lossless, so only conversions count
    pictures = _pictures()
    for picture in pictures:
        writer.write(picture)
    writer.finish()
    back = [d.image for d in decode_frames(probe(out))]
    assert probe(out).pix_fmt in same  # the layout under test is the one written
    for i, (got, want) in enumerate(zip(back, pictures, strict=False)):
        shift = float(np.mean(got.astype(np.float64) - want))
        assert abs(shift) < 0.1, f"picture {i}: mean shift {shift:+.3f} levels"
        # Subsampled chroma cannot keep sharp coloured edges; at 4:4:4 only rounding is left.
        floor = 45 if "444" in pix_fmt else 28
        if i < 3:
            assert psnr(got, want) >= floor, f"picture {i}: {psnr(got, want):.1f} dB"


def test_new_frames_keep_the_models_levels(tmp_path):
    """End to end at near-lossless crf: the encoded new frames are the API's frames."""
    from videoclips import make_clip

    src = make_clip(tmp_path / "src.mp4", frames=8, size=(96, 64), rate=25)
    out = tmp_path / "out.mp4"
    interpolator = Interpolator(BlendBackend())
    interpolate_video(
        src, out, interpolator, "blend", Options(factor=2, crf=1), progress=False, say=lambda s: None
    )
    source = [d.image for d in decode_frames(probe(src))]
    result = [d.image for d in decode_frames(probe(out))]
    for i in range(len(source) - 1):
        api = interpolator.interpolate(source[i], source[i + 1], [0.5])[0]
        made = result[2 * i + 1]
        shift = float(np.mean(made.astype(np.float64) - api))
        assert abs(shift) <= 0.4, f"new frame {i}: mean shift {shift:+.2f} levels"
        assert psnr(made, api) >= 38, f"new frame {i}: {psnr(made, api):.1f} dB"
