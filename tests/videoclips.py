"""Small synthetic videos for the video tests, made with PyAV: moving shapes on a textured
background (texture gives the encoder and the PSNR checks something real to do)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def scene_frame(index: int, width: int, height: int, scene: int = 0) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if scene == 0:
        base = np.stack([40 + 60 * xx / width, 60 + 50 * yy / height, 120 + 0 * xx], axis=-1)
    else:  # a different shot: warm colours, other layout
        base = np.stack([200 - 40 * yy / height, 90 + 30 * xx / width, 30 + 0 * xx], axis=-1)
    base += (12 * np.sin(xx / 3.0) * np.cos(yy / 4.0))[..., None]
    frame = base
    cx = (8 + 3 * index) % max(1, width - 16)
    cy = height // 3
    frame[cy : cy + max(4, height // 5), cx : cx + max(6, width // 6)] = (
        (230, 40, 40) if scene == 0 else (20, 200, 220)
    )
    r = max(3, min(width, height) // 8)
    ox = width // 2 + int((width // 4) * np.sin(index / 5.0))
    oy = (2 * height) // 3
    disc = (xx - ox) ** 2 + (yy - oy) ** 2 <= r * r
    frame[disc] = (250, 250, 90)
    return np.clip(frame, 0, 255).astype(np.uint8)


def make_clip(
    path: Path,
    frames: int = 12,
    size: tuple[int, int] = (90, 50),
    rate: int | Fraction = 24,
    audio: str | None = None,
    cut_at: int | None = None,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    broken_audio: bool = False,
    preset: str = "ultrafast",
    audio_rate: int | None = None,
) -> Path:
    """Write a clip. `pts` (in `time_base`) makes it variable-rate; `cut_at` splices a second
    shot in from that frame; `audio` is an encoder name (aac, libmp3lame, libopus, libvorbis);
    `preset` other than ultrafast gives B-frames (reordered timestamps, as real footage has)."""
    import av

    width, height = size
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height = width, height
        video.pix_fmt = "yuv444p" if width % 2 or height % 2 else "yuv420p"
        video.options = {"crf": "8", "preset": preset}
        if preset != "ultrafast":  # x264 picks few B-frames on small clips: make them certain
            video.options["x264-params"] = "bframes=2:b-adapt=0"
        if time_base is not None:
            video.codec_context.time_base = time_base
        astream = None
        sample_rate = 44100
        if audio:
            sample_rate = audio_rate or (48000 if audio == "libopus" else 44100)  # Opus only runs at 48 kHz
            astream = container.add_stream(audio, rate=sample_rate)
            # FFmpeg's own Vorbis encoder (the only one PyAV ships) is experimental and stereo-only.
            astream.layout = "stereo" if audio == "vorbis" else "mono"
            if audio == "vorbis":
                astream.codec_context.options = {"strict": "experimental"}
        for i in range(frames):
            scene = 1 if cut_at is not None and i >= cut_at else 0
            image = scene_frame(i, width, height, scene)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=video.pix_fmt)
            frame.pts = pts[i] if pts is not None else i
            frame.time_base = time_base if time_base is not None else Fraction(1, 1) / Fraction(rate)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if astream is not None:
            duration = frames / float(rate) if pts is None else float((pts[-1] + 1) * time_base)
            total = int(duration * sample_rate)
            fmt = astream.codec_context.codec.audio_formats[0].name
            chunk = astream.codec_context.frame_size or 1024
            rng = np.random.default_rng(0)
            for start in range(0, total, chunk):
                n = min(chunk, total - start)
                tone = (0.3 * np.sin(2 * np.pi * 440 * (start + np.arange(chunk)) / sample_rate)).astype(
                    np.float32
                )
                channels = astream.codec_context.channels
                data = (
                    np.repeat(tone[None], channels, 0)
                    if fmt.endswith("p")
                    else np.repeat(tone[:, None], channels, 1)
                )
                af = av.AudioFrame.from_ndarray(
                    data.reshape(channels, -1) if fmt.endswith("p") else data.reshape(1, -1),
                    format="fltp" if fmt.endswith("p") else "flt",
                    layout=astream.layout.name,
                )
                af.sample_rate = sample_rate
                af.pts = start
                packets = astream.encode(af)
                for packet in packets:
                    if broken_audio:  # garbage payloads with valid timing: the decoder must choke
                        junk = av.Packet(rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
                        junk.pts, junk.dts, junk.time_base, junk.stream = (
                            packet.pts,
                            packet.dts,
                            packet.time_base,
                            astream,
                        )
                        packet = junk
                    container.mux(packet)
                del n
            container.mux(astream.encode(None))
    return path


def copy_cut(src: Path, dst: Path, seconds: float) -> Path:
    """The first `seconds` of `src`'s video by copying packets, as `ffmpeg -t S -c copy` or any
    cutter does: frames shown before `seconds` are kept, and with B-frames the container's
    duration (so its average rate) comes out a frame off the frame count."""
    import av

    with av.open(str(src)) as source, av.open(str(dst), "w") as out:
        stream = source.streams.video[0]
        copy = out.add_stream_from_template(stream)
        for packet in source.demux(stream):
            if packet.dts is None:
                continue
            if packet.dts * stream.time_base >= seconds:
                break
            if packet.pts * stream.time_base < seconds:
                packet.stream = copy
                out.mux(packet)
    return dst


def decode_all(path: Path) -> list[np.ndarray]:
    """Every frame as RGB, converted as the project's decoder converts (so that a comparison with
    frames from decode_frames measures the encoding, not two conversions)."""
    from superslomo.video.frames import iter_video_frames

    return list(iter_video_frames(path))


def stream_facts(path: Path) -> dict:
    """Frame count, rate, size, duration and audio facts of a file, from decoding it."""
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        times = [float(f.pts * video.time_base) for f in container.decode(video)]
    with av.open(str(path)) as container:
        facts = {
            "frames": len(times),
            "rate": container.streams.video[0].average_rate,
            "width": container.streams.video[0].codec_context.width,
            "height": container.streams.video[0].codec_context.height,
            "video_end": times[-1] + (times[-1] - times[-2]) if len(times) > 1 else None,
            "times": times,
            "audio": None,
        }
        if container.streams.audio:
            stream = container.streams.audio[0]
            samples = 0
            first = last = None
            for frame in container.decode(stream):
                first = frame.time if first is None else first
                last = frame.time + frame.samples / frame.sample_rate
                samples += frame.samples
            facts["audio"] = {
                "codec": stream.codec_context.name,
                "seconds": samples / stream.codec_context.sample_rate,
                "start": first,
                "end": last,
            }
    return facts


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def make_program_stream(
    path: Path, frames: int = 100, size: tuple[int, int] = (96, 64), rate: int = 25, gop: int = 18
) -> Path:
    """An MPEG-2 program stream (.mpg: mpeg2video + mp2 audio, as DVD and broadcast captures
    are), with a keyframe every `gop` frames: sparse enough that a seek lands between them."""
    import av

    width, height = size
    with av.open(str(path), "w", format="vob") as container:
        video = container.add_stream("mpeg2video", rate=rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.gop_size = gop
        video.options = {"qscale": "2", "bf": "2"}
        audio = container.add_stream("mp2", rate=48000)
        audio.layout = "stereo"
        for i in range(frames):
            image = scene_frame(i, width, height)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, rate)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        samples = 1152
        for n in range(0, frames * 48000 // rate, samples):
            tone = (8000 * np.sin(2 * np.pi * 440 * (n + np.arange(samples)) / 48000)).astype(np.int16)
            chunk = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="s16p", layout="stereo")
            chunk.sample_rate, chunk.pts = 48000, n
            container.mux(audio.encode(chunk))
        container.mux(audio.encode(None))
    return path
