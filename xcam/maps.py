"""Array helpers every method shares: the weighted channel sum, resize + normalize, LayerCAM fusion, and the
first principal component (Eigen-CAM). Every helper takes the spatial rank r (1, 2 or 3) of the maps: the last
r axes are spatial, the axis before them is the channel axis, anything before that is batch/class axes."""

import numpy as np

from .errors import XcamError
from .ops import check_size, normalize_minmax, resize


def spatial_axes(rank: int) -> tuple:
    """The last ``rank`` axes, as negative indices: what every formula reduces over."""
    return tuple(range(-rank, 0))


def combine(weights: np.ndarray, activations: np.ndarray, rank: int = 2) -> np.ndarray:
    """\\sum_k w_k A_k over the channel axis: channel weights (..., C) or element-wise gates (..., C, *s)."""
    if weights.ndim == activations.ndim - rank:
        lead, spatial = activations.shape[:-rank], activations.shape[-rank:]
        flat = activations.reshape(*lead, -1)                                  # (..., C, P)
        return np.einsum("...c,...cp->...p", weights, flat, optimize=False).reshape(
            *np.broadcast_shapes(weights.shape[:-1], lead[:-1]), *spatial)
    return (weights * activations).sum(axis=-(rank + 1))


def finish(maps: np.ndarray, size, rank: int | None = None) -> np.ndarray:
    """Resize raw maps (..., *s) to ``size`` (linear / bilinear / trilinear) and min-max normalize each map to
    [0, 1] over its whole signal, image or volume. ``rank`` defaults to ``len(size)``; ``size=None`` keeps s."""
    if rank is None:
        rank = len(size) if size is not None else 2
    if size is not None:
        size = check_size(size, rank)
    lead, spatial = maps.shape[:-rank], maps.shape[-rank:]
    flat = maps.reshape(-1, *spatial)
    if size is not None and size != tuple(spatial):
        flat = resize(flat, size)
    return normalize_minmax(flat).reshape(*lead, *flat.shape[1:])


def fuse(raw: list[np.ndarray], size, gamma: float = 2.0) -> np.ndarray:
    """LayerCAM's multi-layer fusion (Jiang et al. 2021, Eq. 9): each layer's raw map is scaled at its own
    resolution as tanh(gamma * L / max L) (shallow layers have small values), upsampled, and the layers are
    combined by element-wise maximum; the result is min-max normalized. An all-zero layer map stays zero.
    Any spatial rank: the rank is ``len(size)``."""
    if not raw:
        raise XcamError("fuse needs at least one layer's maps")
    rank = len(size)
    size = check_size(size, rank)
    scaled = []
    for maps in raw:
        lead, spatial = maps.shape[:-rank], maps.shape[-rank:]
        flat = maps.reshape(-1, *spatial)
        peak = flat.reshape(flat.shape[0], -1).max(axis=1).reshape(-1, *[1] * rank)
        ratio = np.divide(flat, peak, out=np.zeros_like(flat), where=peak > 0)
        up = resize(np.tanh(gamma * ratio), size)
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


def principal_map(values: np.ndarray, rank: int) -> np.ndarray:
    """Eigen-CAM's map for (..., C, *s) values: ``first_component`` over the flattened positions, signed to
    correlate with the channel sum; returns (..., *s)."""
    spatial = values.shape[-rank:]
    flat = values.reshape(*values.shape[:-rank], -1)                     # (..., C, P)
    return first_component(flat, flat.sum(axis=-2)).reshape(*values.shape[:-rank - 1], *spatial)


def kernel_principal_map(values: np.ndarray, rank: int, kernel: str = "sigmoid", gamma: float | None = None,
                         coef0: float = 1.0) -> np.ndarray:
    """KPCA-CAM's map for (..., C, *s) values: positions (rows) centred over positions, the kernel matrix
    K_pq = k(x_p, x_q) (sigmoid: tanh(gamma <x_p, x_q> + coef0); rbf: exp(-gamma |x_p - x_q|^2); linear;
    gamma=None is 1/C), double-centred, and each position's coordinate on its leading eigenvector,
    sqrt(lambda_1) v_1(p); signed to correlate positively with the channel sum. Returns (..., *s)."""
    spatial = values.shape[-rank:]
    c = values.shape[-rank - 1]
    flat = values.reshape(-1, c, int(np.prod(spatial))).transpose(0, 2, 1).astype(np.float64)   # (B, P, C)
    x = flat - flat.mean(axis=1, keepdims=True)
    g = 1.0 / c if gamma is None else float(gamma)
    dot = np.einsum("bpc,bqc->bpq", x, x)
    if kernel == "sigmoid":
        k = np.tanh(g * dot + coef0)
    elif kernel == "rbf":
        sq = np.einsum("bpp->bp", dot)
        k = np.exp(-g * np.maximum(sq[:, :, None] + sq[:, None, :] - 2 * dot, 0))
    elif kernel == "linear":
        k = dot
    else:
        raise XcamError(f"kernel {kernel!r} is not valid; choose one of: sigmoid, rbf, linear")
    k = k - k.mean(axis=1, keepdims=True) - k.mean(axis=2, keepdims=True) + k.mean(axis=(1, 2), keepdims=True)
    lam, vec = np.linalg.eigh(k)
    proj = vec[:, :, -1] * np.sqrt(np.maximum(lam[:, -1], 0))[:, None]                          # (B, P)
    ref = flat.sum(axis=2)
    ref = ref - ref.mean(axis=1, keepdims=True)
    sign = np.where((proj * ref).sum(axis=1) < 0, -1.0, 1.0)
    out = (proj * sign[:, None]).astype(np.float32)
    return out.reshape(*values.shape[:-rank - 1], *spatial)


def extreme_signed(maps: np.ndarray, rank: int) -> np.ndarray:
    """Each map (..., *s) negated where |min| > |max| (Seg-Eigen-CAM's sign rule, Chung & Ying 2025 Eq. 13)."""
    flat = maps.reshape(-1, int(np.prod(maps.shape[-rank:])))
    flip = np.abs(flat.min(axis=1)) > np.abs(flat.max(axis=1))
    return np.where(flip[:, None], -flat, flat).reshape(maps.shape)
