"""Pictures: heat-map overlays, colormaps and feature-map grids (uint8 RGB)."""

import cv2
import numpy as np

from .errors import XcamError
from .ops import normalize_minmax

_BAND_PIXELS = 1 << 20  # overlay works on bands of about this many pixels
_WHITE = np.full(4, 255, np.uint8).view(np.uint32)[0]  # an RGBA white pixel as one uint32
COLORMAPS = {
    "jet": cv2.COLORMAP_JET, "turbo": cv2.COLORMAP_TURBO, "viridis": cv2.COLORMAP_VIRIDIS,
    "inferno": cv2.COLORMAP_INFERNO, "magma": cv2.COLORMAP_MAGMA, "hot": cv2.COLORMAP_HOT,
    "plasma": cv2.COLORMAP_PLASMA, "gray": None,
}


def rgb_channels(image: np.ndarray) -> np.ndarray:
    """An (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image as its (H, W, 3) RGB channels, dtype kept."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise XcamError(f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {img.shape}")
    return img[:, :, :3]


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """An (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, uint8 or float in [0, 1], as uint8 RGB."""
    img = rgb_channels(image)
    if img.dtype != np.uint8:
        img = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0) * 255.0 + 0.5
    return np.ascontiguousarray(img.astype(np.uint8))


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """A (H, W) map in [0, 1] as a uint8 RGB picture through a named colormap."""
    if colormap not in COLORMAPS:
        raise XcamError(f"unknown colormap {colormap!r}; valid: {', '.join(COLORMAPS)}")
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise XcamError(f"heatmap must be (H, W), got shape {heat.shape}")
    if not np.isfinite(heat).all():
        raise XcamError("heatmap holds NaN or infinite values")
    levels = np.clip(heat * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if COLORMAPS[colormap] is None:
        return np.repeat(levels[:, :, None], 3, axis=2)
    return cv2.cvtColor(cv2.applyColorMap(levels, COLORMAPS[colormap]), cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """out = (1 - alpha) * image + alpha * colormap(heatmap), uint8 RGB; the map is resized to the image."""
    if not 0.0 <= alpha <= 1.0:
        raise XcamError(f"alpha must be in [0, 1], got {alpha}")
    rgb = to_uint8_rgb(image)
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise XcamError(f"heatmap must be (H, W), got shape {heat.shape}")
    if heat.shape != rgb.shape[:2]:
        heat = cv2.resize(heat, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    out = np.empty_like(rgb)
    rows = max(1, _BAND_PIXELS // rgb.shape[1])  # bands of rows: float copies stay small on huge images
    steps = alpha * 256.0
    dyadic = steps == int(steps)  # alpha = k / 256 (0.5, 0.25, ...): every product and sum exact in float32
    for y in range(0, rgb.shape[0], rows):
        colored = colorize(heat[y:y + rows], colormap)
        if dyadic:
            # OpenCV rounds to nearest (ties to even); the value's fraction is a multiple of 1/256, so adding
            # half a step (1/512) moves only ties, up: the same bytes as the float32 formula, 10x faster
            cv2.addWeighted(rgb[y:y + rows], 1.0 - alpha, colored, alpha, 1.0 / 512, dst=out[y:y + rows])
            continue
        mixed = rgb[y:y + rows].astype(np.float32)
        mixed *= 1.0 - alpha
        mixed += alpha * colored.astype(np.float32)
        mixed += 0.5  # in [0.5, 255.5]: truncation rounds half up, no clipping needed
        out[y:y + rows] = mixed.astype(np.uint8)
    return out


def feature_grid(activations: np.ndarray, per_row: int = 16, tile: int | None = None, pad: int = 1,
                 colormap: str = "gray") -> np.ndarray:
    """Every channel of one layer for one image, (C, h, w), as a uint8 RGB grid of ``per_row`` tiles a row.

    Each channel is min-max scaled on its own (a constant channel shows black). ``tile`` is the side of each
    tile in pixels (default: the map's size, at least 32, nearest-neighbour so cells stay visible).
    """
    if COLORMAPS.get(colormap, 0) is None:   # gray: one channel, repeated
        return cv2.cvtColor(feature_grid_gray(activations, per_row, tile, pad), cv2.COLOR_GRAY2RGB)
    scaled, c, h, w = _scaled(activations, per_row)
    # the colormap is pointwise, so the (c, h, w) cells are coloured first, each RGB pixel packed in 4 bytes
    # (one uint32), then laid out as tiles (``_tiled``)
    rgba = np.full((c, h, w, 4), 255, dtype=np.uint8)
    rgba[..., :3] = colorize(scaled.reshape(c * h, w), colormap).reshape(c, h, w, 3)
    packed = _tiled(rgba.view(np.uint32)[..., 0], per_row, tile, pad, _WHITE)
    return cv2.cvtColor(packed.view(np.uint8).reshape(*packed.shape, 4), cv2.COLOR_RGBA2RGB)


def feature_grid_gray(activations: np.ndarray, per_row: int = 16, tile: int | None = None,
                      pad: int = 1) -> np.ndarray:
    """``feature_grid`` with the gray colormap as one uint8 channel (H, W): the same picture (each RGB pixel
    of ``feature_grid`` repeats this value), a third of the bytes to encode."""
    scaled, c, h, w = _scaled(activations, per_row)
    levels = colorize(scaled.reshape(c * h, w), "gray")[..., 0].reshape(c, h, w)
    return _tiled(levels, per_row, tile, pad, 255)


def _scaled(activations, per_row: int):
    acts = np.asarray(activations, dtype=np.float32)
    if acts.ndim != 3:
        raise XcamError(f"feature_grid takes one image's activations (C, h, w), got shape {acts.shape}")
    if per_row < 1:
        raise XcamError(f"per_row must be >= 1, got {per_row}")
    return normalize_minmax(acts), *acts.shape


def _tiled(cells: np.ndarray, per_row: int, tile: int | None, pad: int, white) -> np.ndarray:
    """(c, h, w) cell values (any dtype) as the grid of nearest-neighbour tiles, ``pad`` white between.
    OpenCV's nearest-neighbour choice of source pixel (read off a resized index image) is separable, a source
    row per tile row and a source column per tile column: the cells are laid out as one small mosaic with a
    white row and column after it, and the grid is two gathers of it, its columns then its rows (pads and
    missing last-row tiles read the white ones). 1,280 cells of 7x7 into 32x32 tiles: 2.5 -> 0.8 ms."""
    c, h, w = cells.shape
    side = tile or max(32, h)
    tw = max(1, round(side * w / max(h, w)))
    th = max(1, round(side * h / max(h, w)))
    cols = min(per_row, c)
    rows = -(-c // cols)
    where = cv2.resize(np.arange(h * w, dtype=np.float32).reshape(h, w), (tw, th),
                       interpolation=cv2.INTER_NEAREST).astype(np.int64)
    src_rows, src_cols = where[:, 0] // w, where[0] % w
    mosaic = np.full((rows * cols, h, w), white, dtype=cells.dtype)  # a missing last-row tile stays white
    mosaic[:c] = cells
    mosaic = mosaic.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows * h, cols * w)
    mosaic = np.pad(mosaic, ((0, 1), (0, 1)), constant_values=white)

    def picks(count: int, size: int, cell: int, src: np.ndarray) -> np.ndarray:
        """Mosaic index of each grid row (or column): pad, then per tile its ``size`` sources and a pad."""
        idx = np.full(count * (size + pad) + pad, count * cell, np.int64)            # the white row / column
        idx[pad:].reshape(count, size + pad)[:, :size] = np.arange(count)[:, None] * cell + src[None, :]
        return idx

    return mosaic[:, picks(cols, tw, w, src_cols)][picks(rows, th, h, src_rows)]
