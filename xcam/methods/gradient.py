"""Gradient methods: channel weights or element-wise gates from d score / d activations."""

import numpy as np

from ..errors import XcamError
from ..maps import combine, principal_map
from ..targets import Class, Finer
from .registry import DEFAULT_BATCH, MethodArgs, choice, register


@register("gradcam", title="Grad-CAM", paper="Selvaraju et al., Grad-CAM, ICCV 2017, arXiv:1610.02391")
def gradcam(x: MethodArgs) -> np.ndarray:
    r"""w_k^c = 1/Z \sum_p dy^c/dA_k(p) over the Z positions p of the signal, image or volume;
    L^c = ReLU(\sum_k w_k^c A_k)."""
    return x.gradients.mean(axis=x.axes)


@register("gradcampp", title="Grad-CAM++",
          paper="Chattopadhay et al., Grad-CAM++, WACV 2018, arXiv:1710.11063")
def gradcampp(x: MethodArgs) -> np.ndarray:
    r"""With g = dy^c/dA (exponential-score form, second-order terms of a piecewise-linear net vanishing):
    alpha_k(i,j) = g^2 / (2 g^2 + \sum_ab A_k(a,b) g^3),  w_k^c = \sum_ij alpha_k(i,j) ReLU(g_k(i,j)),
    L^c = ReLU(\sum_k w_k^c A_k). alpha = 0 where its denominator is 0 (no epsilon, unlike the anchors).
    """
    g = x.gradients
    g2 = g * g
    denom = 2 * g2 + x.activations.sum(axis=x.axes, keepdims=True) * g2 * g
    alpha = np.divide(g2, denom, out=np.zeros_like(g2), where=denom != 0)
    return (alpha * np.maximum(g, 0)).sum(axis=x.axes)


@register("xgradcam", title="XGrad-CAM",
          paper="Fu et al., Axiom-based Grad-CAM, BMVC 2020, arXiv:2008.02312")
def xgradcam(x: MethodArgs) -> np.ndarray:
    r"""w_k^c = \sum_ij (A_k(i,j) / \sum_ab A_k(a,b)) dy^c/dA_k(i,j) (0 where \sum A_k = 0);
    L^c = ReLU(\sum_k w_k^c A_k)."""
    a = x.activations
    total = a.sum(axis=x.axes, keepdims=True)
    share = np.divide(a, total, out=np.zeros_like(a), where=total != 0)
    return (share * x.gradients).sum(axis=x.axes)


@register("hirescam", title="HiResCAM",
          paper="Draelos & Carin, Use HiResCAM instead of Grad-CAM, arXiv:2011.08891")
def hirescam(x: MethodArgs) -> np.ndarray:
    r"""Element-wise gate w_k^c(i,j) = dy^c/dA_k(i,j) (no averaging);  L^c = ReLU(\sum_k dy^c/dA_k \odot A_k)."""
    return x.gradients


@register("layercam", title="LayerCAM",
          paper="Jiang et al., LayerCAM, IEEE TIP 2021, doi:10.1109/TIP.2021.3089943")
def layercam(x: MethodArgs) -> np.ndarray:
    r"""Element-wise gate w_k^c(i,j) = ReLU(dy^c/dA_k(i,j));  L^c = ReLU(\sum_k w_k^c(i,j) A_k(i,j)).
    Several layers: see ``xcam.cam.fuse`` (tanh(gamma * L / max L) per layer, element-wise maximum)."""
    return np.maximum(x.gradients, 0)


@register("eigengradcam", title="EigenGrad-CAM", kind="map", weighted=lambda x: x.gradients * x.activations,
          paper="Muhammad & Yeasin, Eigen-CAM, IJCNN 2020, arXiv:2008.00299 (on gradient x activation, as in "
                "pytorch-grad-cam)")
def eigengradcam(x: MethodArgs) -> np.ndarray:
    r"""L^c = ReLU(first principal component of (dy^c/dA \odot A) over positions), sign fixed so that it
    correlates positively with \sum_k dy^c/dA_k \odot A_k."""
    return principal_map(x.gradients * x.activations, x.rank)


def _elementwise(x: MethodArgs) -> np.ndarray:
    """ReLU(dy^c/dA_k \\odot A_k): (..., C, *s), the weighted activations of Grad-CAM element-wise."""
    return np.maximum(x.gradients * x.activations, 0)


