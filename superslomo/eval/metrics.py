"""Image quality metrics on HxWx3 uint8 (or float in [0,1]) frames, numpy only."""

from __future__ import annotations

import numpy as np


def _as_unit_float(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    return image.astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels (inf for identical inputs)."""
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ {a.shape} vs {b.shape}")
    mse = float(np.mean((_as_unit_float(a) - _as_unit_float(b)) ** 2))
    return float("inf") if mse == 0.0 else 10.0 * np.log10(peak * peak / mse)


def interpolation_error(a: np.ndarray, b: np.ndarray) -> float:
    """Middlebury's IE: root-mean-square difference in 0..255 grey levels."""
    diff = (_as_unit_float(a) - _as_unit_float(b)) * 255.0
    return float(np.sqrt(np.mean(diff * diff)))


def _gaussian_kernel(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2.0
    k = np.exp(-(x * x) / (2 * sigma * sigma))
    return k / k.sum()


def _filter_valid(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering along the first two axes."""
    size = kernel.size
    h, w = image.shape[:2]
    rows = sum(kernel[i] * image[i : h - size + 1 + i] for i in range(size))
    return sum(kernel[i] * rows[:, i : w - size + 1 + i] for i in range(size))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004: 11x11 Gaussian, sigma 1.5), mean over channels."""
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ {a.shape} vs {b.shape}")
    x, y = _as_unit_float(a), _as_unit_float(b)
    if x.ndim == 2:
        x, y = x[:, :, None], y[:, :, None]
    if min(x.shape[:2]) < 11:
        raise ValueError("ssim needs images of at least 11x11 pixels")
    c1, c2 = 0.01**2, 0.03**2
    k = _gaussian_kernel()
    mu_x, mu_y = _filter_valid(x, k), _filter_valid(y, k)
    sxx = _filter_valid(x * x, k) - mu_x * mu_x
    syy = _filter_valid(y * y, k) - mu_y * mu_y
    sxy = _filter_valid(x * y, k) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2)
    return float(np.mean(num / den))


def blend(frame0: np.ndarray, frame1: np.ndarray, t: float = 0.5) -> np.ndarray:
    """The linear-blend baseline every interpolator must beat."""
    mixed = (1.0 - t) * frame0.astype(np.float64) + t * frame1.astype(np.float64)
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
