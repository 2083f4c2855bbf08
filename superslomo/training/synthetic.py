"""Synthetic motion with exact ground truth, in the manner of FlyingChairs, cheap on a CPU.

A sample is a background photo and a few foreground layers (photos cut out by random smooth blob
masks) that each move by their own affine motion between t = 0 and t = 1. Each layer's forward map
(texture coordinates -> image coordinates) is blended linearly in t, so every texture point moves
on a straight line at constant speed: the motion model Super SloMo's flow algebra assumes, and
the frame at any t is rendered exactly, not interpolated. The flows come from the same maps, so
they are exact both ways, including where a layer is occluded in the other frame (the occluded
point's true motion, as FlyingChairs gives it), and they use the project's exact warp convention:
pixel i sits at coordinate i, so `backwarp_exact(frame1, flow01)` reproduces frame0 wherever the
point stays visible.

Photo sources are frames of the licensed training footage (the FramePool's clips) and any
extra images a run names; nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Motion of the largest layer displacement between frame 0 and frame 1, as a share of the crop's
# short side: the evaluation sets' large motions (DAVIS) reach a quarter of the frame.
MAX_MOTION = 0.25
# Displacements are drawn as MAX_MOTION * u**MOTION_SKEW: most samples move little, as real
# footage does, but every size up to the maximum is seen often.
MOTION_SKEW = 1.5
MAX_FOREGROUND_LAYERS = 3
# Soft mask edge (texture pixels): anti-aliased outlines, as a camera records them. The flows take
# the layer whose alpha passes one half.
EDGE_SOFTNESS = 0.7


@dataclass
class SyntheticBatch:
    """Frames [N,3,H,W] in [0,1], t [N], and the exact flows [N,2,H,W] in pixels (channel 0 = x)."""

    frame0: torch.Tensor
    frame_t: torch.Tensor
    frame1: torch.Tensor
    t: torch.Tensor
    flow01: torch.Tensor
    flow10: torch.Tensor
    flow_t0: torch.Tensor
    flow_t1: torch.Tensor


@dataclass
class _Layer:
    texture: torch.Tensor  # [3,Ht,Wt] float in [0,1]
    forward0: np.ndarray  # 3x3: texture coordinates -> image coordinates at t = 0
    forward1: np.ndarray  # the same at t = 1
    blob: tuple | None  # (centre x, centre y, radius, harmonics) in texture coordinates; None: opaque


def _rotation_scale(angle: float, scale_x: float, scale_y: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]]) @ np.diag([scale_x, scale_y])


def _affine(linear: np.ndarray, translation: np.ndarray) -> np.ndarray:
    out = np.eye(3)
    out[:2, :2] = linear
    out[:2, 2] = translation
    return out


class SyntheticMotion:
    """Draws SyntheticBatch samples of `crop` (height, width) from `photos` ([H,W,3] uint8)."""

    def __init__(
        self,
        photos: Sequence[np.ndarray],
        crop: tuple[int, int],
        seed: int = 0,
        max_motion: float = MAX_MOTION,
        max_layers: int = MAX_FOREGROUND_LAYERS,
    ):
        usable = [p for p in photos if min(p.shape[:2]) >= 32]
        if not usable:
            raise ValueError("synthetic motion needs photos of at least 32x32 pixels")
        self.photos = usable
        self.crop_h, self.crop_w = crop
        self.rng = np.random.default_rng(seed)
        self.max_motion = max_motion
        self.max_layers = max_layers

    def _texture(self) -> torch.Tensor:
        photo = self.photos[int(self.rng.integers(len(self.photos)))]
        if self.rng.random() < 0.5:
            photo = photo[:, ::-1]
        return torch.from_numpy(np.array(photo)).permute(2, 0, 1).float().div_(255.0)

    def _displacement(self, reach: float) -> np.ndarray:
        magnitude = reach * self.rng.random() ** MOTION_SKEW
        angle = self.rng.uniform(0, 2 * np.pi)
        return magnitude * np.array([np.cos(angle), np.sin(angle)])

    def _layer(self, background: bool) -> _Layer:
        texture = self._texture()
        tex_h, tex_w = texture.shape[1:]
        short = min(self.crop_h, self.crop_w)
        reach = self.max_motion * short
        if background:
            # The background fills the frame (reflection padding extends the photo) and moves as a
            # camera does: mostly translation, a little rotation and zoom.
            linear0 = _rotation_scale(self.rng.uniform(-0.2, 0.2), *self.rng.uniform(0.8, 1.25, 2))
            place = np.array([self.crop_w / 2, self.crop_h / 2])
            source = np.array([self.rng.uniform(0, tex_w), self.rng.uniform(0, tex_h)])
            turn, zoom = self.rng.uniform(-0.08, 0.08), self.rng.uniform(0.93, 1.07)
            blob = None
        else:
            linear0 = _rotation_scale(self.rng.uniform(-np.pi, np.pi), *self.rng.uniform(0.7, 1.3, 2))
            place = np.array([self.rng.uniform(0, self.crop_w), self.rng.uniform(0, self.crop_h)])
            source = np.array([self.rng.uniform(0, tex_w), self.rng.uniform(0, tex_h)])
            turn, zoom = self.rng.uniform(-0.35, 0.35), self.rng.uniform(0.85, 1.15)
            radius = short * self.rng.uniform(0.1, 0.3)
            harmonics = [
                (k, self.rng.uniform(0, 0.25 / k), self.rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5)
            ]
            blob = (source[0], source[1], radius, harmonics)
        # forward0 maps the texture point `source` to the image point `place`.
        forward0 = _affine(linear0, place - linear0 @ source)
        # forward1 = D @ forward0: D turns and zooms about the layer's image position, then moves it.
        step = _affine(_rotation_scale(turn, zoom, zoom), np.zeros(2))
        to_place, from_place = _affine(np.eye(2), place), _affine(np.eye(2), -place)
        move = _affine(np.eye(2), self._displacement(reach))
        forward1 = move @ to_place @ step @ from_place @ forward0
        return _Layer(texture, forward0, forward1, blob)

    def _pixel_grid(self) -> torch.Tensor:
        rows, cols = torch.meshgrid(
            torch.arange(self.crop_h, dtype=torch.float64),
            torch.arange(self.crop_w, dtype=torch.float64),
            indexing="ij",
        )
        return torch.stack((cols, rows, torch.ones_like(cols)), dim=-1)  # [H,W,3] homogeneous

    @staticmethod
    def _apply(matrix: np.ndarray, points: torch.Tensor) -> torch.Tensor:
        """Homogeneous [H,W,3] points through a 3x3 affine matrix -> [H,W,2]."""
        return (points @ torch.from_numpy(matrix).T)[..., :2]

    @staticmethod
    def _sample(texture: torch.Tensor, coords: torch.Tensor, background: bool) -> torch.Tensor:
        """The texture at texture coordinates [H,W,2] (pixel i at i), bilinear."""
        tex_h, tex_w = texture.shape[1:]
        grid = torch.stack(
            (2 * coords[..., 0] / max(tex_w - 1, 1) - 1, 2 * coords[..., 1] / max(tex_h - 1, 1) - 1), dim=-1
        ).float()
        padding = "reflection" if background else "border"
        return F.grid_sample(
            texture[None], grid[None], mode="bilinear", padding_mode=padding, align_corners=True
        )[0]

    @staticmethod
    def _alpha(blob: tuple | None, coords: torch.Tensor) -> torch.Tensor:
        if blob is None:
            return torch.ones(coords.shape[:2], dtype=torch.float32)
        cx, cy, radius, harmonics = blob
        dx, dy = coords[..., 0] - cx, coords[..., 1] - cy
        angle = torch.atan2(dy, dx)
        edge = radius * (1 + sum(a * torch.sin(k * angle + phase) for k, a, phase in harmonics))
        return torch.sigmoid((edge - torch.hypot(dx, dy)) / EDGE_SOFTNESS).float()

    def _render(self, layers: list[_Layer], t: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The frame at t [3,H,W] and, per pixel, the exact flow to frame 0 and to frame 1 [2,H,W]."""
        points = self._pixel_grid()
        frame = torch.zeros(3, self.crop_h, self.crop_w)
        to0 = torch.zeros(2, self.crop_h, self.crop_w, dtype=torch.float64)
        to1 = torch.zeros_like(to0)
        for index, layer in enumerate(layers):
            forward_t = (1 - t) * layer.forward0 + t * layer.forward1
            coords = self._apply(np.linalg.inv(forward_t), points)  # texture point seen at each pixel
            homogeneous = torch.cat((coords, torch.ones_like(coords[..., :1])), dim=-1)
            alpha = self._alpha(layer.blob, coords)
            colour = self._sample(layer.texture, coords, background=index == 0)
            frame = frame * (1 - alpha) + colour * alpha
            visible = alpha > 0.5
            for target, forward in ((to0, layer.forward0), (to1, layer.forward1)):
                displacement = (self._apply(forward, homogeneous) - points[..., :2]).permute(2, 0, 1)
                target.copy_(torch.where(visible, displacement, target))
        return frame.clamp(0, 1), to0.float(), to1.float()

    def sample(self, t: float | None = None) -> tuple[torch.Tensor, ...]:
        layers = [self._layer(background=True)]
        layers += [
            self._layer(background=False) for _ in range(int(self.rng.integers(0, self.max_layers + 1)))
        ]
        t = float(self.rng.uniform(0.05, 0.95)) if t is None else t
        frame0, _, flow01 = self._render(layers, 0.0)
        frame1, flow10, _ = self._render(layers, 1.0)
        frame_t, flow_t0, flow_t1 = self._render(layers, t)
        # One exposure change per sample, the same in all three frames: variety without breaking
        # brightness constancy, which the synthesis network relies on.
        gain = float(self.rng.uniform(0.8, 1.2))
        frames = [(f * gain).clamp(0, 1) for f in (frame0, frame_t, frame1)]
        return (*frames, torch.tensor(t), flow01, flow10, flow_t0, flow_t1)

    def batch(self, size: int, t: float | None = None) -> SyntheticBatch:
        """`size` samples, each at its own random t unless `t` is given."""
        items = [self.sample(t) for _ in range(size)]
        stacked = [torch.stack([item[i] for item in items]) for i in range(8)]
        return SyntheticBatch(
            frame0=stacked[0],
            frame_t=stacked[1],
            frame1=stacked[2],
            t=stacked[3].float(),
            flow01=stacked[4],
            flow10=stacked[5],
            flow_t0=stacked[6],
            flow_t1=stacked[7],
        )
