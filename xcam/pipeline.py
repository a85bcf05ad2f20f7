"""From captures to maps: weight, combine over channels, ReLU, resize, normalize; several layers fused; and
``explain``, the one body of ``xcam_torch.cam`` and ``xcam_tf.cam`` (it takes the adapter as an argument)."""

import numpy as np

from .contract import Adapter, Capture, spatial_size
from .errors import XcamError
from .maps import combine, finish, fuse
from .methods import MethodArgs, get_method, resolve_options
from .ops import relu


def method_args(capture: Capture, method, *, model_inputs=None, probe=None, options=None) -> MethodArgs:
    """What the method's formula sees; checks that the capture holds what the method needs."""
    m = get_method(method)
    if m.needs_gradients and capture.gradients is None:
        raise XcamError(f"method {m.name!r} needs gradients but the capture has none")
    if m.needs_head and capture.head_weights is None:
        raise XcamError(f"method {m.name!r} needs the weights of a final linear layer after global average pooling")
    if m.needs_probe and (probe is None or model_inputs is None):
        raise XcamError(f"method {m.name!r} runs the model again: call it through xcam_torch.cam or xcam_tf.cam")
    acts = _finite(capture.activations, "activations", capture.layer)
    if capture.targets.ndim == 2:  # several classes per sample: (N, K) targets, (N, K, C, h, w) gradients
        acts = acts[:, None]
    grads = None if capture.gradients is None or not m.needs_gradients else \
        _finite(capture.gradients, "gradients", capture.layer)
    return MethodArgs(acts, grads, capture.targets, capture.head_weights, capture.scores, model_inputs, probe,
                      resolve_options(m, options), capture.explained)


def _finite(values: np.ndarray, what: str, layer: str) -> np.ndarray:
    """``values`` as float32 if every entry is finite there, else a one-line XcamError naming what holds NaN or
    inf (float64 values beyond float32's range included)."""
    with np.errstate(over="ignore"):
        values = values.astype(np.float32, copy=False)
    if not np.isfinite(values).all():
        kind = "NaN" if np.isnan(values).any() else "infinite"
        where = f" of layer {layer!r}" if layer else ""
        raise XcamError(f"the {what}{where} hold {kind} values (in float32): a map needs finite activations and "
                        "gradients; check the model and inputs for overflow or a division by zero")
    return values


def raw_maps(capture: Capture, method="gradcam", *, model_inputs=None, probe=None, options=None) -> np.ndarray:
    """Un-normalized maps: (N, h, w) at the layer's resolution (pixel methods: the input's), or (N, K, ...)."""
    m = get_method(method)
    x = method_args(capture, m, model_inputs=model_inputs, probe=probe, options=options)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is caught below, as a non-finite map
        out = m.fn(x)
        maps = combine(out, x.activations) if m.kind == "weights" else out
    if capture.targets.ndim == 2 and maps.shape[1] == 1 and capture.targets.shape[1] > 1:
        maps = np.broadcast_to(maps, (maps.shape[0], capture.targets.shape[1], *maps.shape[2:]))
    if m.relu:
        maps = relu(maps)
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    if not np.isfinite(maps).all():
        raise XcamError(f"the {m.name} map of layer {capture.layer!r} overflows float32 (NaN or inf): the "
                        "activations or gradients are too large for this method")
    return maps


def compute_cam(capture: Capture, method="gradcam", size: tuple[int, int] | None = None, *, model_inputs=None,
                probe=None, options=None) -> np.ndarray:
    """Maps in [0, 1], float32: (N, H, W), or (N, K, H, W) when several classes were captured per sample.

    ``size=None`` keeps the layer's own resolution; otherwise maps are upsampled to ``size=(H, W)``.
    Order: weights -> \\sum_k -> ReLU (if the paper has one) -> bilinear resize -> per-map min-max.
    """
    return finish(raw_maps(capture, method, model_inputs=model_inputs, probe=probe, options=options), size)


def layer_maps(captures: list, method, size: tuple[int, int], *, model_inputs=None, probes=None, options=None):
    """Maps in [0, 1] for one layer's capture, or several layers' captures fused (``fuse``); ``probes`` has one
    adapter probe per capture for methods that run the model again."""
    probes = probes or [None] * len(captures)
    raws = [raw_maps(c, method, model_inputs=model_inputs, probe=p, options=options)
            for c, p in zip(captures, probes)]
    return finish(raws[0], size) if len(raws) == 1 else fuse(raws, size)


def cam_for(adapter: Adapter):
    """``cam(model, inputs, layer, method, targets, *, classes, size, labels, options)`` bound to one adapter:
    the public ``xcam_torch.cam`` and ``xcam_tf.cam`` (arguments as in ``explain``)."""
    layout = "(N, C, H, W)" if adapter.LAYOUT == "channels_first" else "(N, H, W, C)"

    def cam(model, inputs, layer, method="gradcam", targets=None, *, classes=None, size=None, labels=None,
            options=None, output=None) -> np.ndarray:
        return explain(adapter, model, inputs, layer, method, targets, classes=classes, size=size, labels=labels,
                       options=options, output=output)

    cam.__doc__ = (f"Class activation maps for a batch {layout}: float32 (N, H, W) in [0, 1], or (N, K, H, W) with "
                   f"``classes``.\n\n{explain.__doc__.split(chr(10), 2)[2]}")
    cam.__module__ = adapter.__name__
    return cam


def explain(adapter: Adapter, model, inputs, layer, method="gradcam", targets=None, *, classes=None, size=None,
            labels=None, options=None, output=None) -> np.ndarray:
    """Class activation maps for a batch: float32 (N, H, W) in [0, 1] (or (N, K, H, W) with ``classes``).

    inputs: a batch in the adapter's layout; layer: a name, path or layer object, or a list of them (maps
    fused as in LayerCAM); method: a name from ``xcam.methods()``; targets: what is explained: None for each
    sample's top-1 class, an int for all, one int per sample, a ``xcam.targets`` Target (Class, Binary,
    Regression, Segmentation, Boxes, Similarity, Custom), a spec string ("segmentation:15") or a callable;
    classes: several classes for every sample; size: (h, w) of the maps (default: the input's H, W; the
    layer's own size skips resampling); options: the method's options (see its docstring), e.g.
    {"weighting": "logit-softmax"} for scorecam; output: which model output the target sees (a dict key, a
    tuple index, a Keras output name, an attribute such as "logits", or a callable).
    """
    m = get_method(method)
    layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    caps = adapter.capture(model, inputs, layers, targets, classes=classes, gradients=m.needs_gradients,
                           head=m.needs_head, labels=labels, output=output)
    out_size = tuple(size) if size is not None else spatial_size(tuple(inputs.shape), adapter.LAYOUT)
    probes = [adapter.probe(model, inputs, one, output=output) for one in layers] if m.needs_probe else None
    model_inputs = probes[0].inputs if probes else None
    return layer_maps(caps, m, out_size, model_inputs=model_inputs, probes=probes, options=options)
