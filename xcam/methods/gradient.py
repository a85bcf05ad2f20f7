"""Gradient methods: channel weights or element-wise gates from d score / d activations."""

from dataclasses import replace

import numpy as np

from ..errors import XcamError
from ..maps import combine, finish, principal_map
from ..ops import matmul_inline, min_max_last, resize
from ..targets import Class, Finer
from .registry import DEFAULT_BATCH, MethodArgs, choice, get_method, method_names, register, resolve_options


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


@register("shapleycam", title="ShapleyCAM", needs_hvp=True,
          paper="Cai, CAMs as Shapley value-based explainers, arXiv:2501.06261 (ShapleyCAM, as pytorch-grad-cam)")
def shapleycam(x: MethodArgs) -> np.ndarray:
    r"""Second-order Taylor (Shapley) weights: w_k^c = 1/Z \sum_p (g - 1/2 H A)_k(p), with g = dy^c/dA and
    H A the Hessian-vector product of y^c w.r.t. the layer's output A times A (``Capture.hvp``: the capture's
    forward, its backward with a graph, then the framework's double backward);
    L^c = ReLU(\sum_k w_k^c A_k). Same as pytorch-grad-cam 1.5.7's ShapleyCAM. With ``classes=``
    one g and H A per class, from the same forward."""
    return (x.gradients - 0.5 * x.hvp).mean(axis=x.axes)


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


# ----------------------------------------------------------------------------------------------------- FullGrad

def rescaled_channel_sum(values: np.ndarray, rank: int, eps: float = 1e-7, scale=None) -> np.ndarray:
    """\\sum_c rescale(|v_c|) for (B, C, *s) values v (times ``scale`` (C,) per channel when given, v_c = s_c
    values_c): each (row, channel) map of |v| min-max rescaled, (|v| - min) / (max - min + eps) over its
    positions (a constant map gives 0), then summed over channels: (B, *s). The scale is folded into the
    rescale (|s_c values_c| - min = |s_c| (|values_c| - min_c)) and the channel sum is one weighted sum."""
    a = np.abs(values, dtype=np.float32)
    flat = a.reshape(*a.shape[:2], -1)
    lo, hi = min_max_last(flat)
    s = np.float32(1) if scale is None else np.abs(np.asarray(scale, np.float32)).reshape(1, -1, 1)
    span = (hi - lo) * s + np.float32(eps)
    weight = np.divide(s, span, out=np.zeros_like(span), where=span > 0)[..., 0]   # (B, C)
    flat -= lo
    return np.einsum("bcp,bc->bp", flat, weight, optimize=False).reshape(a.shape[0], *a.shape[2:])


def effective_bias(layer: dict) -> np.ndarray:
    """A layer's bias (C,) from the arrays the adapter hands over: a convolution's own ``bias``; batch
    normalization's beta - mean gamma / sqrt(var + eps) (gamma = 1, beta = 0 where the layer has none)."""
    if "bias" in layer:
        return np.asarray(layer["bias"], np.float32)
    if layer.get("mean") is None or layer.get("var") is None:
        raise XcamError(f"fullgrad needs the running mean and variance of batch normalization layer "
                        f"{layer.get('layer', '?')!r}, which has none (track_running_stats=False)")
    mean, var = np.asarray(layer["mean"], np.float32), np.asarray(layer["var"], np.float32)
    gamma = np.ones_like(mean) if layer.get("gamma") is None else np.asarray(layer["gamma"], np.float32)
    beta = np.zeros_like(mean) if layer.get("beta") is None else np.asarray(layer["beta"], np.float32)
    return beta - mean * gamma / np.sqrt(var + np.float32(layer["eps"]))


