"""Encoding the output (libx264 via PyAV) with the source's audio, to a temporary file that is
renamed over the target only when everything succeeded."""

from __future__ import annotations

import contextlib
import errno
import io
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from superslomo.errors import SloMoError
from superslomo.video.color import from_rgb, writable_format
from superslomo.video.decode import VideoInfo, _short, color_model, reading_error
from superslomo.video.publish import TargetAppeared, check_new, publish_file

DEFAULT_CODEC = "libx264"
# crf 14 from 640x360 up: originals come back at >= 40 dB PSNR on the real clips (tested; 16 was
# marginal at factor 4, where originals land on B-frames).
DEFAULT_CRF = 14


def default_crf(width: int, height: int) -> float:
    """Small frames carry more detail per pixel and x264 loses it at crf 14 (176x144 comes back
    at 36 dB): lower the crf by 5 per halving of the area below 640x360, down to 4. Small frames
    cost few bytes whatever the crf."""
    import math

    ratio = (640 * 360) / max(1, width * height)
    return float(
        max(4, min(DEFAULT_CRF, round(DEFAULT_CRF - 5 * math.log2(ratio)))) if ratio > 1 else DEFAULT_CRF
    )


DEFAULT_PRESET = "fast"

# Audio codecs each output container takes as-is; anything else is re-encoded (AAC/Opus).
_COPYABLE = {
    "mp4": {"aac", "mp3", "opus", "alac", "ac3", "eac3", "flac"},
    "mov": {"aac", "mp3", "alac", "ac3", "pcm_s16le"},
    "matroska": None,  # Matroska takes anything
    "webm": {"opus", "vorbis"},
}
_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
_AUDIO_FALLBACK = {"webm": "libopus"}
# The encoder to name when a container refuses the default (WebM holds VP8, VP9 and AV1 only).
_VIDEO_FOR = {"webm": "libvpx-vp9"}


def container_format(output: Path) -> str:
    fmt = _FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise SloMoError(f"output must end in one of {', '.join(sorted(_FORMATS))}: {output}")
    return fmt


def audio_codec_name(stream) -> str:
    name = stream.codec_context.name
    return {"mp3float": "mp3", "mp3adufloat": "mp3", "aac_fixed": "aac", "libopus": "opus"}.get(name, name)


X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)


def check_preset(codec: str, preset: str) -> None:
    """x264/x265 refuse an unknown preset only when the encoder opens, with an errno; say it first."""
    if codec in ("libx264", "libx265") and preset not in X264_PRESETS:
        raise SloMoError(f"unknown --preset {preset!r} for {codec}; choose one of {', '.join(X264_PRESETS)}")


