"""Reading frames from images, frame folders and videos as HxWx3 uint8 RGB arrays."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from superslomo.errors import SloMoError
from superslomo.video.color import ColorModel, to_rgb, to_rgb8
from superslomo.video.decode import reading_error, video_decoder

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}
# The one list of what counts as a video file (eval's --data, calibration footage): the suffixes
# FFmpeg's demuxers are met under in the wild, broadcast, camera and phone formats included.
VIDEO_SUFFIXES = {
    ".mp4",
    ".m4v",
    ".mkv",
    ".mov",
    ".avi",
    ".webm",
    ".mpg",
    ".mpeg",
    ".m2v",
    ".vob",
    ".ts",
    ".mts",
    ".m2ts",
    ".ogv",
    ".ogg",
    ".dv",
    ".3gp",
    ".3g2",
    ".mxf",
    ".flv",
    ".wmv",
    ".asf",
    ".y4m",
    ".gif",
}


def read_image(path: str | os.PathLike) -> np.ndarray:
    from PIL import Image, PngImagePlugin

    # Real PNGs (e.g. from phone and camera pipelines) carry text chunks larger than Pillow's
    # default safety limit; they are metadata we never read, so allow them.
    PngImagePlugin.MAX_TEXT_CHUNK = 64 * 1024 * 1024
    path = Path(path)
    if not path.is_file():
        raise SloMoError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image).astype(np.uint16)
            elif image.mode in ("L", "RGB", "RGBA", "LA"):
                array = np.asarray(image)
            else:
                array = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as error:
        raise SloMoError(f"cannot read image {path}: {error}") from None
    return to_rgb8(array, str(path))


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return files


def iter_video_frames(path: str | os.PathLike, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Decode a video's first video stream to RGB uint8 frames."""
    import av

    path = Path(path)
    if not path.is_file():
        raise SloMoError(f"video not found: {path}")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise SloMoError(f"cannot open video {path}: {reading_error(error)}") from None
    with container:
        if not container.streams.video:
            raise SloMoError(f"{path} has no video stream")
        stream = video_decoder(container)
        ctx = stream.codec_context
        model = ColorModel.of(
            int(ctx.colorspace or 2), int(ctx.color_range or 0), ctx.format.name if ctx.format else ""
        )
        count = 0
        try:
            for frame in container.decode(stream):
                yield to_rgb(frame, model)
                count += 1
                if max_frames is not None and count >= max_frames:
                    return
        except av.error.FFmpegError as error:
            if count == 0:
                raise SloMoError(f"cannot decode video {path}: {reading_error(error)}") from None


def iter_source_frames(path: str | os.PathLike, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Frames of a video file or of a folder of images (sorted by name)."""
    path = Path(path)
    if path.is_dir():
        for index, file in enumerate(list_frame_files(path)):
            if max_frames is not None and index >= max_frames:
                return
            yield read_image(file)
    else:
        yield from iter_video_frames(path, max_frames)