def fullgrad_rows(inputs: np.ndarray, input_gradient: np.ndarray, layers: list, eps: float = 1e-7) -> np.ndarray:
    """The FullGrad map (B, *S) for inputs (B, C_in, *S), their gradient and the adapter's bias layers
    (``Probe.bias_gradients``): \\sum_c psi(dy/dx_c x_c) + \\sum_l Up(\\sum_c psi(dy/dA_{l,c} b_{l,c})), psi the
    per-map rescale of the absolute value (``rescaled_channel_sum``), Up the bilinear resize to S (linear, so
    the channel sum is taken before it: one resize per layer)."""
    rank = inputs.ndim - 2
    size = tuple(inputs.shape[2:])
    total = rescaled_channel_sum(input_gradient * inputs, rank, eps)
    for layer in layers:
        g = np.asarray(layer["gradient"], np.float32)
        b = effective_bias(layer)
        if g.ndim != rank + 2 or b.shape != g.shape[1:2]:
            raise XcamError(f"layer {layer.get('layer', '?')!r}: gradient {g.shape} and bias {b.shape} do not "
                            f"form a {rank}-D map per channel")
        part = rescaled_channel_sum(g, rank, eps, scale=b)
        total += part if tuple(part.shape[1:]) == size else resize(part, size)
    return total


def _fullgrad_target(x: MethodArgs, target) -> np.ndarray:
    """FullGrad maps (N, *S) for one target, the probe asked ``batch_size`` rows at a time."""
    size = DEFAULT_BATCH if x.batch_size is None else int(x.batch_size)
    if size < 1:
        raise XcamError(f"batch_size={size} is not valid; give a positive number of rows per model call")
    inputs, rows = x.model_inputs, np.arange(len(x.model_inputs))
    parts = []
    for i in range(0, len(inputs), size):
        chunk = inputs[i:i + size]
        grad, layers = x.probe.bias_gradients(chunk, target, rows[i:i + size] if len(inputs) > size else None)
        parts.append(fullgrad_rows(chunk, grad, layers, float(x.options["eps"])))
    return np.concatenate(parts)


@register("fullgrad", title="FullGrad", kind="pixel", relu=False, needs_gradients=False, needs_capture=False,
          at_inputs=True, options={"eps": 1e-7},
          paper="Srinivas & Fleuret, Full-Gradient Representation for Neural Network Visualization, NeurIPS 2019, "
                "arXiv:1905.00780")
def fullgrad(x: MethodArgs) -> np.ndarray:
    r"""S(x) = \sum_c psi(dy^c/dx_c \odot x_c) + \sum_l \sum_k psi(dy^c/dA_{l,k} b_{l,k}) over every convolution
    with a bias and every batch normalization l whose output is a map of the input's rank (each run of a shared
    one), psi(m) = Up(rescale(|m|)): the absolute value, min-max rescaled per map (each input channel, each layer
    channel), (|m| - min) / (max - min + eps), bilinearly upsampled to the input size. b is the convolution's
    bias or batch normalization's effective bias beta - mean gamma / sqrt(var + eps_bn) (running statistics: the
    model runs in eval mode). As pytorch-grad-cam 1.5.7's FullGrad, whose rescale has eps = 1e-7 (option
    ``eps``; 0 is the paper's exact rescale, which blows a channel of gradients near 0 everywhere up to [0, 1]).
    pytorch-grad-cam takes only exact nn.Conv2d / nn.BatchNorm2d modules with a ``bias`` and 2-D inputs; xcam any
    convolution or batch norm of the input's rank (a BatchNorm with affine=False adds -mean / sqrt(var + eps_bn)).
    The authors' code (idiap/fullgrad-saliency) rescales a layer's channels jointly, eps 1e-6, and upsamples with
    align_corners=True; xcam follows the paper's per-channel psi. The decomposition is complete for ReLU-like
    non-linearities only (the paper's implicit biases are not added). No layer is used (a layer given is only
    checked to exist) and no capture runs: a top-1 class is resolved in the gradient's own forward.
    ``attribute`` returns the map broadcast over the input channels (it is not signed)."""
    if not isinstance(x.options["eps"], (int, float)) or not x.options["eps"] >= 0:
        raise XcamError(f"option eps={x.options['eps']!r} is not valid; give a number >= 0 (default 1e-7)")

    def one(target):
        m = _fullgrad_target(x, target)
        return np.broadcast_to(np.expand_dims(m, 1), x.model_inputs.shape)

    if not x.target.columns:
        return one(x.target)
    return np.stack([one(x.target.column(j)) for j in range(x.target.columns)], axis=1)


# ---------------------------------------------------------------------------------------------------- RefineCAM

REFINE_AT = ("input", "largest_layer")


