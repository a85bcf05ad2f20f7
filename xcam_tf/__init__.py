"""xcam for TensorFlow/Keras 3: a thin adapter that hands the NumPy core activations, gradients and logits.

>>> maps = xcam_tf.cam(model, x, "block5_conv3", method="gradcam", targets=[0, 1])  # (N, H, W) in [0, 1]
"""

import numpy as np

from xcam.cam import finish, fuse, raw_maps
from xcam.methods import get_method

from ._capture import as_batch, capture, resolve_layer
from ._layers import layer_records
from ._probe import Probe

__all__ = ["cam", "capture", "layer_records", "resolve_layer"]


def cam(model, inputs, layer, method="gradcam", targets=None, *, classes=None, size=None, labels=None,
        options=None) -> np.ndarray:
    """Class activation maps for a batch: float32 (N, H, W) in [0, 1] (or (N, K, H, W) with ``classes``).

    inputs: a (N, H, W, C) array or tensor; layer: a name ("block5_conv3"), a path into a nested model
    ("vgg16/block5_conv3") or the layer, or a list of them (maps fused as in LayerCAM); method: a name from
    ``xcam.methods()``; targets: None for each sample's top-1 class, an int for all, or one int per sample;
    classes: several classes for every sample; size: (h, w) of the maps (default: the input's H, W; the
    layer's own size skips resampling); options: the method's options. A final softmax is skipped: the
    logits are differentiated.
    """
    m = get_method(method)
    x = as_batch(inputs)
    layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    caps = capture(model, x, layers, targets, classes=classes, gradients=m.needs_gradients, head=m.needs_head,
                   labels=labels)
    out_size = tuple(size) if size is not None else tuple(x.shape[1:3])
    x_np = x.numpy()
    probe_inputs = np.moveaxis(x_np, -1, 1) if m.needs_probe else None
    raws = []
    for one, cap in zip(layers, caps):
        probe = Probe(model, resolve_layer(model, one)[1], x_np) if m.needs_probe else None
        raws.append(raw_maps(cap, m, inputs=probe_inputs, probe=probe, options=options))
    if len(raws) == 1:
        return finish(raws[0], out_size)
    return fuse(raws, out_size)