@register("gradcamelementwise", title="Grad-CAM element-wise", kind="map", weighted=_elementwise,
          paper="Gildenblat et al., pytorch-grad-cam (GradCAMElementWise), 2021, "
                "github.com/jacobgil/pytorch-grad-cam (no paper)")
def gradcamelementwise(x: MethodArgs) -> np.ndarray:
    r"""L^c = \sum_k ReLU(dy^c/dA_k \odot A_k): HiResCAM with the ReLU moved inside the channel sum, so a
    channel's negative evidence at a position cannot cancel another's positive evidence there."""
    return _elementwise(x).sum(axis=-(x.rank + 1))


@register("shapleycam", title="ShapleyCAM", needs_forwards=True,
          paper="Cai, CAMs as Shapley value-based explainers, arXiv:2501.06261 (ShapleyCAM, as pytorch-grad-cam)")
def shapleycam(x: MethodArgs) -> np.ndarray:
    r"""Second-order Taylor (Shapley) weights: w_k^c = 1/Z \sum_p (g - 1/2 H A)_k(p), with g = dy^c/dA and
    H A the Hessian-vector product of y^c w.r.t. the layer's output A times A (the adapter's double backward,
    ``Probe.layer_hvp``); L^c = ReLU(\sum_k w_k^c A_k). Same as pytorch-grad-cam 1.5.7's ShapleyCAM. One class
    per sample (``classes=`` is not supported)."""
    if x.targets.ndim == 2:
        raise XcamError("shapleycam explains one class per sample; call it once per class instead of classes=")
    hvp = x.probe.layer_hvp(x.target)
    return (x.gradients - 0.5 * hvp).mean(axis=x.axes)


def _finer_target(target, options: dict) -> Finer:
    """The Finer-CAM score of the user's class target, with the method's ``alpha`` and ``compare`` options."""
    if not isinstance(target, Class):
        raise XcamError(f"finercam explains a class of a classifier; got a {type(target).__name__} target "
                        "(give None, an int, one int per sample, or a Class)")
    return Finer(target, options["alpha"], options["compare"])


@register("finercam", title="Finer-CAM", explains=_finer_target, options={"alpha": 1.0, "compare": (1, 2, 3)},
          paper="Zhang et al., Finer-CAM: Spotting the Difference Reveals Finer Details for Visual Explanation, "
                "CVPR 2025, arXiv:2501.11309")
def finercam(x: MethodArgs) -> np.ndarray:
    r"""Grad-CAM of the Finer score (``xcam.targets.Finer``): with c the target class and J its ``compare``-ranked
    most similar classes (by |y_j - y_c|; default ranks 1, 2, 3), y = \sum_J p_j (y_c - alpha y_j) /
    (\sum_J p_j + 1e-9), p = softmax; w_k = 1/Z \sum_p dy/dA_k(p), L = ReLU(\sum_k w_k A_k). As pytorch-grad-cam
    1.5.7's FinerCAM with targets=None (or target_idx) and its defaults (alpha 1, GradCAM base). Through
    ``xcam_torch.cam`` / ``xcam_tf.cam`` only: a Capture made with another target gives plain Grad-CAM."""
    return x.gradients.mean(axis=x.axes)


def _positive(options: dict, name: str, kind=int):
    """Option ``name`` as a positive int (kind int) or a non-negative float; else a one-line error."""
    value = options[name]
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1 if kind is int \
        else isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and value >= 0
    if not ok:
        what = "a positive integer" if kind is int else "a number >= 0"
        raise XcamError(f"option {name}={value!r} is not valid; it must be {what}")
    return kind(value)


def noisy_inputs(x: MethodArgs) -> np.ndarray:
    """``num_samples`` copies (n, N, C_in, *S) of the inputs plus e ~ N(0, std^2) (std absolute, as torch-cam),
    float32 from ``default_rng(seed)``, one (N, C_in, *S) draw per copy in order."""
    n = _positive(x.options, "num_samples")
    std = np.float32(_positive(x.options, "std", float))
    noise = np.random.default_rng(int(x.options["seed"])).standard_normal((n, *x.model_inputs.shape),
                                                                         dtype=np.float32)
    return x.model_inputs[None] + std * noise


