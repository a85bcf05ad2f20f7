"""The method registry: every CAM formula lives here, and the CLI, tests and README table read it.

A method turns a capture into per-channel weights (..., C) or element-wise gates (..., C, h, w); ``cam.py``
multiplies them with the activations, sums over channels, applies ReLU when the paper does, resizes and
normalizes. Arrays may carry an extra class axis: activations (N, 1, C, h, w) against gradients
(N, K, C, h, w), so every formula is written over the last three axes.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import XcamError, nearest


@dataclass(frozen=True)
class Inputs:
    """What a weight function sees (see module docstring for the shapes)."""

    activations: np.ndarray
    gradients: np.ndarray | None
    targets: np.ndarray
    head_weights: np.ndarray | None


WeightFn = Callable[[Inputs], np.ndarray]


@dataclass(frozen=True)
class Method:
    name: str
    weights: WeightFn
    title: str
    paper: str
    needs_gradients: bool = True
    needs_head: bool = False
    relu: bool = True


_REGISTRY: dict[str, Method] = {}


def register(name: str, *, title: str, paper: str, **options) -> Callable[[WeightFn], WeightFn]:
    """Add a method to the registry under ``name`` (lower case, one spelling)."""

    def add(fn: WeightFn) -> WeightFn:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered")
        _REGISTRY[name] = Method(name, fn, title, paper, **options)
        return fn

    return add


def methods() -> list[str]:
    """The names of every registered method, in registration order."""
    return list(_REGISTRY)


def get_method(method: "str | Method") -> Method:
    if isinstance(method, Method):
        return method
    try:
        return _REGISTRY[method]
    except KeyError:
        hint = nearest(str(method), _REGISTRY)
        also = f" (did you mean {', '.join(hint)}?)" if hint else ""
        raise XcamError(f"unknown method {method!r}{also}; valid methods: {', '.join(_REGISTRY)}") from None


@register("gradcam", title="Grad-CAM",
          paper="Selvaraju et al., Grad-CAM, ICCV 2017, arXiv:1610.02391")
def gradcam(x: Inputs) -> np.ndarray:
    r"""w_k^c = 1/(hw) \sum_ij dy^c/dA_k(i,j);  L^c = ReLU(\sum_k w_k^c A_k)."""
    return x.gradients.mean(axis=(-2, -1))


@register("layercam", title="LayerCAM",
          paper="Jiang et al., LayerCAM, IEEE TIP 2021, doi:10.1109/TIP.2021.3089943")
def layercam(x: Inputs) -> np.ndarray:
    r"""Element-wise gate w_k^c(i,j) = ReLU(dy^c/dA_k(i,j));  L^c = ReLU(\sum_k w_k^c(i,j) A_k(i,j))."""
    return np.maximum(x.gradients, 0)


@register("cam", title="CAM", needs_gradients=False, needs_head=True, relu=False,
          paper="Zhou et al., Learning Deep Features for Discriminative Localization, CVPR 2016, arXiv:1512.04150")
def cam(x: Inputs) -> np.ndarray:
    r"""w_k^c = W_{c,k}, the final linear layer's weight after global average pooling;
    L^c = \sum_k w_k^c A_k (no ReLU in the paper; min-max normalization keeps negative evidence lowest)."""
    return x.head_weights[x.targets]
