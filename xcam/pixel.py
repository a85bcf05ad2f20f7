"""Pixel-space methods' work in NumPy: noise for SmoothGrad, and Guided Grad-CAM's product. The adapter's
probe only returns gradients of target logits with respect to the input."""

import numpy as np

from .cam import combine, finish
from .methods import gradcam
from .ops import relu


def _per_target(x, fn) -> np.ndarray:
    """Call fn(targets (N,)) once per class column: (N, C, H, W), or (N, K, C, H, W) for several classes."""
    if x.targets.ndim == 1:
        return fn(x.targets)
    return np.stack([fn(x.targets[:, j]) for j in range(x.targets.shape[1])], axis=1)


def input_gradients(x, guided: bool = False) -> np.ndarray:
    """d logit_target / d input (guided: through ReLUs that pass only positive gradients)."""
    return _per_target(x, lambda t: x.probe.input_gradients(x.inputs, t, guided))


def smooth_gradients(x) -> np.ndarray:
    """SmoothGrad: the mean input gradient over ``samples`` noisy copies, sigma = noise * (max - min)."""
    n_samples, level = int(x.options["samples"]), float(x.options["noise"])
    rng = np.random.default_rng(int(x.options["seed"]))
    flat = x.inputs.reshape(len(x.inputs), -1)
    sigma = (level * (flat.max(axis=1) - flat.min(axis=1))).reshape(-1, 1, 1, 1).astype(np.float32)
    total = None
    for _ in range(n_samples):
        noisy = x.inputs + sigma * rng.standard_normal(x.inputs.shape).astype(np.float32)
        g = _per_target(x, lambda t: x.probe.input_gradients(noisy, t, False))
        total = g if total is None else total + g
    return total / n_samples


def guided_gradcam(x) -> np.ndarray:
    """Guided backprop (…, C_in, H, W) times the Grad-CAM map upsampled to the input (…, H, W)."""
    guided = input_gradients(x, guided=True)
    size = x.inputs.shape[-2:]
    heat = finish(relu(combine(gradcam(x), x.activations)), size)
    return guided * heat[..., None, :, :]