def layer_gradients_at(x: MethodArgs, points: np.ndarray, target) -> tuple:
    """The layer's activations and gradients (P, N, C, *s) at ``points`` (P, N, C_in, *S) for one target column,
    all P * N rows asked of the probe ``x.batch_size`` rows per call (the only loop: over batches)."""
    size = DEFAULT_BATCH if x.batch_size is None else int(x.batch_size)
    if size < 1:
        raise XcamError(f"batch_size={size} is not valid; give a positive number of rows per model call")
    n_points, n = points.shape[:2]
    flat = points.reshape(n_points * n, *points.shape[2:])
    samples = np.tile(np.arange(n), n_points)
    parts = [x.probe.layer_gradients(flat[i:i + size], target, samples[i:i + size])
             for i in range(0, len(flat), size)]
    acts, grads = (np.concatenate([p[j] for p in parts]).astype(np.float32, copy=False) for j in (0, 1))
    return acts.reshape(n_points, n, *acts.shape[1:]), grads.reshape(n_points, n, *grads.shape[1:])


def _smooth_gradcampp(x: MethodArgs) -> tuple:
    """Smooth Grad-CAM++ weights (N, [K,] C) and the activations (N, [1 or K,] C, *s) they weight."""
    variant = choice(x.options, "variant", ("paper", "torchcam"))
    points = noisy_inputs(x)
    columns = [x.target.column(j) for j in range(x.target.columns)] if x.target.columns else [x.target]
    runs = [layer_gradients_at(x, points, t) for t in columns]
    g = runs[0][1] if not x.target.columns else np.stack([r[1] for r in runs], axis=2)   # (P, N, [K,] C, *s)
    d2, d3 = (g * g).mean(axis=0), (g * g * g).mean(axis=0)
    a = x.activations                                                                 # clean: (N, [1,] C, *s)
    if variant == "paper":
        denom = 2 * d2 + a.sum(axis=x.axes, keepdims=True) * d3
        alpha = np.divide(d2, denom, out=np.zeros_like(d2), where=denom != 0)
        return (alpha * np.maximum(g.mean(axis=0), 0)).sum(axis=x.axes), a
    alpha = d2 / (2 * d2 + (d3 * a).sum(axis=x.axes, keepdims=True) + 1e-8)
    last = runs[0][0][-1]                                                             # the last copy's A
    return (alpha * np.maximum(g[-1], 0)).sum(axis=x.axes), last[:, None] if x.target.columns else last


def _smooth_weighted(x: MethodArgs) -> np.ndarray:
    """w_k A_k (..., C, *s) of Smooth Grad-CAM++ (for eigen_smooth)."""
    w, a = _smooth_gradcampp(x)
    return w.reshape(*w.shape, *(1,) * x.rank) * a


@register("smoothgradcampp", title="Smooth Grad-CAM++", kind="map", needs_gradients=False, needs_forwards=True,
          weighted=_smooth_weighted, options={"num_samples": 4, "std": 0.3, "seed": 0, "variant": "paper"},
          paper="Omeiza et al., Smooth Grad-CAM++: An Enhanced Inference Level Visualization Technique for Deep "
                "Convolutional Neural Network Models, arXiv:1908.01224")
def smoothgradcampp(x: MethodArgs) -> np.ndarray:
    r"""Grad-CAM++ with derivatives averaged over n noisy copies x + e_m, e_m ~ N(0, std^2) (options num_samples
    n = 4, std = 0.3 absolute, seed: as torch-cam 0.5.0's SmoothGradCAMpp): with g_m = dy^c/dA at copy m,
    D^p = 1/n \sum_m g_m^p, alpha_k(i,j) = D^2 / (2 D^2 + \sum_ab A_k(a,b) D^3) (0 where the denominator is 0),
    w_k^c = \sum_ij alpha_k(i,j) ReLU(D^1_k(i,j)), L^c = ReLU(\sum_k w_k^c A_k), A the clean input's activations
    (variant="paper", default; with std = 0 it is Grad-CAM++). The numerator is D^2 as in Grad-CAM++ (the
    paper prints D^1 there; torch-cam calls that a typo and uses D^2 too).
    variant="torchcam": torch-cam's computation: \sum_ab D^3(a,b) A_k(a,b) in the denominator (+1e-8), ReLU of
    the LAST copy's gradient g_n instead of D^1, and the map weights the last copy's activations (its hooks keep
    the last forward's). The n copies run as batched forwards and backwards to the layer (``batch_size`` rows)."""
    w, a = _smooth_gradcampp(x)
    return combine(w, a, x.rank)
