"""Baseline maps every evaluation table shows beside the methods: random, centre Gaussian, Sobel edges."""

import cv2
import numpy as np

from xcam.errors import XcamError
from xcam.metrics._common import check_inputs, per_plane
from xcam.ops import normalize_minmax


def _shape(shape) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in shape)
    except (TypeError, ValueError):
        raise XcamError(f"shape must be (N, H, W) or (H, W), got {shape!r}") from None
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or min(shape) < 1:
        raise XcamError(f"shape must be (N, H, W) or (H, W) with positive sizes, got {shape}")
    return shape


def random_map(shape, seed: int = 0) -> np.ndarray:
    """Uniform noise in [0, 1), float32 (N, H, W) (a (H, W) shape gives N = 1), from numpy's Generator(``seed``)."""
    return np.random.default_rng(seed).random(_shape(shape), dtype=np.float32)


def centre_gaussian(shape, sigma: float = 0.25) -> np.ndarray:
    """A Gaussian centred on the image, exp(-(dy^2 / (2 (sigma H)^2) + dx^2 / (2 (sigma W)^2))) with the centre at
    ((H - 1) / 2, (W - 1) / 2), min-max normalized to [0, 1]; float32 (N, H, W). ``sigma``: a fraction of the size
    (default 0.25). TorchRay's "center" baseline is the centre point; this is its smooth map version."""
    n, h, w = _shape(shape)
    if isinstance(sigma, bool) or not isinstance(sigma, int | float) or not sigma > 0:
        raise XcamError(f"sigma must be a positive fraction of the image size, got {sigma!r}")
    dy = (np.arange(h) - (h - 1) / 2) / (sigma * h)
    dx = (np.arange(w) - (w - 1) / 2) / (sigma * w)
    g = np.exp(-0.5 * (dy[:, None] ** 2 + dx[None, :] ** 2))
    return np.repeat(normalize_minmax(g[None]), n, axis=0)


def sobel_map(inputs) -> np.ndarray:
    """Sobel edge map of each input: sqrt(Gx^2 + Gy^2) of the channel-mean image (cv2.Sobel, 3x3, border
    reflect-101, float64), min-max normalized to [0, 1] per image; inputs (N, C, H, W) -> float32 (N, H, W)."""
    x = check_inputs(inputs).mean(axis=1, dtype=np.float64)
    gx = per_plane(lambda p: cv2.Sobel(p, cv2.CV_64F, 1, 0, ksize=3), x)
    gy = per_plane(lambda p: cv2.Sobel(p, cv2.CV_64F, 0, 1, ksize=3), x)
    return normalize_minmax(np.sqrt(gx * gx + gy * gy))
