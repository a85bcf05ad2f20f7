"""Pictures for maps of other ranks (uint8 RGB): a volume's slices along each axis with the map over them, a
clip's frames as a strip, and a signal's trace with the map as a coloured band under it. Videos are written
by the app (``xcam.app.outputs.files.write_video``) from ``clip_frames``."""

import cv2
import numpy as np

from .errors import XcamError
from .ops import normalize_minmax, resize
from .viz import colorize, overlay

AXES = ("axial", "coronal", "sagittal")
"""Slicing planes of a (D, H, W) volume: along D, along H, along W."""

WHITE = 255


def evenly(count: int, total: int) -> np.ndarray:
    """``count`` indices spread evenly over ``total`` (the centres of ``count`` equal parts), ascending."""
    if count < 1:
        raise XcamError(f"the number of slices or frames must be >= 1, got {count}")
    count = min(count, total)
    return ((np.arange(count) + 0.5) * total / count).astype(np.int64)


def _fit(heat: np.ndarray, shape: tuple) -> np.ndarray:
    """A map resized (linear/bilinear/trilinear) to ``shape`` unless it already has it."""
    heat = np.asarray(heat, np.float32)
    return heat if heat.shape == tuple(shape) else resize(heat[None], tuple(shape))[0]


def _gray(volume: np.ndarray) -> np.ndarray:
    """A scan (D, H, W) or (C, D, H, W) (channels averaged) min-max scaled to [0, 1] over the whole volume."""
    v = np.asarray(volume, np.float32)
    if v.ndim == 4:
        v = v.mean(axis=0)
    if v.ndim != 3:
        raise XcamError(f"a volume must be (D, H, W) or (C, D, H, W), got shape {v.shape}")
    return normalize_minmax(v[None])[0]


def volume_slices(volume: np.ndarray, heat: np.ndarray, slices: int = 5, alpha: float = 0.5,
                  colormap: str = "jet") -> dict:
    """{"axial" | "coronal" | "sagittal": [(index, overlay uint8 RGB), ...]}: ``slices`` evenly spaced slices
    of the volume (D, H, W) along D, H and W, each with the same slice of the map (resized to the volume)."""
    v = _gray(volume)
    h = _fit(heat, v.shape)
    out = {}
    for axis, label in enumerate(AXES):
        picked = evenly(slices, v.shape[axis])
        out[label] = [(int(i), overlay(np.take(v, i, axis=axis), np.take(h, i, axis=axis), alpha, colormap))
                      for i in picked]
    return out


def _row(tiles: list, pad: int, height: int | None = None) -> np.ndarray:
    """Tiles side by side with ``pad`` white pixels between, each scaled to ``height`` (keeping its aspect)."""
    height = height or max(t.shape[0] for t in tiles)
    scaled = [cv2.resize(t, (max(1, round(t.shape[1] * height / t.shape[0])), height),
                         interpolation=cv2.INTER_NEAREST) if t.shape[0] != height else t for t in tiles]
    gap = np.full((height, pad, 3), WHITE, np.uint8)
    parts = [p for t in scaled for p in (t, gap)][:-1]
    return np.concatenate(parts, axis=1)


def _stack(rows: list, pad: int) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    padded = [np.concatenate([r, np.full((r.shape[0], width - r.shape[1], 3), WHITE, np.uint8)], axis=1)
              for r in rows]
    gap = np.full((pad, width, 3), WHITE, np.uint8)
    return np.concatenate([p for r in padded for p in (r, gap)][:-1], axis=0)


def volume_montage(volume: np.ndarray, heat: np.ndarray, slices: int = 5, alpha: float = 0.5,
                   colormap: str = "jet", height: int = 96, pad: int = 2) -> np.ndarray:
    """One picture of a volume and its map: a row per plane (axial, coronal, sagittal; ``volume_slices``),
    every tile ``height`` pixels high (nearest-neighbour, so voxels stay visible), white gaps of ``pad``."""
    tiles = volume_slices(volume, heat, slices, alpha, colormap)
    return _stack([_row([t for _, t in tiles[label]], pad, height) for label in AXES], pad)


def _rgb_frames(frames: np.ndarray) -> np.ndarray:
    """Frames (T, H, W), (T, H, W, 3) uint8 or float in [0, 1] as uint8 (T, H, W, 3)."""
    f = np.asarray(frames)
    if f.ndim == 3:
        f = np.repeat(f[..., None], 3, axis=3)
    if f.ndim != 4 or f.shape[3] != 3:
        raise XcamError(f"frames must be (T, H, W) or (T, H, W, 3), got shape {f.shape}")
    if f.dtype != np.uint8:
        f = (np.clip(f.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    return f


def clip_frames(frames: np.ndarray, heat: np.ndarray, alpha: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """Every frame of a clip (T, H, W[, 3]) with its map (T', h, w, resized trilinearly to the clip) over it,
    uint8 (T, H, W, 3): what the overlay video shows."""
    f = _rgb_frames(frames)
    h = _fit(heat, f.shape[:3])
    return np.stack([overlay(frame, m, alpha, colormap) for frame, m in zip(f, h)])


def clip_strip(frames: np.ndarray, heat: np.ndarray, count: int = 8, alpha: float = 0.5, colormap: str = "jet",
               pad: int = 2) -> np.ndarray:
    """``count`` evenly spaced frames of a clip with the map over them, side by side (uint8 RGB)."""
    shown = clip_frames(frames, heat, alpha, colormap)
    return _row([shown[i] for i in evenly(count, len(shown))], pad)


def signal_plot(signal: np.ndarray, heat: np.ndarray, width: int | None = None, height: int = 120,
                band: int = 16, colormap: str = "jet") -> np.ndarray:
    """A signal (L,) or (C, L) drawn as traces (one per channel, each scaled to its own min-max, dark lines on
    white) above a ``band`` pixels high strip whose colour at x is the map at that position (the map resized
    linearly to ``width``, default L). uint8 RGB (height + band, width, 3)."""
    s = np.asarray(signal, np.float32)
    s = s[None] if s.ndim == 1 else s
    if s.ndim != 2:
        raise XcamError(f"a signal must be (L,) or (C, L), got shape {np.shape(signal)}")
    width = width or s.shape[1]
    trace = np.full((height, width, 3), WHITE, np.uint8)
    x = np.linspace(0, width - 1, s.shape[1])
    scaled = normalize_minmax(s)
    colours = [(20, 20, 20), (31, 119, 180), (214, 39, 40), (44, 160, 44)]
    for c, row in enumerate(scaled):
        y = (1 - row) * (height - 1)
        points = np.stack([x, y], axis=1).round().astype(np.int32)[:, None, :]
        cv2.polylines(trace, [points], False, colours[c % len(colours)], 1, lineType=cv2.LINE_8)
    line = _fit(np.asarray(heat, np.float32).reshape(-1), (width,))
    strip = np.repeat(colorize(line[None, :], colormap), band, axis=0)
    return np.concatenate([trace, strip], axis=0)
