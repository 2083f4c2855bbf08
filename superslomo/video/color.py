"""RGB <-> YUV for the frames the model sees and makes, one matrix and one range per source, used
both ways so that a decode -> encode round trip leaves colours where they were.

YUV -> RGB is swscale with accurate rounding and full chroma interpolation: its default fast path
truncates and decodes 4:2:0 about 1.3 grey levels dark (issue 14). RGB -> YUV is numpy, rounded
to nearest: swscale's full-range chroma comes out half a level low even with accurate rounding,
and the encoder must be the exact inverse of the decoder or every new frame lands a shade off the
originals around it (a brightness pulse at high frame rates).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from superslomo.errors import SloMoError

# (Kr, Kb) by FFmpeg's AVColorSpace number; what swscale uses for the same numbers (SWS_CS_*).
_COEFFICIENTS = {
    1: (0.2126, 0.0722),  # BT.709
    4: (0.30, 0.11),  # FCC
    5: (0.299, 0.114),  # BT.470BG (= BT.601)
    6: (0.299, 0.114),  # SMPTE 170M (= BT.601)
    7: (0.212, 0.087),  # SMPTE 240M
    9: (0.2627, 0.0593),  # BT.2020 non-constant
    10: (0.2627, 0.0593),  # BT.2020 constant luminance: swscale treats it as NCL too
}
_SWS_COLORSPACE = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}
_BT601 = (0.299, 0.114)

# Planar YUV layouts the encoder path writes: (horizontal, vertical) chroma subsampling shifts.
_SUBSAMPLING = {"420": (1, 1), "422": (1, 0), "444": (0, 0)}


@dataclass(frozen=True)
class ColorModel:
    """How a source's YUV maps to RGB: the matrix (unspecified = BT.601, swscale's default) and
    the range (unspecified = limited, as nearly all video is)."""

    colorspace: int = 2  # AVColorSpace as the stream says; 2 = unspecified
    full_range: bool = False

    @classmethod
    def of(cls, colorspace: int, color_range: int, pix_fmt: str) -> ColorModel:
        # yuvj* formats are full range whatever the tag says (that is what the j means).
        return cls(int(colorspace or 2), color_range == 2 or pix_fmt.startswith("yuvj"))

    @property
    def coefficients(self) -> tuple[float, float]:
        return _COEFFICIENTS.get(self.colorspace, _BT601)

    def swscale(self) -> dict:
        """reformat() arguments naming this model, for the direction YUV -> RGB."""
        from av.video.reformatter import Interpolation

        kwargs = {
            "interpolation": Interpolation.BILINEAR
            | Interpolation.ACCURATE_RND
            | Interpolation.FULL_CHR_H_INT,
            "src_color_range": "JPEG" if self.full_range else "MPEG",
        }
        if self.colorspace in _SWS_COLORSPACE:
            kwargs["src_colorspace"] = _SWS_COLORSPACE[self.colorspace]
        return kwargs


def to_rgb(frame, model: ColorModel) -> np.ndarray:
    """A decoded av.VideoFrame as HxWx3 uint8 RGB."""
    if frame.format.is_rgb:
        return frame.to_ndarray(format="rgb24")
    return frame.reformat(format="rgb24", **model.swscale()).to_ndarray()


def writable_format(pix_fmt: str) -> bool:
    """Whether from_rgb can write `pix_fmt` (planar 4:2:0 / 4:2:2 / 4:4:4, 8 to 16 bit, LE)."""
    return _layout(pix_fmt) is not None


def _layout(pix_fmt: str) -> tuple[tuple[int, int], int] | None:
    name = pix_fmt[4:] if pix_fmt.startswith("yuvj") else pix_fmt[3:] if pix_fmt.startswith("yuv") else None
    if name is None or name[:3] not in _SUBSAMPLING or name[3:4] != "p":
        return None
    depth = name[4:]
    if depth == "":
        return _SUBSAMPLING[name[:3]], 8
    if depth.endswith("le") and depth[:-2] in ("9", "10", "12", "14", "16"):
        return _SUBSAMPLING[name[:3]], int(depth[:-2])
    return None


def rgb_to_planes(rgb: np.ndarray, pix_fmt: str, model: ColorModel) -> list[np.ndarray]:
    """Y, U, V planes (uint8 or uint16) of an HxWx3 uint8 RGB image, rounded to nearest.

    Chroma is subsampled by averaging (done on RGB, before the matrix: the same thing, as the
    matrix is linear, and a quarter of the work for 4:2:0), which the decoder's bilinear
    upsampling inverts without a bias."""
    layout = _layout(pix_fmt)
    if layout is None:
        raise ValueError(f"cannot write {pix_fmt} from RGB")
    (sx, sy), depth = layout
    kr, kb = model.coefficients
    luma = np.array([kr, 1.0 - kr - kb, kb])
    blue = (np.array([0.0, 0.0, 1.0]) - luma) * (0.5 / (1 - kb))
    red = (np.array([1.0, 0.0, 0.0]) - luma) * (0.5 / (1 - kr))
    scale = float(1 << (depth - 8))
    if model.full_range:
        # swscale reads high-bit-depth full range as the 8-bit code values shifted up (Y = 1020
        # for white at 10 bits, not ITU's 1023): match the decoder, or white drifts by 0.3%.
        y_gain = c_gain = scale
        y_offset = 0.0
    else:
        y_gain, c_gain = scale * 219 / 255, scale * 224 / 255
        y_offset = 16 * scale
    x = rgb.astype(np.float32)
    chroma = _subsample(x, sx, sy) if sx or sy else x
    top = (1 << depth) - 1
    dtype = np.uint8 if depth == 8 else np.uint16
    planes = []
    for source, row, gain, offset in (
        (x, luma, y_gain, y_offset),
        (chroma, blue, c_gain, 128 * scale),
        (chroma, red, c_gain, 128 * scale),
    ):
        plane = source @ (row * gain).astype(np.float32)
        plane += np.float32(offset)
        np.rint(plane, out=plane)
        np.clip(plane, 0, top, out=plane)
        planes.append(plane.astype(dtype))
    return planes


def _subsample(x: np.ndarray, sx: int, sy: int) -> np.ndarray:
    h, w = x.shape[:2]
    # Odd sizes: repeat the last row/column, as the decoder's upsampling does at the edge.
    ph, pw = -h % (1 << sy), -w % (1 << sx)
    if ph or pw:
        x = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="edge")
    # Sums of strided views: numpy's mean over the axes of a reshape is five times slower.
    if sy:
        x = x[0::2] + x[1::2]
    if sx:
        x = x[:, 0::2] + x[:, 1::2]
    x *= np.float32(1 / (1 << (sx + sy)))
    return x


def from_rgb(rgb: np.ndarray, pix_fmt: str, model: ColorModel):
    """An av.VideoFrame in `pix_fmt` holding HxWx3 uint8 `rgb`, tagged with the model."""
    import av

    height, width = rgb.shape[:2]
    frame = av.VideoFrame(width, height, pix_fmt)
    for plane, data in zip(frame.planes, rgb_to_planes(rgb, pix_fmt, model), strict=False):
        rows = np.frombuffer(plane, dtype=data.dtype).reshape(plane.height, -1)
        rows[:, : data.shape[1]] = data
    frame.color_range = 2 if model.full_range else 1
    if model.colorspace != 2:
        frame.colorspace = model.colorspace
    return frame


def to_rgb8(array: np.ndarray, name: str = "frame") -> np.ndarray:
    """Any grey/RGB/RGBA, 8- or 16-bit image as HxWx3 uint8 (alpha dropped, grey replicated)."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4) or 0 in array.shape:
        raise SloMoError(f"{name}: unsupported image shape {array.shape}")
    if array.dtype == np.uint16:
        array = (array.astype(np.uint32) * 255 + 32767) // 65535
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise SloMoError(f"{name}: image contains NaN or Inf values")
        array = np.clip(array, 0.0, 1.0) * 255.0 + 0.5
    elif array.dtype != np.uint8:
        raise SloMoError(f"{name}: unsupported pixel type {array.dtype}")
    array = array.astype(np.uint8, copy=False)
    channels = array.shape[2]
    if channels in (1, 2):
        array = np.repeat(array[:, :, :1], 3, axis=2)
    elif channels == 4:
        array = array[:, :, :3]
    return np.ascontiguousarray(array)
