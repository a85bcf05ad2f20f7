"""The method registry: every CAM formula lives here, and the CLI, tests and README table read it.

Three kinds of method:
- "weights": per-channel weights (..., C) or element-wise gates (..., C, h, w); ``cam.py`` multiplies them
  with the activations, sums over channels, applies ReLU when the paper does, resizes and normalizes.
- "map": the raw map (..., h, w) itself (Eigen-CAM: a principal component is not a weighted sum).
- "pixel": a map at the input's resolution from gradients with respect to the input (saliency family).

Arrays may carry a class axis: activations (N, 1, C, h, w) against gradients (N, K, C, h, w), so every
formula works over the last three axes. Where papers and anchors differ, the paper is the default and the
variant is a named option (``options=``), documented in the method's docstring.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .errors import XcamError, nearest


@dataclass(frozen=True)
class Inputs:
    """What a method function sees (see the module docstring for shapes)."""

    activations: np.ndarray
    gradients: np.ndarray | None
    targets: np.ndarray                 # (N,) or (N, K)
    head_weights: np.ndarray | None = None
    scores: np.ndarray | None = None    # (N, classes) logits of the unmodified inputs
    inputs: np.ndarray | None = None    # (N, C_in, H, W) model inputs, channels first (perturbation methods)
    probe: object = None                # adapter callbacks for extra forwards (see xcam.probe.Probe)
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    name: str
    fn: Callable[[Inputs], np.ndarray]
    title: str
    paper: str
    kind: str = "weights"               # "weights" | "map" | "pixel"
    needs_gradients: bool = True
    needs_head: bool = False
    needs_forwards: bool = False        # extra batched forwards through the adapter's probe
    relu: bool = True
    options: dict = field(default_factory=dict)  # option name -> default

    @property
    def needs_probe(self) -> bool:
        """Whether the adapter must hand over a probe (extra forwards, or gradients at the input)."""
        return self.needs_forwards or self.kind == "pixel"


_REGISTRY: dict[str, Method] = {}


def register(name: str, *, title: str, paper: str, **meta) -> Callable:
    """Add a method to the registry under ``name`` (lower case, one spelling)."""

    def add(fn):
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered")
        _REGISTRY[name] = Method(name, fn, title, paper, **meta)
        return fn

    return add


def methods(kind: str | None = None) -> list[str]:
    """The names of the registered methods (of one kind, if given), in registration order."""
    return [n for n, m in _REGISTRY.items() if kind is None or m.kind == kind]


def get_method(method: "str | Method") -> Method:
    if isinstance(method, Method):
        return method
    try:
        return _REGISTRY[method]
    except KeyError:
        hint = nearest(str(method), _REGISTRY)
        also = f" (did you mean {', '.join(hint)}?)" if hint else ""
        raise XcamError(f"unknown method {method!r}{also}; valid methods: {', '.join(_REGISTRY)}") from None


def resolve_options(method: Method, options: dict | None) -> dict:
    """The method's options with defaults filled in; an unknown option or value is a one-line error."""
    given = dict(options or {})
    unknown = sorted(set(given) - set(method.options))
    if unknown:
        valid = ", ".join(method.options) or "none"
        raise XcamError(f"method {method.name!r} has no option {unknown[0]!r}; its options: {valid}")
    return {**method.options, **given}


def _choice(options: dict, name: str, valid: tuple) -> str:
    value = options[name]
    if value not in valid:
        raise XcamError(f"option {name}={value!r} is not valid; choose one of: {', '.join(valid)}")
    return value


# ------------------------------------------------------------------------------------------------ gradients


@register("gradcam", title="Grad-CAM", paper="Selvaraju et al., Grad-CAM, ICCV 2017, arXiv:1610.02391")
def gradcam(x: Inputs) -> np.ndarray:
    r"""w_k^c = 1/(hw) \sum_ij dy^c/dA_k(i,j);  L^c = ReLU(\sum_k w_k^c A_k)."""
    return x.gradients.mean(axis=(-2, -1))


@register("gradcampp", title="Grad-CAM++",
          paper="Chattopadhay et al., Grad-CAM++, WACV 2018, arXiv:1710.11063")
