"""Array helpers every method shares: the weighted channel sum, resize + normalize, LayerCAM fusion, and the
first principal component (Eigen-CAM)."""

import numpy as np

from .errors import XcamError
from .ops import normalize_minmax, resize_bilinear


def combine(weights: np.ndarray, activations: np.ndarray) -> np.ndarray:
    """\\sum_k w_k A_k over the channel axis: channel weights (..., C) or element-wise gates (..., C, h, w)."""
    if weights.ndim == activations.ndim - 2:
        return np.einsum("...c,...chw->...hw", weights, activations, optimize=False)
    return (weights * activations).sum(axis=-3)


def finish(maps: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize raw maps (..., h, w) to ``size`` (bilinear) and min-max normalize each map to [0, 1]."""
    lead, (h, w) = maps.shape[:-2], maps.shape[-2:]
    flat = maps.reshape(-1, h, w)
    if size is not None and tuple(size) != (h, w):
        flat = resize_bilinear(flat, size)
    return normalize_minmax(flat).reshape(*lead, *flat.shape[-2:])


def fuse(raw: list[np.ndarray], size: tuple[int, int], gamma: float = 2.0) -> np.ndarray:
    """LayerCAM's multi-layer fusion (Jiang et al. 2021, Eq. 9): each layer's raw map is scaled at its own
    resolution as tanh(gamma * L / max L) (shallow layers have small values), upsampled, and the layers are
    combined by element-wise maximum; the result is min-max normalized. An all-zero layer map stays zero."""
    if not raw:
        raise XcamError("fuse needs at least one layer's maps")
    scaled = []
    for maps in raw:
        lead, (h, w) = maps.shape[:-2], maps.shape[-2:]
        flat = maps.reshape(-1, h, w)
        peak = flat.reshape(flat.shape[0], -1).max(axis=1)[:, None, None]
        ratio = np.divide(flat, peak, out=np.zeros_like(flat), where=peak > 0)
        up = resize_bilinear(np.tanh(gamma * ratio), size)
        scaled.append(up.reshape(*lead, *size))
    return normalize_minmax(np.maximum.reduce(scaled).reshape(-1, *size)).reshape(scaled[0].shape)


def first_component(matrix: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Projection of each (C, hw) matrix's centred columns onto its first principal direction, signed so
    that it correlates positively with ``reference`` (…, hw); returns (…, hw)."""
    lead, (c, hw) = matrix.shape[:-2], matrix.shape[-2:]
    flat = matrix.reshape(-1, c, hw).transpose(0, 2, 1)            # (B, hw, C): rows are positions
    centred = flat - flat.mean(axis=1, keepdims=True)
    _, _, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    proj = np.einsum("bpc,bc->bp", centred, vt[:, 0])               # (B, hw)
    ref = np.broadcast_to(reference, (*lead, hw)).reshape(-1, hw)
    ref = ref - ref.mean(axis=1, keepdims=True)
    sign = np.where((proj * ref).sum(axis=1) < 0, -1.0, 1.0)
    return (proj * sign[:, None]).reshape(*lead, hw).astype(np.float32)