def check_output_path(output: Path, input_path: Path, overwrite: bool = False) -> None:
    container_format(output)
    try:
        same = output.resolve() == input_path.resolve() or (output.exists() and output.samefile(input_path))
    except OSError:
        same = False
    if same:
        raise SloMoError(f"output is the input file ({output}); choose another name")
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        raise SloMoError(f"output folder does not exist: {folder}")
    if output.is_dir():
        raise SloMoError(f"output is a folder: {output}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SloMoError(f"cannot write to {folder} (permission denied)")
    check_new(output, overwrite)


def write_error(error: BaseException, output: Path) -> SloMoError:
    code = getattr(error, "errno", None)
    if code == errno.ENOSPC:
        return SloMoError(f"disk full while writing {output}; nothing was left behind")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return SloMoError(f"cannot write {output}: permission denied")
    return SloMoError(f"writing {output} failed: {_short(error)}")


def audio_rate(source: int, supported) -> int:
    """The sample rate to re-encode at: the source's if the encoder takes it, else the nearest
    rate above it (no detail lost), else the highest there is. Opus only runs at 48/24/16/12/8 kHz."""
    rates = sorted(supported or [])
    if not rates or source in rates:
        return source
    above = [rate for rate in rates if rate >= source]
    return above[0] if above else rates[-1]


class AudioSource:
    """The source's first audio stream for one segment: packets to copy, or frames to re-encode.
    Every copied packet is also decoded, so a broken stream fails loudly here instead of
    producing a file whose sound is garbage."""

    def __init__(self, info: VideoInfo, origin: Fraction, end: Fraction | None) -> None:
        import av

        self.container = av.open(str(info.path), metadata_errors="ignore")
        self.stream = self.container.streams.audio[0]
        self.path = info.path
        self.origin = origin  # source seconds that become output time 0
        self.end = end
        self.tb = Fraction(self.stream.time_base)
        self.start = Fraction(self.stream.start_time or 0) * self.tb
        self._packets = self.container.demux(self.stream)
        self._errors = 0
        self._decoded = 0

    def close(self) -> None:
        self.container.close()

    def packets(self):
        """(packet, source seconds) within the segment, in order; stops at the segment end."""
        import av

        for packet in self._packets:
            if packet.size == 0 or packet.pts is None:
                continue  # the demuxer's end-of-stream marker
            when = Fraction(packet.pts) * self.tb
            length = Fraction(packet.duration or 0) * self.tb
            if when + length <= self.origin and when < self.origin - Fraction(1, 20):
                continue
            if self.end is not None and when >= self.end:
                return
            try:
                frames = self.stream.decode(packet)
            except av.error.FFmpegError as error:
                raise SloMoError(
                    f"{self.path}: the audio stream cannot be decoded ({_short(error)}); "
                    "use --no-audio to drop it"
                ) from None
            self._decoded += len(frames)
            yield packet, when, frames


def _chroma_shift(pix_fmt: str) -> tuple[int, int]:
    import av

    fmt = av.VideoFormat(pix_fmt)
    planes = fmt.components
    if len(planes) < 3 or fmt.is_rgb:
        return 0, 0
    return (1 if fmt.chroma_width(2) < 2 else 0), (1 if fmt.chroma_height(2) < 2 else 0)


def pad_frame(frame, width: int, height: int):
    """`frame` grown to width x height (planar formats), its last column and row repeated:
    chroma planes of an odd 4:2:0 frame already cover the padded size."""
    import av

    out = av.VideoFrame(width, height, frame.format.name)
    wide = max(c.bits for c in frame.format.components) > 8
    for src, dst in zip(frame.planes, out.planes, strict=True):
        dtype = np.uint16 if wide else np.uint8
        item = np.dtype(dtype).itemsize
        rows_in = np.frombuffer(src, dtype).reshape(src.height, src.line_size // item)[:, : src.width]
        rows_out = np.frombuffer(dst, dtype).reshape(dst.height, dst.line_size // item)
        rows_out[: dst.height, : dst.width] = np.pad(
            rows_in, ((0, dst.height - src.height), (0, dst.width - src.width)), mode="edge"
        )
    out.color_range = frame.color_range
    if frame.colorspace:
        out.colorspace = frame.colorspace
    return out


def _trim_audio(frame, when: Fraction, origin: Fraction, end: Fraction | None):
    """The part of a decoded audio frame inside [origin, end) (source seconds), or None. A
    re-encoded stream is cut to the sample, so it starts with the first video frame (a copied
    one can only be cut at packets)."""
    import av

    start = Fraction(frame.pts) * Fraction(frame.time_base) if frame.pts is not None else when
    rate = frame.sample_rate
    skip = max(0, round((origin - start) * rate))
    keep = frame.samples if end is None else min(frame.samples, round((end - start) * rate))
    if skip == 0 and keep >= frame.samples:
        return frame
    if keep <= skip:
        return None
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    data = data[:, skip:keep] if frame.format.is_planar else data[:, skip * channels : keep * channels]
    part = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(data), format=frame.format.name, layout=frame.layout.name
    )
    part.sample_rate = rate
    return part


class VideoWriter:
    def __init__(
        self,
        output: Path,
        info: VideoInfo,
        rate: Fraction,
        codec: str = DEFAULT_CODEC,
        crf: float | None = None,
        preset: str = DEFAULT_PRESET,
        audio: AudioSource | None = None,
        overwrite: bool = False,
        check_only: bool = False,
        keep_on_conflict: bool = False,
        pix_fmt: str | None = None,
    ) -> None:
        """`check_only`: set everything up in memory, open the encoders and write the header,
        then stop: a combination FFmpeg refuses (a codec a container cannot hold, an audio rate
        an encoder does not take) fails here, before a model is loaded. `keep_on_conflict`: when
        the target appeared while this run wrote (and may not be replaced), the finished video is
        kept under another name, which the error names, instead of being deleted. `pix_fmt`: the
        output's pixel format (None: chosen, see _setup_video)."""
        import av

        self.output = output
        self.fmt = container_format(output)
        self.overwrite = overwrite
        self.keep_on_conflict = keep_on_conflict
        self.temp = (
            None if check_only else output.with_name(f".{output.stem}.partial{os.getpid()}{output.suffix}")
        )
        self.rate = rate
        self.count = 0
        self.audio = audio
        self.audio_mode = None
        self.note = ""  # what the user should know about the output's picture (odd sizes)
        self._audio_iter = None
        self._audio_pending = None
        self._color = color_model(info)
        try:
            self.container = av.open(io.BytesIO() if check_only else str(self.temp), "w", format=self.fmt)
        except (av.error.FFmpegError, OSError) as error:
            raise write_error(error, output) from None
        try:
            self.crf = crf if crf is not None else default_crf(info.width, info.height)
            self._setup_video(info, codec, self.crf, preset, pix_fmt)
            if audio is not None:
                self._setup_audio(audio)
            self._start(info, codec)
        except BaseException:
            self.abort()
            raise
        if check_only:
            self.abort()

    def _start(self, info: VideoInfo, codec: str) -> None:
        import av

        try:
            self.video.codec_context.open()
        except av.error.FFmpegError as error:
            raise SloMoError(
                f"{codec} cannot encode {info.width}x{info.height} {self.pix_fmt} video "
                f"({reading_error(error)}); choose another --codec"
            ) from None
        if self.audio_mode not in (None, "copy"):
            try:
                self.audio_out.codec_context.open()
            except av.error.FFmpegError as error:
                raise SloMoError(
                    f"the source's audio cannot be {self.audio_mode} ({reading_error(error)}); use --no-audio"
                ) from None
        try:
            self.container.start_encoding()
        except av.error.FFmpegError as error:
            what = f"{codec} video" + (
                f" with {audio_codec_name(self.audio.stream)} audio" if self.audio_mode else ""
            )
            raise SloMoError(
                f"{self.output.suffix} files cannot hold {what} ({reading_error(error)}); "
                "use .mkv or another --codec"
            ) from None

    def _setup_video(
        self, info: VideoInfo, codec: str, crf: float, preset: str, asked: str | None = None
    ) -> None:
        import av

        try:
            encoder = av.codec.Codec(codec, "w")
        except (av.error.FFmpegError, ValueError):
            raise SloMoError(f"unknown video encoder {codec!r} (try libx264)") from None
        if encoder.type != "video":
            raise SloMoError(f"{codec!r} is not a video encoder")
        if (
            encoder.name not in self.container.supported_codecs
            and codec not in self.container.supported_codecs
        ):
            works = _VIDEO_FOR.get(self.fmt)
            raise SloMoError(
                f"{self.output.suffix} files cannot hold {codec} video; use .mkv or "
                + (f"--codec {works}" if works else "another --codec")
            )
        stream = self.container.add_stream(codec, rate=self.rate)
        formats = [f.name for f in (encoder.video_formats or [])]
        usable = [f for f in formats if writable_format(f)] if formats else ["yuv420p"]
        if asked is not None:
            if asked not in usable:
                raise SloMoError(
                    f"{codec} cannot write --pix-fmt {asked}; choose one of {', '.join(usable) or 'none'}"
                )
            pix_fmt = asked
        elif not usable:
            raise SloMoError(
                f"{codec} takes no planar YUV pixel format ({', '.join(formats)}); choose another --codec"
            )
        else:
            odd = info.width % 2 or info.height % 2
            # Keep the source's pixel format where the encoder takes it (4:2:2, 10-bit, full
            # range) and new frames can be written in it. An odd size goes 4:2:0 with one row or
            # column repeated: 4:4:4 would keep it, but browsers and most hardware players cannot
            # open H.264 High 4:4:4 (--pix-fmt yuv444p asks for it).
            pix_fmt = info.pix_fmt if info.pix_fmt in usable and not odd else None
            if pix_fmt is None:
                pix_fmt = next((f for f in ("yuv420p", "yuv444p") if f in usable), usable[0])
        self.size = (info.width, info.height)
        if _chroma_shift(pix_fmt) != (0, 0):
            # Pad to whole chroma samples, repeating the last column/row (see pad_frame).
            sx, sy = _chroma_shift(pix_fmt)
            self.size = (-(-info.width >> sx) << sx, -(-info.height >> sy) << sy)
        if self.size != (info.width, info.height):
            self.note = (
                f"{info.width}x{info.height} is odd: written as {self.size[0]}x{self.size[1]} "
                f"{pix_fmt} (last column/row repeated) so players open it; --pix-fmt yuv444p keeps "
                "the size"
            )
        stream.width, stream.height = self.size
        stream.pix_fmt = pix_fmt
        ctx = stream.codec_context
        # How players show the frames: a portrait phone clip stays portrait, PAL 16:15 pixels
        # stay 16:15 (both are the source's, carried as they are).
        if info.display_matrix is not None:
            stream.set_display_matrix(list(info.display_matrix))
        if info.sample_aspect is not None:
            ctx.sample_aspect_ratio = info.sample_aspect
            stream.sample_aspect_ratio = info.sample_aspect
        # Frames are numbered 0, 1, 2... in the encoder's time base; the muxer rescales packets.
        self.frame_time_base = Fraction(self.rate.denominator, self.rate.numerator)
        ctx.time_base = self.frame_time_base
        for name in ("colorspace", "color_range", "color_primaries", "color_trc"):
            value = getattr(info, name)
            unspecified = 2
            if name == "color_range":
                # Say the range the frames are written in (a yuvj source may not tag it); its
                # "unspecified" is 0, and 2 means full range.
                value, unspecified = (2 if self._color.full_range else value), 0
            if value and value != unspecified:  # leave unspecified so
                try:
                    setattr(ctx, name, value)
                except (ValueError, AttributeError):
                    pass
        options = {}
        if encoder.name in ("libx264", "libx265"):
            options = {"crf": f"{crf:g}", "preset": preset}
        elif encoder.name in ("libvpx-vp9", "libaom-av1", "libsvtav1"):
            # Constant quality as with x264 (their crf scales run to 63); libvpx needs the bit
            # rate at 0 for it, or it aims at its 256 kb/s default.
            options = {"crf": f"{max(crf, 1):g}"}
            if encoder.name != "libsvtav1":
                options["b"] = "0"
        stream.options = options
        stream.thread_type = "AUTO"
        self.video = stream
        self.pix_fmt = pix_fmt

    def _setup_audio(self, audio: AudioSource) -> None:
        name = audio_codec_name(audio.stream)
        copyable = _COPYABLE.get(self.fmt)
        if copyable is None or name in copyable:
            self.audio_out = self.container.add_stream_from_template(audio.stream)
            self.audio_mode = "copy"
        else:
            import av

            target = _AUDIO_FALLBACK.get(self.fmt, "aac")
            ctx = audio.stream.codec_context
            encoder = av.codec.Codec(target, "w")
            rate = audio_rate(ctx.sample_rate, encoder.audio_rates)
            channels = ctx.channels or 2
            layout = ctx.layout.name if ctx.layout and channels else "stereo"
            if target == "libopus" and channels > 2:
                layout = "stereo"  # libopus takes more channels only with a mapping family: keep it simple
            self.audio_out = self.container.add_stream(target, rate=rate)
            self.audio_out.layout = layout
            self.audio_out.bit_rate = max(ctx.bit_rate or 0, 128_000)
            changes = (
                [f"{ctx.sample_rate / 1000:g} -> {rate / 1000:g} kHz"] if rate != ctx.sample_rate else []
            )
            changes += [f"{ctx.layout.name} -> {layout}"] if ctx.layout and layout != ctx.layout.name else []
            self.audio_mode = f"re-encoded {name} as {target.replace('lib', '')}" + (
                f" ({', '.join(changes)})" if changes else ""
            )
            self._resampler = av.AudioResampler(
                format=encoder.audio_formats[0].name,
                layout=layout,
                rate=rate,
            )
        self._audio_iter = audio.packets()

    # -- writing -----------------------------------------------------------------------
    def _mux(self, packets) -> None:
        import av

        try:
            self.container.mux(packets)
        except (OSError, av.error.FFmpegError) as error:
            raise write_error(error, self.output) from None

    def _audio_until(self, limit: Fraction | None) -> None:
        """Mux source audio up to output time `limit` (None: all of the segment)."""
        if self._audio_iter is None:
            return
        audio = self.audio
        while True:
            if self._audio_pending is None:
                self._audio_pending = next(self._audio_iter, None)
                if self._audio_pending is None:
                    self._audio_iter = None
                    return
            packet, when, frames = self._audio_pending
            if limit is not None and when - audio.origin > limit:
                return
            self._audio_pending = None
            if self.audio_mode == "copy":
                shift = int(audio.origin / audio.tb)
                packet.pts -= shift
                if packet.dts is not None:
                    packet.dts -= shift
                packet.stream = self.audio_out
                self._mux(packet)
            else:
                for frame in frames:
                    frame = _trim_audio(frame, when, audio.origin, audio.end)
                    if frame is None:
                        continue
                    for converted in self._resampler.resample(frame):
                        converted.pts = None
                        self._mux(self._encode_audio(converted))

    def _encode_audio(self, frame):
        import av

        try:
            return self.audio_out.encode(frame)
        except av.error.FFmpegError as error:
            raise SloMoError(
                f"the source's audio cannot be {self.audio_mode} ({reading_error(error)}); use --no-audio"
            ) from None

    def write(self, frame) -> None:
        """One output frame: an RGB array (a new frame), or a decoded av.VideoFrame (an original,
        encoded from its own YUV planes: an RGB round trip would cost it 1-4 dB before x264 even
        starts)."""
        import av

        if not isinstance(frame, np.ndarray) and frame.format.is_rgb:
            frame = frame.to_ndarray(format="rgb24")  # an RGB source: its originals take the exact path too
        if isinstance(frame, np.ndarray):
            # The exact inverse of the decoder's conversion (see color.py): new frames must land
            # on the same levels as the originals around them.
            image = from_rgb(frame, self.pix_fmt, self._color)
        else:
            image = frame
            if frame.format.name != self.pix_fmt:
                # Repack only (chroma layout, bit depth): the range stays what the source's is.
                same = "JPEG" if self._color.full_range else "MPEG"
                image = frame.reformat(format=self.pix_fmt, src_color_range=same, dst_color_range=same)
            # The source's frame types would otherwise force x264's I/P/B decisions.
            image.pict_type = av.video.frame.PictureType.NONE
        if (image.width, image.height) != self.size:
            image = pad_frame(image, *self.size)
        image.pts = self.count
        image.time_base = self.frame_time_base
        self.count += 1
        try:
            packets = self.video.encode(image)
        except av.error.FFmpegError as error:
            raise write_error(error, self.output) from None
        self._mux(packets)
        # Interleave: audio runs about half a second ahead of the video written so far.
        self._audio_until(Fraction(self.count, 1) / self.rate + Fraction(1, 2))

    def finish(self, audio_end: Fraction | None = None) -> Path:
        """Flush, close and rename over the target. `audio_end`: output seconds of audio to keep."""
        import av

        try:
            self._mux(self.video.encode(None))
            self._audio_until(audio_end)
            if self.audio_mode and self.audio_mode != "copy":
                for converted in self._resampler.resample(None):  # what the resampler still holds
                    converted.pts = None
                    self._mux(self._encode_audio(converted))
                self._mux(self._encode_audio(None))
            self.container.close()
        except av.error.FFmpegError as error:
            self.abort()
            raise write_error(error, self.output) from None
        except BaseException:
            self.abort()
            raise
        try:
            publish_file(self.temp, self.output, self.overwrite)
        except TargetAppeared as error:
            if self.keep_on_conflict and self.temp is not None:
                kept = self._keep_aside()
                if kept is not None:
                    raise SloMoError(f"{error}; the finished video is kept as {kept}") from None
            self.abort()
            raise
        except OSError as error:
            self.abort()
            raise write_error(error, self.output) from None
        except BaseException:
            self.abort()
            raise
        return self.output

    def _keep_aside(self) -> Path | None:
        """The finished temporary file under a free visible name beside the target."""
        assert self.temp is not None
        for number in range(1, 1000):
            kept = self.output.with_name(f"{self.output.stem}.{number}{self.output.suffix}")
            try:
                os.link(self.temp, kept)  # never over another file
            except FileExistsError:
                continue
            except OSError:
                return None
            with contextlib.suppress(OSError):
                self.temp.unlink()
            return kept
        return None

    def abort(self) -> None:
        import av

        # Closing a half-written file may fail too; the file goes anyway.
        with contextlib.suppress(av.error.FFmpegError, OSError, ValueError):
            self.container.close()
        if self.temp is not None:
            with contextlib.suppress(FileNotFoundError):
                self.temp.unlink()