def gradcampp(x: Inputs) -> np.ndarray:
    r"""With g = dy^c/dA (exponential-score form, second-order terms of a piecewise-linear net vanishing):
    alpha_k(i,j) = g^2 / (2 g^2 + \sum_ab A_k(a,b) g^3),  w_k^c = \sum_ij alpha_k(i,j) ReLU(g_k(i,j)),
    L^c = ReLU(\sum_k w_k^c A_k). alpha = 0 where its denominator is 0 (no epsilon, unlike the anchors).
    """
    g = x.gradients
    g2 = g * g
    denom = 2 * g2 + x.activations.sum(axis=(-2, -1), keepdims=True) * g2 * g
    alpha = np.divide(g2, denom, out=np.zeros_like(g2), where=denom != 0)
    return (alpha * np.maximum(g, 0)).sum(axis=(-2, -1))


@register("xgradcam", title="XGrad-CAM",
          paper="Fu et al., Axiom-based Grad-CAM, BMVC 2020, arXiv:2008.02312")
def xgradcam(x: Inputs) -> np.ndarray:
    r"""w_k^c = \sum_ij (A_k(i,j) / \sum_ab A_k(a,b)) dy^c/dA_k(i,j) (0 where \sum A_k = 0);
    L^c = ReLU(\sum_k w_k^c A_k)."""
    a = x.activations
    total = a.sum(axis=(-2, -1), keepdims=True)
    share = np.divide(a, total, out=np.zeros_like(a), where=total != 0)
    return (share * x.gradients).sum(axis=(-2, -1))


@register("hirescam", title="HiResCAM",
          paper="Draelos & Carin, Use HiResCAM instead of Grad-CAM, arXiv:2011.08891")
def hirescam(x: Inputs) -> np.ndarray:
    r"""Element-wise gate w_k^c(i,j) = dy^c/dA_k(i,j) (no averaging);  L^c = ReLU(\sum_k dy^c/dA_k \odot A_k)."""
    return x.gradients


@register("layercam", title="LayerCAM",
          paper="Jiang et al., LayerCAM, IEEE TIP 2021, doi:10.1109/TIP.2021.3089943")
def layercam(x: Inputs) -> np.ndarray:
    r"""Element-wise gate w_k^c(i,j) = ReLU(dy^c/dA_k(i,j));  L^c = ReLU(\sum_k w_k^c(i,j) A_k(i,j)).
    Several layers: see ``xcam.cam.fuse`` (tanh(gamma * L / max L) per layer, element-wise maximum)."""
    return np.maximum(x.gradients, 0)


def _first_component(matrix: np.ndarray, reference: np.ndarray) -> np.ndarray:
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


@register("eigengradcam", title="EigenGrad-CAM", kind="map",
          paper="Muhammad & Yeasin, Eigen-CAM, IJCNN 2020, arXiv:2008.00299 (on gradient x activation, as in "
                "pytorch-grad-cam)")
def eigengradcam(x: Inputs) -> np.ndarray:
    r"""L^c = ReLU(first principal component of (dy^c/dA \odot A) over positions), sign fixed so that it
    correlates positively with \sum_k dy^c/dA_k \odot A_k."""
    prod = x.gradients * x.activations
    h, w = prod.shape[-2:]
    ref = prod.sum(axis=-3).reshape(*prod.shape[:-3], h * w)
    return _first_component(prod.reshape(*prod.shape[:-2], h * w), ref).reshape(*prod.shape[:-3], h, w)


# ------------------------------------------------------------------------------------------- gradient-free


@register("cam", title="CAM", needs_gradients=False, needs_head=True, relu=False,
          paper="Zhou et al., Learning Deep Features for Discriminative Localization, CVPR 2016, arXiv:1512.04150")
def cam(x: Inputs) -> np.ndarray:
    r"""w_k^c = W_{c,k}, the final linear layer's weight after global average pooling;
    L^c = \sum_k w_k^c A_k (no ReLU in the paper; min-max normalization keeps negative evidence lowest)."""
    return x.head_weights[x.targets]


@register("eigencam", title="Eigen-CAM", kind="map", needs_gradients=False,
          paper="Muhammad & Yeasin, Eigen-CAM, IJCNN 2020, arXiv:2008.00299")
def eigencam(x: Inputs) -> np.ndarray:
    r"""L = ReLU(projection of the centred activations (positions x channels) onto their first principal
    direction). The SVD's sign is arbitrary; it is fixed so that L correlates positively with \sum_k A_k
    (pytorch-grad-cam leaves it to chance, which can invert or zero the map). Class-independent."""
    a = x.activations
    h, w = a.shape[-2:]
    ref = a.sum(axis=-3).reshape(*a.shape[:-3], h * w)
    return _first_component(a.reshape(*a.shape[:-2], h * w), ref).reshape(*a.shape[:-3], h, w)


