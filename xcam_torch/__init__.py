"""xcam for PyTorch: a thin adapter that hands the NumPy core activations, gradients and logits.

>>> maps = xcam_torch.cam(model, x, "features.10", method="gradcam", targets=[0, 1])  # (N, H, W) in [0, 1]
"""

import numpy as np

from xcam.cam import layer_maps
from xcam.methods import get_method

from ._capture import as_batch, capture, resolve_module
from ._layers import layer_records
from ._probe import Probe, activation_gradient, kernels

__all__ = ["cam", "capture", "kernels", "layer_records", "resolve_module", "visualize_filters"]


def cam(model, inputs, layer, method="gradcam", targets=None, *, classes=None, size=None, labels=None,
        options=None) -> np.ndarray:
    """Class activation maps for a batch: float32 (N, H, W) in [0, 1] (or (N, K, H, W) with ``classes``).

    inputs: a (N, C, H, W) tensor; layer: a module name ("features.10") or the module, or a list of them
    (maps fused as in LayerCAM); method: a name from ``xcam.methods()``; targets: None for each sample's
    top-1 class, an int for all, or one int per sample; classes: several classes for every sample;
    size: (h, w) of the maps (default: the input's H, W; the layer's own size skips resampling);
    options: the method's options (see its docstring), e.g. {"weighting": "logit-softmax"} for scorecam.
    """
    m = get_method(method)
    x = as_batch(model, inputs)
    layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    caps = capture(model, x, layers, targets, classes=classes, gradients=m.needs_gradients, head=m.needs_head,
                   labels=labels)
    out_size = tuple(size) if size is not None else tuple(x.shape[-2:])
    probe_inputs = x.detach().float().cpu().numpy() if m.needs_probe else None
    probes = [Probe(model, resolve_module(model, one)[1], x) for one in layers] if m.needs_probe else None
    return layer_maps(caps, m, out_size, inputs=probe_inputs, probes=probes, options=options)


def visualize_filters(model, layer, channels, size=None, input_channels=3, steps=30, step_size=1.0,
                      seed=0) -> np.ndarray:
    """For each channel of ``layer``, the input that maximizes its mean activation, found by gradient ascent
    from seeded noise (``xcam.filters.ascend``); returned as float32 inputs (len(channels), C, H, W).
    Show them with ``xcam.filters.deprocess``. size: (H, W), default 128 x 128."""
    from xcam.filters import visualize

    size = tuple(size) if size is not None else (128, 128)
    return visualize(lambda x, c: activation_gradient(model, layer, x, c), channels, (input_channels, *size),
                     steps=steps, step_size=step_size, seed=seed)
