"""Gradient attributions at the input: Integrated Gradients, Gradient x Input, VarGrad, SquareGrad, DeconvNet and
GradientSHAP. Paths, baselines, noise, quadrature weights and averages are made here; the adapter's probe only
returns input gradients (and, for the completeness check, scores), ``batch_size`` rows per call, every path
step, noisy copy and sample of every input together (``pixel.sample_gradients``), never one call per step.

Every registered function returns the SIGNED attribution, float32, channels first, (N, C_in, *S) or
(N, K, C_in, *S) for several classes; ``attribute`` returns it as is, ``cam`` reduces it with max_c |A|.

Baselines (``baseline`` of integratedgradients, ``baselines`` of gradientshap): ``"zeros"``, ``"blur"`` (each
input blurred: a Gaussian of kernel 11, sigma 5 pixels along every spatial axis, borders reflected as
cv2.BORDER_REFLECT_101: the deletion metric's blur substrate), a number, or an array of the input's channel and
spatial shape, channels first (C, *S) or in the framework's channels-last layout (*S, C) (taken as channels
last only when it is not also a channels-first shape), with an optional leading axis: one baseline per input
(N, ...) for integratedgradients, the baseline set (B, ...) for gradientshap.
"""

import warnings

import cv2
import numpy as np

from ..errors import XcamError
from ..ops import matmul_inline
from .pixel import input_gradients, noisy_copies, sample_gradients
from .registry import DEFAULT_BATCH, MethodArgs, choice, register

BASELINES = ("zeros", "blur")
BLUR_KSIZE, BLUR_SIGMA = 11, 5.0
IG_METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


class CompletenessWarning(UserWarning):
    r"""Integrated Gradients' completeness error \sum_i A_i - (f(x) - f(x')) is above ``tolerance`` times
    |f(x) - f(x')| for some input. ``errors`` holds the error per input (N,) or (N, K), ``gaps`` f(x) - f(x')."""

    def __init__(self, message: str, errors: np.ndarray, gaps: np.ndarray):
        super().__init__(message)
        self.errors, self.gaps = errors, gaps


def _int_option(options: dict, name: str, least: int = 1) -> int:
    """The option as an int >= ``least``, else a one-line error."""
    value = options[name]
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
        raise XcamError(f"option {name}={value!r} is not valid; give an int >= {least}")
    return int(value)


def _float_option(options: dict, name: str) -> float:
    """The option as a finite float >= 0, else a one-line error."""
    value = options[name]
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not 0 <= value < np.inf:
        raise XcamError(f"option {name}={value!r} is not valid; give a finite number >= 0")
    return float(value)


def gaussian_blur(inputs: np.ndarray) -> np.ndarray:
    """Each input (N, C, *S) blurred along every spatial axis by a Gaussian of kernel BLUR_KSIZE, sigma
    BLUR_SIGMA (cv2.getGaussianKernel), borders reflected without repeating the edge (cv2.BORDER_REFLECT_101):
    for images, cv2.GaussianBlur(11, 5) per channel."""
    kernel = cv2.getGaussianKernel(BLUR_KSIZE, BLUR_SIGMA).ravel().astype(np.float32)
    half = BLUR_KSIZE // 2
    out = inputs.astype(np.float32)
    for axis in range(2, inputs.ndim):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (half, half)
        padded = np.moveaxis(np.pad(out, pad, mode="reflect"), axis, 0)
        length = out.shape[axis]
        blurred = sum(w * padded[i:i + length] for i, w in enumerate(kernel))
        out = np.moveaxis(blurred, 0, axis).astype(np.float32)
    return out


def baseline_array(inputs: np.ndarray, value, name: str, leading: str) -> np.ndarray:
    """The baselines for ``inputs`` (N, C, *S) as a float32 array (M, C, *S): "zeros" (M = 1), "blur" (M = N),
    a number (M = 1) or an array (C, *S) / (*S, C) with an optional leading axis (M = its length). ``leading``
    says in words what that axis is, for the error."""
    feature = inputs.shape[1:]
    if isinstance(value, str):
        if choice({name: value}, name, BASELINES) == "zeros":
            return np.zeros((1, *feature), np.float32)
        return gaussian_blur(inputs)
    if isinstance(value, bool):
        raise XcamError(f"option {name}={value!r} is not valid; give 'zeros', 'blur', a number or an array")
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise XcamError(f"option {name}={value!r} is not valid; give 'zeros', 'blur', a number or an array") from None
    last = (*feature[1:], feature[0])
    rank = len(feature)
    if arr.ndim == 0:
        arr = np.full((1, *feature), arr, np.float32)
    elif arr.shape[-rank:] != feature and arr.shape[-rank:] == last and arr.ndim in (rank, rank + 1):
        arr = np.moveaxis(arr, -1, -rank)
    if arr.ndim == rank and arr.shape == feature:
        arr = arr[None]
    if arr.ndim != rank + 1 or arr.shape[1:] != feature:
        raise XcamError(f"option {name} has shape {arr.shape}; give {feature} (channels first) or {last} (channels "
                        f"last), optionally with a leading axis of {leading}")
    if not np.isfinite(arr).all():
        raise XcamError(f"option {name} contains NaN or infinite values")
    return arr


