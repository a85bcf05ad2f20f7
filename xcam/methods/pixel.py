"""Pixel methods: signed attributions at the input's resolution (N, C_in, *S) from gradients with respect to the
input (the registry's "pixel" contract; cam() reduces over C_in with each method's ``reduce``, here max_c |a|).
Noise for SmoothGrad and Guided Grad-CAM's product are made here; the adapter's probe only returns input
gradients, in batches of ``batch_size`` rows that the core makes."""

import numpy as np

from ..errors import XcamError
from ..maps import combine, finish
from ..ops import relu
from .gradient import gradcam
from .registry import DEFAULT_BATCH, MethodArgs, register


def batched_gradients(x, inputs: np.ndarray, target, samples=None, guided: bool = False) -> np.ndarray:
    """d score / d input (B, C_in, *S) for rows ``inputs`` (row b belongs to input ``samples[b]``; default: the
    batch itself), asked of the probe ``x.batch_size`` rows per call (the only loop: over batches)."""
    size = DEFAULT_BATCH if x.batch_size is None else int(x.batch_size)
    if size < 1:
        raise XcamError(f"batch_size={size} is not valid; give a positive number of rows per model call")
    if len(inputs) <= size:
        return x.probe.input_gradients(inputs, target, guided, samples)
    rows = np.arange(len(inputs)) if samples is None else np.asarray(samples)
    return np.concatenate([x.probe.input_gradients(inputs[i:i + size], target, guided, rows[i:i + size])
                           for i in range(0, len(inputs), size)])


def _per_target(x, fn) -> np.ndarray:
    """Call fn(target) once per target column: (N, C, *S), or (N, K, C, *S) for several classes."""
    if not x.target.columns:
        return fn(x.target)
    return np.stack([fn(x.target.column(j)) for j in range(x.target.columns)], axis=1)


def input_gradients(x, guided: bool = False) -> np.ndarray:
    """d score / d input for the explained target (guided: through ReLUs that pass only positive gradients)."""
    return _per_target(x, lambda t: batched_gradients(x, x.model_inputs, t, guided=guided))


def sample_gradients(x, points: np.ndarray, guided: bool = False) -> np.ndarray:
    """Input gradients at ``points`` (P, N, C_in, *S) (P points per input: noisy copies, path steps), all
    P * N rows in batches: (P, N, C_in, *S), or (P, N, K, C_in, *S) for several classes."""
    n_points, n = points.shape[:2]
    flat = points.reshape(n_points * n, *points.shape[2:])
    samples = np.tile(np.arange(n), n_points)
    g = _per_target(x, lambda t: batched_gradients(x, flat, t, samples, guided))
    return g.reshape(n_points, n, *g.shape[1:])


def noise_sigma(x) -> np.ndarray:
    """sigma = noise * (max x - min x) per input, shaped to broadcast against (N, C_in, *S), float32."""
    flat = x.model_inputs.reshape(len(x.model_inputs), -1)
    sigma = (float(x.options["noise"]) * (flat.max(axis=1) - flat.min(axis=1)))
    return sigma.reshape(-1, *[1] * (x.model_inputs.ndim - 1)).astype(np.float32)


def noisy_copies(x) -> np.ndarray:
    """``samples`` noisy copies (n, N, C_in, *S) of the inputs, e_i ~ N(0, sigma^2), drawn from
    ``default_rng(seed)`` in the order a loop over samples would draw them."""
    n_samples = int(x.options["samples"])
    rng = np.random.default_rng(int(x.options["seed"]))
    noise = rng.standard_normal((n_samples, *x.model_inputs.shape)).astype(np.float32)
    return x.model_inputs[None] + noise_sigma(x)[None] * noise


def smooth_gradients(x) -> np.ndarray:
    """SmoothGrad: the mean input gradient over ``samples`` noisy copies, sigma = noise * (max - min)."""
    g = sample_gradients(x, noisy_copies(x))
    total = g[0].copy()
    for one in g[1:]:  # summed in sample order (the values of the former per-sample loop)
        total += one
    return total / len(g)


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
          needs_capture=False, at_inputs=True,
          paper="Simonyan et al., Deep Inside Convolutional Networks, ICLR Workshop 2014, arXiv:1312.6034")
def saliency(x: MethodArgs) -> np.ndarray:
    r"""A = dy^c/dx (the gradient of the logit with respect to the input); map M(i,j) = max_c |A_c(i,j)|."""
    return input_gradients(x)


@register("smoothgrad", title="SmoothGrad", kind="pixel", relu=False, needs_gradients=False,
          needs_capture=False,
          options={"samples": 25, "noise": 0.15, "seed": 0},
          paper="Smilkov et al., SmoothGrad, arXiv:1706.03825")
def smoothgrad(x: MethodArgs) -> np.ndarray:
    r"""A = 1/n \sum_i dy^c/dx (x + e_i), map M = max_c |A_c|, e_i ~ N(0, sigma^2), sigma = noise * (max x - min x) per
    image; options samples (n = 25), noise (0.15) and seed (fixed: the same call gives the same map)."""
    return smooth_gradients(x)


@register("guidedbackprop", title="Guided Backprop", kind="pixel", relu=False, needs_gradients=False,
          needs_capture=False, at_inputs=True,
          paper="Springenberg et al., Striving for Simplicity, ICLR Workshop 2015, arXiv:1412.6806")
def guidedbackprop(x: MethodArgs) -> np.ndarray:
    r"""Backward through every ReLU as g_in = g_out [x > 0] [g_out > 0];  M = max_c |g_in at the input|.
    A = g_in at the input; the model is not modified: the adapter changes the ReLU backward only inside the call."""
    return input_gradients(x, guided=True)


@register("guidedgradcam", title="Guided Grad-CAM", kind="pixel", relu=False,
          paper="Selvaraju et al., Grad-CAM, ICCV 2017, arXiv:1610.02391 (Sec. 3.1)")
def guidedgradcam(x: MethodArgs) -> np.ndarray:
    r"""A = guided backprop (C_in, H, W) \odot Up(Grad-CAM) (H, W);  M = max_c |A|."""
    return guided_gradcam(x)