def _refine_base(x: MethodArgs) -> tuple:
    """The base method of RefineCAM and the MethodArgs it sees (its own default options)."""
    valid = [n for n in method_names() if n != "refinecam" and _can_be_base(get_method(n))]
    name = x.options["base"]
    if name not in valid:
        raise XcamError(f"option base={name!r} is not valid for refinecam; choose one of: {', '.join(valid)}")
    base = get_method(name)
    return base, replace(x, options=resolve_options(base, None))


def _can_be_base(m) -> bool:
    """Whether a registered method can be RefineCAM's base: a layer method from activations and gradients."""
    return m.kind in ("weights", "map") and not (m.needs_head or m.needs_probe or m.explains or m.fuse)


def _refine_weighted(x: MethodArgs) -> np.ndarray:
    """The base method's weighted activations (..., C, *s), for eigen_smooth."""
    base, bx = _refine_base(x)
    if base.kind == "weights":
        w = base.fn(bx)
        if w.ndim == bx.activations.ndim - bx.rank:
            w = w.reshape(*w.shape, *(1,) * bx.rank)
        return w * bx.activations
    if base.weighted is None:
        raise XcamError(f"refinecam's base {base.name!r} has no weighted activations to smooth (eigen_smooth)")
    return base.weighted(bx)


def refine_fuse(raws: list, size: tuple, options: dict) -> np.ndarray:
    """RefineCAM's fusion of the layers' ReLU'd base maps: each min-max normalized at its layer, resized, then
    multiplied element-wise, the product min-max normalized. ``product_at`` "input" (the paper's code,
    pytorch-grad-cam): each map upsampled to ``size`` (and normalized again there) before the product;
    "largest_layer" (torchcam): each upsampled to the largest layer's size (not normalized again), the product
    then resized to ``size``."""
    rank = len(size)
    at = choice(options, "product_at", REFINE_AT)
    if at == "input":
        product = np.prod(np.stack([finish(r, size, rank) for r in raws]), axis=0)
        return finish(product, None, rank)
    largest = tuple(max(s) for s in zip(*(r.shape[-rank:] for r in raws)))
    product = None
    for r in raws:
        normed = finish(r, None, rank)
        lead = normed.shape[:-rank]
        flat = normed.reshape(-1, *normed.shape[-rank:])
        up = (flat if tuple(flat.shape[1:]) == largest else resize(flat, largest)).reshape(*lead, *largest)
        product = up if product is None else product * up
    return finish(product, size, rank)


@register("refinecam", title="RefineCAM", kind="map", weighted=_refine_weighted, fuse=refine_fuse,
          options={"base": "gradcampp", "product_at": "input"},
          paper="Domeniconi, How to Evaluate and Refine your CAM, ICPR 2026, arXiv:2605.14641")
def refinecam(x: MethodArgs) -> np.ndarray:
    r"""L = normalize(\prod_l Up(normalize(ReLU(L^base_l)))) over the given layers l (``layer=[...]``), the base
    map L^base of each layer by ``base`` (default Grad-CAM++, as both anchors; any layer method that needs only
    activations and gradients), normalize the min-max rescale per map. Shallow layers' noise is suppressed where
    deeper layers are cold. ``product_at``: "input" (default; the authors' pytorch-grad-cam 1.5.7 RefineCAM,
    maps upsampled to the output size before the product) or "largest_layer" (torchcam 0.5.0's RefineCAM,
    product at the largest layer's size, then upsampled). torchcam's default base, its GradCAMpp, keeps alpha =
    g^2 (a known bug: w = \sum ReLU(g)^3), so its default maps differ from ours; with the same base (GradCAM,
    LayerCAM) they agree. pytorch-grad-cam's GradCAM++ adds 1e-6 to alpha's denominator (ours, the paper's, does
    not), which moves its default maps by up to 7e-3 on a random ResNet-18. One layer gives the base map itself
    (torchcam refuses fewer than two). ``eigen_smooth`` smooths each layer's base map before the product (as
    pytorch-grad-cam passes it to the base)."""
    base, bx = _refine_base(x)
    out = base.fn(bx)
    return combine(out, bx.activations, bx.rank) if base.kind == "weights" else out

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

