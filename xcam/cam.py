"""From a capture to maps: weight, combine over channels, ReLU, resize, normalize; and multi-layer fusion."""

import numpy as np

from .capture import Capture
from .errors import XcamError
from .methods import Inputs, get_method, resolve_options
from .ops import normalize_minmax, relu, resize_bilinear


def combine(weights: np.ndarray, activations: np.ndarray) -> np.ndarray:
    """\\sum_k w_k A_k over the channel axis: channel weights (..., C) or element-wise gates (..., C, h, w)."""
    if weights.ndim == activations.ndim - 2:
        return np.einsum("...c,...chw->...hw", weights, activations, optimize=False)
    return (weights * activations).sum(axis=-3)


def method_inputs(capture: Capture, method, *, inputs=None, probe=None, options=None) -> Inputs:
    """What the method's formula sees; checks that the capture holds what the method needs."""
    m = get_method(method)
    if m.needs_gradients and capture.gradients is None:
        raise XcamError(f"method {m.name!r} needs gradients but the capture has none")
    if m.needs_head and capture.head_weights is None:
        raise XcamError(f"method {m.name!r} needs the weights of a final linear layer after global average pooling")
    if m.needs_probe and (probe is None or inputs is None):
        raise XcamError(f"method {m.name!r} runs the model again: call it through xcam_torch.cam or xcam_tf.cam")
    acts = capture.activations.astype(np.float32, copy=False)
    if capture.targets.ndim == 2:  # several classes per sample: (N, K) targets, (N, K, C, h, w) gradients
        acts = acts[:, None]
    grads = None if capture.gradients is None else capture.gradients.astype(np.float32, copy=False)
    return Inputs(acts, grads, capture.targets, capture.head_weights, capture.scores, inputs, probe,
                  resolve_options(m, options))


def raw_maps(capture: Capture, method="gradcam", *, inputs=None, probe=None, options=None) -> np.ndarray:
    """Un-normalized maps: (N, h, w) at the layer's resolution (pixel methods: the input's), or (N, K, ...)."""
    m = get_method(method)
    x = method_inputs(capture, m, inputs=inputs, probe=probe, options=options)
    out = m.fn(x)
    maps = combine(out, x.activations) if m.kind == "weights" else out
    if capture.targets.ndim == 2 and maps.shape[1] == 1 and capture.targets.shape[1] > 1:
        maps = np.broadcast_to(maps, (maps.shape[0], capture.targets.shape[1], *maps.shape[2:]))
    if m.relu:
        maps = relu(maps)
    return np.ascontiguousarray(maps, dtype=np.float32)


def finish(maps: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize raw maps (..., h, w) to ``size`` (bilinear) and min-max normalize each map to [0, 1]."""
    lead, (h, w) = maps.shape[:-2], maps.shape[-2:]
    flat = maps.reshape(-1, h, w)
    if size is not None and tuple(size) != (h, w):
        flat = resize_bilinear(flat, size)
    return normalize_minmax(flat).reshape(*lead, *flat.shape[-2:])


def compute_cam(capture: Capture, method="gradcam", size: tuple[int, int] | None = None, *, inputs=None,
                probe=None, options=None) -> np.ndarray:
    """Maps in [0, 1], float32: (N, H, W), or (N, K, H, W) when several classes were captured per sample.

    ``size=None`` keeps the layer's own resolution; otherwise maps are upsampled to ``size=(H, W)``.
    Order: weights -> \\sum_k -> ReLU (if the paper has one) -> bilinear resize -> per-map min-max.
    """
    return finish(raw_maps(capture, method, inputs=inputs, probe=probe, options=options), size)


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


def layer_maps(captures: list, method, size: tuple[int, int], *, inputs=None, probes=None, options=None):
    """Maps in [0, 1] for one layer's capture, or several layers' captures fused (``fuse``); ``probes`` has one
    adapter probe per capture for methods that run the model again."""
    probes = probes or [None] * len(captures)
    raws = [raw_maps(c, method, inputs=inputs, probe=p, options=options) for c, p in zip(captures, probes)]
    return finish(raws[0], size) if len(raws) == 1 else fuse(raws, size)
