"""ffmpeg's motion-compensated interpolation (`minterpolate`) as an eval baseline.

It is the interpolator every video user already has (`ffmpeg -vf minterpolate`), so `slomo eval`
shows where the model stands against it. It runs in PyAV's bundled libavfilter: no system ffmpeg.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from superslomo.errors import SloMoError

# Motion-compensated interpolation with adaptive overlapped block compensation, bidirectional motion
# estimation and variable-size blocks: the best quality minterpolate offers. The scene-change
# detector is off because the clip fed to the filter jumps from frame0's repeats to frame1's; with
# detection on, a large motion would be taken for a cut and the filter would output a copy.
FILTER_OPTIONS = "mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1:scd=none"
METHOD = f"ffmpeg minterpolate ({FILTER_OPTIONS})"

# minterpolate accepts only planar YUV. 4:4:4 keeps every chroma sample (4:2:0 would blur colour
# edges and need even sizes), so odd sizes go through untouched, and motion is estimated on luma
# as it is for any ffmpeg user. The RGB -> YUV -> RGB round trip costs ~62 dB PSNR on ucf101 (far
# below any difference measured here). Full-range yuvj444p round-trips worse (~49 dB) through
# swscale, and passing RGB planes as if they were YUV (lossless) makes the search run on green
# instead of luma, which scored 0.07 dB lower: neither is fairer.
PIXEL_FORMAT = "yuv444p"

# The filter refuses frames under 32 pixels on a side (its block search needs the room).
MIN_SIDE = 32

# Each input is repeated: the filter buffers a frame beyond the interval it interpolates, so a
# two-frame clip yields nothing. Measured: 1+2, 2+2 and 3+3 repeats give the same middle frame, so
# the repeats give the filter room without changing its answer; 2+2 keeps the clip symmetric.
REPEATS = 2


def _check(frame0: np.ndarray, frame1: np.ndarray) -> None:
    for name, frame in (("frame0", frame0), ("frame1", frame1)):
        if (
            not isinstance(frame, np.ndarray)
            or frame.dtype != np.uint8
            or frame.ndim != 3
            or frame.shape[2] != 3
        ):
            raise SloMoError(f"minterpolate: {name} must be HxWx3 uint8 RGB")
    if frame0.shape != frame1.shape:
        raise SloMoError(f"minterpolate: frames differ in size ({frame0.shape} vs {frame1.shape})")


def minterpolate_middle(frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
    """The frame halfway between two HxWx3 uint8 RGB frames, as ffmpeg's minterpolate makes it at
    twice the frame rate; returned at the input size."""
    import av

    _check(frame0, frame1)
    height, width = frame0.shape[:2]
    # Edge replication gives small frames the size the filter needs without inventing motion;
    # the margin is cropped off again below.
    pad = ((0, max(0, MIN_SIDE - height)), (0, max(0, MIN_SIDE - width)), (0, 0))
    if any(p[1] for p in pad):
        frame0, frame1 = np.pad(frame0, pad, mode="edge"), np.pad(frame1, pad, mode="edge")
    padded_h, padded_w = frame0.shape[:2]

    try:
        graph = av.filter.Graph()
        source = graph.add(
            "buffer",
            f"video_size={padded_w}x{padded_h}:pix_fmt={PIXEL_FORMAT}:time_base=1/1:"
            "frame_rate=1/1:pixel_aspect=1/1",
        )
        interp = graph.add("minterpolate", f"fps=2:{FILTER_OPTIONS}")
        sink = graph.add("buffersink")
        source.link_to(interp)
        interp.link_to(sink)
        graph.configure()
    except (av.error.FFmpegError, ValueError) as error:
        raise SloMoError(
            f"minterpolate is not usable in this PyAV build ({error}); "
            "skip the baseline with --no-minterpolate"
        ) from None

    # Input frame i sits at time i; the wanted frame is halfway between frame0's last repeat and
    # frame1's first. Picked by time, not by position, so a filter that dropped or added a frame
    # cannot hand back a copy of an input instead.
    wanted = Fraction(2 * REPEATS - 1, 2)
    middle = None

    def drain() -> None:
        nonlocal middle
        while True:
            try:
                frame = sink.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            if frame.pts is not None and frame.pts * frame.time_base == wanted:
                middle = frame.to_ndarray(format="rgb24")

    for index, image in enumerate([frame0] * REPEATS + [frame1] * REPEATS):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24").reformat(
            format=PIXEL_FORMAT
        )
        frame.pts = index
        source.push(frame)
        drain()
    source.push(None)
    drain()
    if middle is None:
        raise SloMoError("minterpolate returned no frame at t=0.5")
    return np.ascontiguousarray(middle[:height, :width])


def minterpolate_stream_seconds(frames: list[np.ndarray]) -> float:
    """Seconds per new frame of minterpolate streaming `frames` to twice their rate, as an ffmpeg
    job runs it. `minterpolate_middle` feeds each input twice (see REPEATS), so its time is several
    frames' work and no measure of a job's speed."""
    import time

    import av

    height, width = frames[0].shape[:2]
    graph = av.filter.Graph()
    source = graph.add(
        "buffer",
        f"video_size={width}x{height}:pix_fmt={PIXEL_FORMAT}:time_base=1/1:frame_rate=1/1:pixel_aspect=1/1",
    )
    interp = graph.add("minterpolate", f"fps=2:{FILTER_OPTIONS}")
    sink = graph.add("buffersink")
    source.link_to(interp)
    interp.link_to(sink)
    graph.configure()
    converted = []
    for index, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24").reformat(
            format=PIXEL_FORMAT
        )
        frame.pts = index
        converted.append(frame)
    began = time.perf_counter()
    for frame in converted + [None]:
        source.push(frame)
        while True:
            try:
                sink.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                break
    return (time.perf_counter() - began) / (len(frames) - 1)