def legrad_score(tokens, head, target, params: dict, ops):
    r"""LeGrad's layer-specific score, on framework tensors (the adapter runs it inside its autograd):
    s^l = target(head(mean_t z^l)), z^l (N, T, E) the block's output tokens averaged over every token (prefix
    tokens included, as torchcam and the paper's code), ``head`` the adapter's callable for the model's final
    norm and classifier (``options["head"]``)."""
    return target.score(head(ops.mean(tokens, 1)), params, ops)


def attention_before(seen: list, attention=None) -> tuple:
    """LeGrad's attention for a block: the last of ``seen`` ((attention layer, value input, output) in the
    order they ran before the block's output) that is ``attention`` (a layer object; None: any); a one-line
    error when none ran."""
    runs = [r for r in seen if attention is None or r[0] is attention]
    if not runs:
        raise XcamError("no multi-head attention ran before the block's output: give the transformer block "
                        "(options attention= names its attention)")
    return runs[-1]


def mean_fuse(raws: list, size: tuple, options: dict) -> np.ndarray:
    """LeGrad's fusion of several blocks: the blocks' raw maps (one token grid) averaged, then resized and
    normalized once."""
    if len({r.shape for r in raws}) > 1:
        raise XcamError("legrad averages the layers' maps, which need one grid; got "
                        f"{', '.join(str(r.shape[1:]) for r in raws)}")
    return finish(np.mean(raws, axis=0), size, len(size))


@register("legrad", title="LeGrad", kind="map", needs_gradients=False, needs_attention=True, fuse=mean_fuse,
          options={"head": None, "attention": None},
          paper="Bousselham et al., LeGrad: An Explainability Method for Vision Transformers via Feature Formation "
                "Sensitivity, arXiv:2404.03214")
def legrad(x: MethodArgs) -> np.ndarray:
    r"""For a transformer block l (the layer: its output tokens z^l (N, T, E)) and its self-attention's
    post-softmax probabilities A^l (N, heads, T, T): s^l = the target's score of head(mean_t z^l)
    (``legrad_score``), E^l = mean_{heads, queries} ReLU(ds^l / dA^l), prefix keys dropped, on the layer's patch
    grid; several layers (a list): the mean of their E^l (then resize, min-max), as torchcam 0.5.0's LeGrad.
    ds/dA is computed here by the chain rule from what the capture fetches (``Capture.attention``):
    with V_h = X W^V_h + b^V_h (X the attention's value input) and O_h = A_h V_h merged by y = \sum_h O_h W^O_h + b,
    ds/dA_h = (ds/dy W^O_h^T) V_h^T. Options head: None, the model's last layer norm then its last linear /
    dense layer (torchvision's ViT: ``encoder.ln``, ``heads``; torchcam's default), or a list of layer names
    applied in order to the mean token; attention: None, the last multi-head attention module (nn.MultiheadAttention,
    keras MultiHeadAttention) that runs before the block's output, or its name. One class per sample; the
    block's output must be tokens (N, T, E) and the attention self-attention without added key/value tokens."""
    if x.targets.ndim == 2:
        raise XcamError("legrad explains one class per sample; call it once per class instead of classes=")
    got = x.attention
    kernel_v, kernel_o = got["value_kernel"], got["output_kernel"]   # (E_in, h, d), (h, d, E_out)
    heads, d = kernel_v.shape[1:]
    n, t = got["inputs"].shape[:2]
    values = matmul_inline(got["inputs"], kernel_v.reshape(len(kernel_v), heads * d)).reshape(n, t, heads, d) \
        + got["value_bias"]
    upstream = matmul_inline(got["output_gradients"], kernel_o.reshape(heads * d, -1).T).reshape(n, t, heads, d)
    ds_da = matmul_inline(upstream.transpose(0, 2, 1, 3), values.transpose(0, 2, 3, 1))   # (N, h, queries, keys)
    relevance = np.maximum(ds_da, 0).mean(axis=(1, 2))   # (N, T)
    grid = x.activations.shape[-x.rank:]
    prefix = relevance.shape[1] - int(np.prod(grid))
    if prefix < 0:
        raise XcamError(f"legrad's attention has {relevance.shape[1]} keys, fewer than the layer's "
                        f"{'x'.join(map(str, grid))} patch grid: give the block whose attention it is (options "
                        "attention=)")
    return relevance[:, prefix:].reshape(len(relevance), *grid).astype(np.float32)