@register("scorecam", title="Score-CAM", needs_gradients=False, needs_forwards=True,
          options={"weighting": "probability", "batch_size": 64},
          paper="Wang et al., Score-CAM, CVPR Workshops 2020, arXiv:1910.01279")
def scorecam(x: Inputs) -> np.ndarray:
    r"""M_k = minmax(Up(A_k)) (bilinear to the input size), s_k^c = score of class c for X \odot M_k;
    L^c = ReLU(\sum_k w_k^c A_k).
    weighting="probability" (default, the authors' code): w_k^c = softmax(f(X \odot M_k))_c.
    weighting="logit-softmax" (pytorch-grad-cam, torch-cam): w^c = softmax over k of the logits f_c(X \odot M_k).
    Exact and cheaper: channels with the same mask (constant channels give the all-zero mask) share one
    forward. Forwards are batched (option batch_size)."""
    from .perturb import scorecam_weights

    mode = _choice(x.options, "weighting", ("probability", "logit-softmax"))
    return scorecam_weights(x, mode, int(x.options["batch_size"]))


@register("ablationcam", title="Ablation-CAM", needs_gradients=False, needs_forwards=True,
          options={"batch_size": 64},
          paper="Desai & Ramaswamy, Ablation-CAM, WACV 2020, doi:10.1109/WACV45572.2020.9093360")
def ablationcam(x: Inputs) -> np.ndarray:
    r"""y^c_k = score of class c with channel k of the layer set to 0; w_k^c = (y^c - y^c_k) / |y^c|;
    L^c = ReLU(\sum_k w_k^c A_k). The paper divides by y^c; |y^c| keeps the map's sign when y^c < 0 and is
    the same map otherwise. Exact and cheaper: an all-zero channel has w = 0 without a forward; the rest of
    the network runs on batches of ablated activations (option batch_size)."""
    from .perturb import ablation_weights

    return ablation_weights(x, int(x.options["batch_size"]))


# ---------------------------------------------------------------------------------------------- pixel space


@register("saliency", title="Saliency", kind="pixel", relu=False, needs_gradients=False,
          paper="Simonyan et al., Deep Inside Convolutional Networks, ICLR Workshop 2014, arXiv:1312.6034")
def saliency(x: Inputs) -> np.ndarray:
    r"""M(i,j) = max_c |dy^c/dx_c(i,j)| (the gradient of the logit with respect to the input)."""
    from .pixel import input_gradients

    return np.abs(input_gradients(x)).max(axis=-3)


@register("smoothgrad", title="SmoothGrad", kind="pixel", relu=False, needs_gradients=False,
          options={"samples": 25, "noise": 0.15, "seed": 0},
          paper="Smilkov et al., SmoothGrad, arXiv:1706.03825")
def smoothgrad(x: Inputs) -> np.ndarray:
    r"""M = max_c |1/n \sum_i dy^c/dx (x + e_i)|, e_i ~ N(0, sigma^2), sigma = noise * (max x - min x) per
    image; options samples (n = 25), noise (0.15) and seed (fixed: the same call gives the same map)."""
    from .pixel import smooth_gradients

    return np.abs(smooth_gradients(x)).max(axis=-3)


@register("guidedbackprop", title="Guided Backprop", kind="pixel", relu=False, needs_gradients=False,
          paper="Springenberg et al., Striving for Simplicity, ICLR Workshop 2015, arXiv:1412.6806")
def guidedbackprop(x: Inputs) -> np.ndarray:
    r"""Backward through every ReLU as g_in = g_out [x > 0] [g_out > 0];  M = max_c |g_in at the input|.
    The model is not modified: the adapter changes the ReLU backward only inside the call."""
    from .pixel import input_gradients

    return np.abs(input_gradients(x, guided=True)).max(axis=-3)


@register("guidedgradcam", title="Guided Grad-CAM", kind="pixel", relu=False,
          paper="Selvaraju et al., Grad-CAM, ICCV 2017, arXiv:1610.02391 (Sec. 3.1)")
def guidedgradcam(x: Inputs) -> np.ndarray:
    r"""G = guided backprop (C_in, H, W) \odot Up(Grad-CAM) (H, W);  M = max_c |G|."""
    from .pixel import guided_gradcam

    return np.abs(guided_gradcam(x)).max(axis=-3)
