"""Gradient methods: channel weights or element-wise gates from d score / d activations."""

import numpy as np

from ..errors import XcamError
from ..maps import principal_map
from ..targets import Class, Finer
from .registry import MethodArgs, register


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


def legrad_score(tokens, head, target, params: dict, ops):
    r"""LeGrad's layer-specific score, on framework tensors (the adapter runs it inside its autograd):
    s^l = target(head(mean_t z^l)), z^l (N, T, E) the block's output tokens averaged over every token (prefix
    tokens included, as torchcam and the paper's code), ``head`` the adapter's callable for the model's final
    norm and classifier (``options["head"]``)."""
    return target.score(head(ops.mean(tokens, 1)), params, ops)


@register("legrad", title="LeGrad", kind="map", needs_gradients=False, needs_attention=True, fuse="mean",
          options={"head": None, "attention": None},
          paper="Bousselham et al., LeGrad: An Explainability Method for Vision Transformers via Feature Formation "
                "Sensitivity, arXiv:2404.03214")
def legrad(x: MethodArgs) -> np.ndarray:
    r"""For a transformer block l (the layer: its output tokens z^l (N, T, E)) and its self-attention's
    post-softmax probabilities A^l (N, heads, T, T): s^l = the target's score of head(mean_t z^l)
    (``legrad_score``), E^l = mean_{heads, queries} ReLU(ds^l / dA^l), prefix keys dropped, on the layer's patch
    grid; several layers (a list): the mean of their E^l (then resize, min-max), as torchcam 0.5.0's LeGrad.
    ds/dA is computed here by the chain rule from what the adapter fetches (``Probe.attention_gradients``):
    with V_h = X W^V_h + b^V_h (X the attention's value input) and O_h = A_h V_h merged by y = \sum_h O_h W^O_h + b,
    ds/dA_h = (ds/dy W^O_h^T) V_h^T. Options head: None, the model's last layer norm then its last linear /
    dense layer (torchvision's ViT: ``encoder.ln``, ``heads``; torchcam's default), or a list of layer names
    applied in order to the mean token; attention: None, the last multi-head attention module (nn.MultiheadAttention,
    keras MultiHeadAttention) that runs before the block's output, or its name. One class per sample; the
    block's output must be tokens (N, T, E) and the attention self-attention without added key/value tokens."""
    if x.targets.ndim == 2:
        raise XcamError("legrad explains one class per sample; call it once per class instead of classes=")
    got = x.probe.attention_gradients(x.target, head=x.options["head"], attention=x.options["attention"])
    values = np.einsum("nte,ehd->nthd", got["inputs"], got["value_kernel"]) + got["value_bias"]
    upstream = np.einsum("nqe,hde->nqhd", got["output_gradients"], got["output_kernel"])
    relevance = np.maximum(np.einsum("nqhd,nkhd->nhqk", upstream, values), 0).mean(axis=(1, 2))   # (N, T)
    grid = x.activations.shape[-x.rank:]
    prefix = relevance.shape[1] - int(np.prod(grid))
    if prefix < 0:
        raise XcamError(f"legrad's attention has {relevance.shape[1]} keys, fewer than the layer's "
                        f"{'x'.join(map(str, grid))} patch grid: give the block whose attention it is (options "
                        "attention=)")
    return relevance[:, prefix:].reshape(len(relevance), *grid).astype(np.float32)
