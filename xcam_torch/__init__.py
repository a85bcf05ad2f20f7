"""xcam for PyTorch: a thin adapter that hands the NumPy core activations, gradients and logits.

>>> maps = xcam_torch.cam(model, x, "features.10", method="gradcam", targets=[0, 1])  # (N, H, W) in [0, 1]
"""

import numpy as np

from xcam.cam import compute_cam
from xcam.methods import get_method

from ._capture import capture, resolve_module
from ._layers import layer_records

__all__ = ["cam", "capture", "layer_records", "resolve_module"]


def cam(model, inputs, layer, method="gradcam", targets=None, *, classes=None, size=None,
        labels=None) -> np.ndarray:
    """Class activation maps for a batch: float32 (N, H, W) in [0, 1] (or (N, K, H, W) with ``classes``).

    inputs: a (N, C, H, W) tensor; layer: a module name ("features.10") or the module; targets: None for
    each sample's top-1 class, an int for all, or one int per sample; classes: several classes for every
    sample; size: (h, w) of the maps (default: the input's H, W; the layer's own size skips resampling).
    """
    m = get_method(method)
    cap = capture(model, inputs, layer, targets, classes=classes, gradients=m.needs_gradients,
                  head=m.needs_head, labels=labels)
    return compute_cam(cap, m, size=tuple(size) if size is not None else tuple(np.shape(inputs)[-2:]))