def path_rule(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    r"""(weights w_p, points alpha_p) of the quadrature \int_0^1 g(alpha) d alpha ~ \sum_p w_p g(alpha_p), as captum's
    ``method``: gausslegendre (Gauss-Legendre on [0, 1]: alpha = (1 + t) / 2, w = v / 2 for numpy's leggauss
    nodes t and weights v), riemann_left / right / middle (w = 1/n at 0, 1/n, ...; 1/n, ..., 1; the midpoints),
    riemann_trapezoid (alpha = 0, 1/(n-1), ..., 1 with w = 1/n, the two ends 1/(2n): captum's weights, which sum
    to 1 - 1/n)."""
    n = steps
    if method == "gausslegendre":
        t, v = np.polynomial.legendre.leggauss(n)
        return 0.5 * v, 0.5 * (1 + t)
    if method == "riemann_trapezoid":
        if n < 2:
            raise XcamError(f"option steps={n} is not valid for method riemann_trapezoid; give an int >= 2")
        w = np.full(n, 1 / n)
        w[[0, -1]] /= 2
        return w, np.linspace(0, 1, n)
    start = {"riemann_left": 0.0, "riemann_right": 1 / n, "riemann_middle": 1 / (2 * n)}[method]
    return np.full(n, 1 / n), start + np.arange(n) / n


def batched_scores(x, rows: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """The target's scores (B,) or (B, K) for ``rows`` (row b belongs to input ``samples[b]``), in batches of
    ``x.batch_size`` rows."""
    size = DEFAULT_BATCH if x.batch_size is None else int(x.batch_size)
    return np.concatenate([np.asarray(x.probe.score(rows[i:i + size], x.target, samples[i:i + size]), np.float64)
                           for i in range(0, len(rows), size)])


def completeness(x, attribution: np.ndarray, baselines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""(errors, gaps): \sum_i A_i - (f(x) - f(x')) and f(x) - f(x') per input, (N,) or (N, K), from one batched
    forward of the inputs and their baselines (N, C, *S)."""
    inputs = x.model_inputs
    n = len(inputs)
    scores = batched_scores(x, np.concatenate([inputs, baselines.astype(np.float32)]), np.tile(np.arange(n), 2))
    gaps = scores[:n] - scores[n:]
    totals = attribution.reshape(*gaps.shape, -1).sum(axis=-1, dtype=np.float64)
    return totals - gaps, gaps


def check_completeness(x, attribution: np.ndarray, baselines: np.ndarray) -> None:
    r"""Warn (``CompletenessWarning``) when |\sum_i A_i - (f(x) - f(x'))| > tolerance |f(x) - f(x')| for some
    input; option ``tolerance`` None skips the check (and its forward)."""
    tol = x.options.get("tolerance")
    if tol is None:
        return
    tol = _float_option(x.options, "tolerance")
    errors, gaps = completeness(x, attribution, baselines)
    bad = np.abs(errors) > tol * np.abs(gaps)
    if bad.any():
        rel = np.abs(errors) / np.maximum(np.abs(gaps), 1e-12)
        worst = np.unravel_index(np.argmax(np.where(bad, rel, -1)), rel.shape)
        warnings.warn(CompletenessWarning(
            f"integratedgradients: completeness error sum(A) - (f(x) - f(x')) = {errors[worst]:.4g} for input "
            f"{worst[0]}, {rel[worst]:.1%} of f(x) - f(x') = {gaps[worst]:.4g} (tolerance {tol:g}); more steps or "
            "another method option make it smaller", errors, gaps), stacklevel=2)


def _times(g: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """g (N, [K], C, *S) times factor (N, C, *S), broadcast over the class axis when there is one."""
    return g * (factor[:, None] if g.ndim > factor.ndim else factor)


def integrated_gradients(x: MethodArgs) -> np.ndarray:
    r"""A = (x - x') \odot \sum_p w_p dy/dx (x' + alpha_p (x - x')) for the rule ``path_rule(method, steps)``;
    all steps x N points in batches. Then the completeness check (``check_completeness``)."""
    steps = _int_option(x.options, "steps")
    weights, alphas = path_rule(choice(x.options, "method", IG_METHODS), steps)
    inputs = x.model_inputs.astype(np.float32, copy=False)
    base = baseline_array(inputs, x.options["baseline"], "baseline", f"{len(inputs)} (one per input)")
    if len(base) not in (1, len(inputs)):
        raise XcamError(f"option baseline has {len(base)} baselines; give one, or one per input ({len(inputs)})")
    base = np.broadcast_to(base, inputs.shape)
    diff = inputs - base
    shape = (-1,) + (1,) * inputs.ndim
    points = base[None] + alphas.astype(np.float32).reshape(shape) * diff[None]
    g = sample_gradients(x, points)                                          # (P, N, [K], C, *S)
    total = matmul_inline(weights.astype(np.float32), g.reshape(len(g), -1)).reshape(g.shape[1:])   # not threaded
    attribution = _times(total, diff)
    check_completeness(x, attribution, base)
    return attribution


def gradient_x_input(x: MethodArgs) -> np.ndarray:
    """A = x \\odot dy/dx (x)."""
    return _times(input_gradients(x), x.model_inputs.astype(np.float32, copy=False))


def noise_gradients(x: MethodArgs) -> np.ndarray:
    """Input gradients (n, N, [K], C, *S) at SmoothGrad's noisy copies (``pixel.noisy_copies``: options samples,
    noise, seed), all n x N rows in batches."""
    return sample_gradients(x, noisy_copies(x))


def var_grad(x: MethodArgs) -> np.ndarray:
    """A = Var_i g_i over the noisy copies (two-pass, 1/n); ``abs``: of |g_i|, captum's NoiseTunnel default over
    Saliency(abs=True)."""
    g = noise_gradients(x)
    if x.options["abs"]:
        g = np.abs(g)
    return np.var(g, axis=0, dtype=np.float64).astype(np.float32)


def square_grad(x: MethodArgs) -> np.ndarray:
    """A = 1/n \\sum_i g_i^2 over the noisy copies."""
    g = noise_gradients(x)
    return np.mean(np.square(g), axis=0)


def shap_draws(rng: np.random.Generator, n_samples: int, n: int, n_baselines: int, feature: tuple,
               stdevs: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """GradientSHAP's draws from ``rng``, in this order: the baseline index of each sample (n_samples, N), uniform
    over the set; alpha (n_samples, N) ~ U[0, 1); the noise (n_samples, N, *feature) ~ N(0, stdevs^2), float32
    (None when stdevs is 0)."""
    index = rng.integers(0, n_baselines, (n_samples, n))
    alpha = rng.random((n_samples, n))
    noise = None if stdevs == 0 else (stdevs * rng.standard_normal((n_samples, n, *feature))).astype(np.float32)
    return index, alpha, noise


def gradient_shap(x: MethodArgs) -> np.ndarray:
    r"""A = 1/n \sum_s (\tilde x_s - b_s) \odot dy/dx (b_s + alpha_s (\tilde x_s - b_s)), \tilde x_s = x + e_s,
    with b_s drawn from the baseline set, alpha_s ~ U[0, 1), e_s ~ N(0, stdevs^2) (``shap_draws``)."""
    n_samples = _int_option(x.options, "n_samples")
    stdevs = _float_option(x.options, "stdevs")
    inputs = x.model_inputs.astype(np.float32, copy=False)
    n = len(inputs)
    per_input = isinstance(x.options["baselines"], str) and x.options["baselines"] == "blur"
    bases = baseline_array(inputs, x.options["baselines"], "baselines", "B (the baseline set)")
    rng = np.random.default_rng(x.options["seed"])
    index, alpha, noise = shap_draws(rng, n_samples, n, 1 if per_input else len(bases), inputs.shape[1:], stdevs)
    b = np.broadcast_to(bases[None], (n_samples, *inputs.shape)) if per_input else bases[index]
    noisy = np.broadcast_to(inputs[None], b.shape) if noise is None else inputs[None] + noise
    delta = noisy - b
    points = b + alpha.astype(np.float32).reshape(*alpha.shape, *(1,) * (inputs.ndim - 1)) * delta
    g = sample_gradients(x, points)                                          # (n, N, [K], C, *S)
    if g.ndim > delta.ndim:
        delta = delta[:, :, None]
    return (g * delta).mean(axis=0)


@register("integratedgradients", title="Integrated Gradients", kind="pixel", relu=False, needs_gradients=False,
          needs_capture=False,
          options={"steps": 50, "method": "gausslegendre", "baseline": "zeros", "tolerance": 0.05},
          paper="Sundararajan et al., Axiomatic Attribution for Deep Networks, ICML 2017, arXiv:1703.01365")
def integratedgradients(x: MethodArgs) -> np.ndarray:
    r"""A_i = (x_i - x'_i) \int_0^1 dy^c/dx_i (x' + alpha (x - x')) d alpha, the integral by ``method``
    (gausslegendre (captum's default), riemann_left, riemann_right, riemann_middle, riemann_trapezoid, as
    captum's) with ``steps`` (50) points; ``baseline`` x' "zeros" (captum's default 0), "blur", a number or an
    array (module docstring). Completeness (the paper's axiom: \sum_i A_i = f(x) - f(x')) is checked with one
    extra batched forward of x and x': above ``tolerance`` (0.05, the paper's "within 5%" check of Sec. 5)
    times |f(x) - f(x')| a CompletenessWarning says the error and carries it (``errors``, ``gaps``; catch it
    with warnings.catch_warnings(record=True)); tolerance None skips the check, 0 always reports. cam() reduces
    with max_c |A|."""
    return integrated_gradients(x)


@register("gradientxinput", title="Gradient x Input", kind="pixel", relu=False, needs_gradients=False,
          needs_capture=False, at_inputs=True,
          paper="Shrikumar et al., Not Just a Black Box: Learning Important Features Through Propagating Activation "
                "Differences, arXiv:1605.01713 (captum InputXGradient)")
def gradientxinput(x: MethodArgs) -> np.ndarray:
    r"""A = x \odot dy^c/dx (captum's InputXGradient); cam() reduces with max_c |A|."""
    return gradient_x_input(x)


@register("vargrad", title="VarGrad", kind="pixel", relu=False, needs_gradients=False,
          needs_capture=False,
          options={"samples": 25, "noise": 0.15, "seed": 0, "abs": False},
          paper="Adebayo et al., Local Explanation Methods for Deep Neural Networks Lack Sensitivity to Parameter "
                "Values, ICLR Workshop 2018, arXiv:1810.03307")
def vargrad(x: MethodArgs) -> np.ndarray:
    r"""A = 1/n \sum_i (g_i - \bar g)^2, g_i = dy^c/dx (x + e_i), e_i ~ N(0, sigma^2), sigma = noise (max x - min x)
    per input: SmoothGrad's noise and options (samples 25, noise 0.15, seed). ``abs`` True: the variance of |g_i|,
    what captum's NoiseTunnel(Saliency) nt_type="vargrad" gives with Saliency's default abs=True (the paper
    takes the signed gradient, so abs is False by default). cam() reduces with max_c |A|."""
    return var_grad(x)


@register("squaregrad", title="SquareGrad", kind="pixel", relu=False, needs_gradients=False,
          needs_capture=False,
          options={"samples": 25, "noise": 0.15, "seed": 0},
          paper="Hooker et al., A Benchmark for Interpretability Methods in Deep Neural Networks, NeurIPS 2019, "
                "arXiv:1806.10758")
def squaregrad(x: MethodArgs) -> np.ndarray:
    r"""A = 1/n \sum_i g_i^2, g_i = dy^c/dx (x + e_i) over SmoothGrad's noisy copies (samples 25, noise 0.15,
    seed): SmoothGrad-Squared, captum's NoiseTunnel(Saliency) nt_type="smoothgrad_sq". cam() reduces with
    max_c |A|."""
    return square_grad(x)


@register("deconvnet", title="DeconvNet", kind="pixel", relu=False, needs_gradients=False,
          needs_capture=False, at_inputs=True,
          paper="Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014, arXiv:1311.2901")
def deconvnet(x: MethodArgs) -> np.ndarray:
    r"""Backward through every ReLU as g_in = max(g_out, 0) (the ReLU's own [x > 0] skipped; captum's
    Deconvolution); A = g_in at the input, M = max_c |A|. The model is not modified: the adapter changes the
    ReLU backward only inside the call (PyTorch nn.ReLU / nn.ReLU6 modules, Keras ReLU layers and relu
    activations, as guidedbackprop; captum hooks nn.ReLU only)."""
    return input_gradients(x, guided="deconvnet")


@register("gradientshap", title="GradientSHAP", kind="pixel", relu=False, needs_gradients=False,
          needs_capture=False,
          options={"n_samples": 5, "stdevs": 0.0, "baselines": "zeros", "seed": 0},
          paper="Lundberg & Lee, A Unified Approach to Interpreting Model Predictions, NeurIPS 2017, arXiv:1705.07874")
def gradientshap(x: MethodArgs) -> np.ndarray:
    r"""A = E_{b, alpha, e} [(\tilde x - b) \odot dy^c/dx (b + alpha (\tilde x - b))], \tilde x = x + e: expected
    gradients over the baseline set, estimated as captum's GradientShap from n_samples (5) draws per input of a
    baseline b (uniform over ``baselines``: "zeros" (a set of one; captum has no default), "blur", a number or
    an array (B, C, *S) of B baselines), alpha ~ U[0, 1) and noise e ~ N(0, stdevs^2) (stdevs 0.0, absolute),
    from NumPy's default_rng(seed) (``shap_draws``), so not captum's draws. cam() reduces with max_c |A|."""
    return gradient_shap(x)
