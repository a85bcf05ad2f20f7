"""Filter visualization: a grid of a conv layer's kernels, and the input that excites a filter most, found by
gradient ascent (Erhan et al., Visualizing Higher-Layer Features of a Deep Network, 2009; as FlashTorch and
the Keras filter-visualization example do). The adapters only return kernels and gradients."""

import cv2
import numpy as np

from .contract import Adapter
from .errors import XcamError
from .ops import normalize_minmax


def kernel_grid(weights: np.ndarray, max_filters: int = 64, max_inputs: int = 16, scale: int = 8,
                pad: int = 1) -> np.ndarray:
    """Kernels (out, in, kh, kw) as a uint8 RGB grid.

    in == 3 (a first layer on RGB input): one colour patch per filter, 8 a row, each filter min-max scaled
    over its three channels together. Otherwise: a row per filter (first ``max_filters``) and a grey tile per
    input channel (first ``max_inputs``), each tile scaled on its own. Tiles are enlarged ``scale`` times
    (nearest neighbour) so 3x3 kernels stay readable.
    """
    w = np.asarray(weights, dtype=np.float32)
    if w.ndim != 4:
        raise XcamError(f"kernels must be (out, in, kh, kw), got shape {w.shape}")
    w = w[:max_filters]
    out, cin, kh, kw = w.shape
    th, tw = kh * scale, kw * scale
    if cin == 3:
        cols = min(8, out)
        rows = -(-out // cols)
        grid = np.full((rows * (th + pad) + pad, cols * (tw + pad) + pad, 3), 255, np.uint8)
        patches = normalize_minmax(w).transpose(0, 2, 3, 1)              # (out, kh, kw, 3) in [0, 1]
        for k in range(out):
            r, c = divmod(k, cols)
            tile = cv2.resize((patches[k] * 255 + 0.5).astype(np.uint8), (tw, th), interpolation=cv2.INTER_NEAREST)
            grid[pad + r * (th + pad):pad + r * (th + pad) + th, pad + c * (tw + pad):pad + c * (tw + pad) + tw] = tile
        return grid
    w = w[:, :max_inputs]
    cin = w.shape[1]
    tiles = normalize_minmax(w.reshape(out * cin, kh, kw)).reshape(out, cin, kh, kw)
    grid = np.full((out * (th + pad) + pad, cin * (tw + pad) + pad, 3), 255, np.uint8)
    for k in range(out):
        for j in range(cin):
            tile = cv2.resize((tiles[k, j] * 255 + 0.5).astype(np.uint8), (tw, th), interpolation=cv2.INTER_NEAREST)
            grid[pad + k * (th + pad):pad + k * (th + pad) + th, pad + j * (tw + pad):pad + j * (tw + pad) + tw] = \
                tile[:, :, None]
    return grid


def ascend(gradient, shape: tuple, steps: int = 30, step_size: float = 1.0, seed: int = 0) -> np.ndarray:
    """Gradient ascent on the input: x_0 ~ U(-0.1, 0.1) (seeded), x_{t+1} = x_t + step_size * g / (std(g) + 1e-8)
    with g = d mean(A_k) / dx from ``gradient(x)`` (per image). Returns x_T, (N, C, H, W) float32."""
    if steps < 1 or step_size <= 0:
        raise XcamError(f"steps must be >= 1 and step_size > 0, got {steps} and {step_size}")
    x = np.random.default_rng(seed).uniform(-0.1, 0.1, size=shape).astype(np.float32)
    for _ in range(steps):
        g = np.asarray(gradient(x), dtype=np.float32)
        spread = g.reshape(len(g), -1).std(axis=1).reshape(-1, 1, 1, 1)
        x = x + step_size * g / (spread + 1e-8)
    return x


def deprocess(x: np.ndarray) -> np.ndarray:
    """An ascended input (C, H, W) as a uint8 RGB picture: centred, std scaled to 0.15, shifted to 0.5, clipped
    (the Keras filter-visualization example's display rule)."""
    x = np.asarray(x, dtype=np.float32)
    x = (x - x.mean()) / (x.std() + 1e-8) * 0.15 + 0.5
    img = np.clip(x, 0, 1).transpose(1, 2, 0)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return (img[:, :, :3] * 255 + 0.5).astype(np.uint8)


def visualize(gradient, channels, shape: tuple, steps: int = 30, step_size: float = 1.0, seed: int = 0):
    """``ascend`` once per channel: ``gradient(x, channel)`` is d mean(A_channel) / dx; returns the inputs
    (len(channels), C, H, W) float32 (show them with ``deprocess``)."""
    return np.stack([ascend(lambda x, c=int(c): gradient(x, c), (1, *shape), steps=steps, step_size=step_size,
                            seed=seed)[0] for c in channels])


def visualize_filters_for(adapter: Adapter):
    """``visualize_filters(model, layer, channels, size, input_channels, steps, step_size, seed)`` bound to one
    adapter: the public ``xcam_torch.visualize_filters`` and ``xcam_tf.visualize_filters``."""

    def visualize_filters(model, layer, channels, size=None, input_channels: int = 3, steps: int = 30,
                          step_size: float = 1.0, seed: int = 0) -> np.ndarray:
        return visualize_layer(adapter, model, layer, channels, size, input_channels, steps, step_size, seed)

    visualize_filters.__doc__ = visualize_layer.__doc__
    visualize_filters.__module__ = adapter.__name__
    return visualize_filters


def visualize_layer(adapter: Adapter, model, layer, channels, size=None, input_channels: int = 3, steps: int = 30,
                    step_size: float = 1.0, seed: int = 0) -> np.ndarray:
    """For each channel of ``layer``, the input that maximizes its mean activation (``visualize`` with the
    adapter's ``activation_gradient``): float32 (len(channels), C, H, W). size: (H, W), default the model's
    declared input size or 128 x 128; C: the model's declared input channels, else ``input_channels``."""
    declared_c, h, w = adapter.input_shape(model)
    if size is None:
        size = (h or 128, w or 128)
    elif h is not None and tuple(size) != (h, w):
        raise XcamError(f"the model takes {h}x{w} inputs; size={tuple(size)} does not fit")
    shape = (declared_c or input_channels, *size)
    return visualize(lambda x, c: adapter.activation_gradient(model, layer, x, c), channels, shape, steps=steps,
                     step_size=step_size, seed=seed)
