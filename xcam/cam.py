"""From a capture to maps: weight, combine over channels, ReLU, resize, normalize."""

import numpy as np

from .capture import Capture
from .errors import XcamError
from .methods import Inputs, get_method
from .ops import normalize_minmax, relu, resize_bilinear


def combine(weights: np.ndarray, activations: np.ndarray) -> np.ndarray:
    """\\sum_k w_k A_k over the channel axis: channel weights (..., C) or element-wise gates (..., C, h, w)."""
    if weights.ndim == activations.ndim - 2:
        return np.einsum("...c,...chw->...hw", weights, activations, optimize=False)
    return (weights * activations).sum(axis=-3)


def raw_maps(capture: Capture, method="gradcam") -> np.ndarray:
    """Un-normalized maps at the layer's resolution: (N, h, w), or (N, K, h, w) for several classes."""
    m = get_method(method)
    if m.needs_gradients and capture.gradients is None:
        raise XcamError(f"method {m.name!r} needs gradients but the capture has none")
    if m.needs_head and capture.head_weights is None:
        raise XcamError(f"method {m.name!r} needs the weights of a final linear layer after global average pooling")
    acts = capture.activations
    if capture.targets.ndim == 2:  # several classes per sample: (N, K) targets, (N, K, C, h, w) gradients
        acts = acts[:, None]
    inputs = Inputs(acts.astype(np.float32, copy=False),
                    None if capture.gradients is None else capture.gradients.astype(np.float32, copy=False),
                    capture.targets, capture.head_weights)
    maps = combine(m.weights(inputs), inputs.activations)
    if m.relu:
        maps = relu(maps)
    return maps.astype(np.float32, copy=False)


def finish(maps: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize raw maps (..., h, w) to ``size`` (bilinear) and min-max normalize each map to [0, 1]."""
    lead, (h, w) = maps.shape[:-2], maps.shape[-2:]
    flat = maps.reshape(-1, h, w)
    if size is not None and tuple(size) != (h, w):
        flat = resize_bilinear(flat, size)
    return normalize_minmax(flat).reshape(*lead, *flat.shape[-2:])


def compute_cam(capture: Capture, method="gradcam", size: tuple[int, int] | None = None) -> np.ndarray:
    """Maps in [0, 1], float32: (N, H, W), or (N, K, H, W) when several classes were captured per sample.

    ``size=None`` keeps the layer's own resolution; otherwise maps are upsampled to ``size=(H, W)``.
    Order: weights -> \\sum_k -> ReLU (if the paper has one) -> bilinear resize -> per-map min-max.
    """
    return finish(raw_maps(capture, method), size)
