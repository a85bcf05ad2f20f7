"""Pixel methods: maps at the input's resolution from gradients with respect to the input. Noise for
SmoothGrad and Guided Grad-CAM's product are made here; the adapter's probe only returns input gradients."""

import numpy as np

from ..errors import XcamError
from ..maps import combine, finish
from ..ops import relu
from .gradient import gradcam
from .registry import MethodArgs, register


def channel_max(x, grads: np.ndarray) -> np.ndarray:
    """max_c |g| over the input channel axis of (…, C_in, *S) input gradients."""
    return np.abs(grads).max(axis=-(x.input_rank + 1))


def _per_target(x, fn) -> np.ndarray:
    """Call fn(target) once per target column: (N, C, *S), or (N, K, C, *S) for several classes."""
    if not x.target.columns:
        return fn(x.target)
    return np.stack([fn(x.target.column(j)) for j in range(x.target.columns)], axis=1)


def input_gradients(x, guided: bool = False) -> np.ndarray:
    """d score / d input for the explained target (guided: through ReLUs that pass only positive gradients)."""
    return _per_target(x, lambda t: x.probe.input_gradients(x.model_inputs, t, guided))


def smooth_gradients(x) -> np.ndarray:
    """SmoothGrad: the mean input gradient over ``samples`` noisy copies, sigma = noise * (max - min)."""
    n_samples, level = int(x.options["samples"]), float(x.options["noise"])
    rng = np.random.default_rng(int(x.options["seed"]))
    flat = x.model_inputs.reshape(len(x.model_inputs), -1)
    sigma = (level * (flat.max(axis=1) - flat.min(axis=1))).reshape(-1, *[1] * (x.model_inputs.ndim - 1))
    sigma = sigma.astype(np.float32)
    total = None
    for _ in range(n_samples):
        noisy = x.model_inputs + sigma * rng.standard_normal(x.model_inputs.shape).astype(np.float32)
        g = _per_target(x, lambda t, noisy=noisy: x.probe.input_gradients(noisy, t, False))
        total = g if total is None else total + g
    return total / n_samples


def guided_gradcam(x) -> np.ndarray:
    """Guided backprop (…, C_in, *S) times the Grad-CAM map upsampled to the input (…, *S)."""
    guided = input_gradients(x, guided=True)
    size = tuple(x.model_inputs.shape[2:])
    if x.rank != len(size):
        raise XcamError(f"Guided Grad-CAM multiplies the layer's {x.rank}-D map with the {len(size)}-D input "
                        "gradient; the ranks must match")
    heat = finish(relu(combine(gradcam(x), x.activations, x.rank)), size)
    return guided * np.expand_dims(heat, -len(size) - 1)


@register("saliency", title="Saliency", kind="pixel", relu=False, needs_gradients=False,
          paper="Simonyan et al., Deep Inside Convolutional Networks, ICLR Workshop 2014, arXiv:1312.6034")
def saliency(x: MethodArgs) -> np.ndarray:
    r"""M(i,j) = max_c |dy^c/dx_c(i,j)| (the gradient of the logit with respect to the input)."""
    return channel_max(x, input_gradients(x))


@register("smoothgrad", title="SmoothGrad", kind="pixel", relu=False, needs_gradients=False,
          options={"samples": 25, "noise": 0.15, "seed": 0},
          paper="Smilkov et al., SmoothGrad, arXiv:1706.03825")
def smoothgrad(x: MethodArgs) -> np.ndarray:
    r"""M = max_c |1/n \sum_i dy^c/dx (x + e_i)|, e_i ~ N(0, sigma^2), sigma = noise * (max x - min x) per
    image; options samples (n = 25), noise (0.15) and seed (fixed: the same call gives the same map)."""
    return channel_max(x, smooth_gradients(x))


@register("guidedbackprop", title="Guided Backprop", kind="pixel", relu=False, needs_gradients=False,
          paper="Springenberg et al., Striving for Simplicity, ICLR Workshop 2015, arXiv:1412.6806")
def guidedbackprop(x: MethodArgs) -> np.ndarray:
    r"""Backward through every ReLU as g_in = g_out [x > 0] [g_out > 0];  M = max_c |g_in at the input|.
    The model is not modified: the adapter changes the ReLU backward only inside the call."""
    return channel_max(x, input_gradients(x, guided=True))


@register("guidedgradcam", title="Guided Grad-CAM", kind="pixel", relu=False,
          paper="Selvaraju et al., Grad-CAM, ICCV 2017, arXiv:1610.02391 (Sec. 3.1)")
def guidedgradcam(x: MethodArgs) -> np.ndarray:
    r"""G = guided backprop (C_in, H, W) \odot Up(Grad-CAM) (H, W);  M = max_c |G|."""
    return channel_max(x, guided_gradcam(x))
