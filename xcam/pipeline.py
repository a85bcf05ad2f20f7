"""From captures to maps: weight, combine over channels, ReLU, resize, normalize; several layers fused; and
``explain``, the one body of ``xcam_torch.cam`` and ``xcam_tf.cam`` (it takes the adapter as an argument)."""

import numpy as np

from .contract import Adapter, Capture, spatial_size
from .errors import XcamError
from .inputs import POSITIONAL, SINGLE, entries, image_keys, lookup
from .layer_outputs import check_choice
from .layers import check_call, default_layer_name
from .maps import combine, finish, fuse, principal_map
from .methods import MethodArgs, get_method, method_names, reduce_channels, resolve_options
from .ops import check_size, relu, resize
from .targets import TOP1, Class, as_target


def method_args(capture: Capture, method, *, model_inputs=None, probe=None, options=None,
                batch_size=None) -> MethodArgs:
    """What the method's formula sees; checks that the capture holds what the method needs."""
    m = get_method(method)
    if m.needs_gradients and capture.gradients is None:
        raise XcamError(f"method {m.name!r} needs gradients but the capture has none")
    if m.needs_hvp and capture.hvp is None:
        raise XcamError(f"method {m.name!r} needs the Hessian-vector product but the capture has none (hvp=True)")
    if m.needs_attention and capture.attention is None and capture.targets.ndim == 1:
        raise XcamError(f"method {m.name!r} needs the attention arrays of a transformer block but the capture has "
                        "none (attention=the method's options)")
    if m.needs_head and capture.head_weights is None:
        raise XcamError(f"method {m.name!r} needs the weights of a final linear layer after global average pooling")
    if m.needs_probe and (probe is None or model_inputs is None):
        raise XcamError(f"method {m.name!r} runs the model again: call it through xcam_torch.cam or xcam_tf.cam")
    acts = _finite(capture.activations, "activations", capture.layer)
    if capture.targets.ndim == 2:  # several classes per sample: (N, K) targets, (N, K, C, *s) gradients
        acts = acts[:, None]
    grads = None if capture.gradients is None or not m.needs_gradients else \
        _finite(capture.gradients, "gradients", capture.layer)
    hvp = _finite(capture.hvp, "Hessian-vector products", capture.layer) if m.needs_hvp else None
    return MethodArgs(acts, grads, capture.targets, capture.head_weights, capture.scores, model_inputs, probe,
                      resolve_options(m, options), target=capture.explained, rank=capture.rank,
                      batch_size=batch_size, hvp=hvp, attention=capture.attention if m.needs_attention else None)


def capture_asks(m, options=None) -> dict:
    """What a method asks the capture beyond activations and gradients (only those keywords, so other adapters
    need not take them): ``hvp=True`` (Hessian-vector products), ``attention=`` its options "head" and
    "attention" (LeGrad's arrays)."""
    asks = {"hvp": True} if m.needs_hvp else {}
    if m.needs_attention:
        resolved = resolve_options(m, options)
        asks["attention"] = {"head": resolved["head"], "attention": resolved["attention"]}
    return asks


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


def eigen_smooth(m, x) -> np.ndarray:
    """pytorch-grad-cam's eigen_smooth: the first principal component (over positions) of the weighted
    activations w_k A_k (element-wise gates: w_k(p) A_k(p); "map" methods: their own ``weighted``), signed to
    correlate with their channel sum, the un-smoothed map (as ``xcam.maps.principal_map``)."""
    if m.kind == "weights":
        w = m.fn(x)
        if w.ndim == x.activations.ndim - x.rank:
            w = w.reshape(*w.shape, *(1,) * x.rank)
        return principal_map(w * x.activations, x.rank)
    if m.weighted is None:
        raise XcamError(f"method {m.name!r} has no weighted activations to smooth: eigen_smooth works with "
                        "channel-weight and gate methods, and maps that declare theirs")
    return principal_map(m.weighted(x), x.rank)


def raw_maps(capture: Capture, method="gradcam", *, model_inputs=None, probe=None, options=None,
             batch_size=None) -> np.ndarray:
    """Un-normalized maps: (N, *s) at the layer's resolution (pixel methods: the input's, the attribution
    reduced over channels by the method's ``reduce``), or (N, K, ...)."""
    m = get_method(method)
    x = method_args(capture, m, model_inputs=model_inputs, probe=probe, options=options, batch_size=batch_size)
    if x.options.get("aug_smooth"):
        raise XcamError("aug_smooth runs the model on flipped and scaled inputs: call it through xcam_torch.cam "
                        "or xcam_tf.cam, not on a capture")
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is caught below, as a non-finite map
        if x.options.get("eigen_smooth"):
            maps = eigen_smooth(m, x)
        else:
            out = m.fn(x)
            if m.kind == "weights":
                maps = combine(out, x.activations, x.rank)
            elif m.kind == "pixel":
                maps = reduce_channels(out, m.reduce, x.input_rank)
            else:
                maps = out
    if capture.targets.ndim == 2 and maps.shape[1] == 1 and capture.targets.shape[1] > 1:
        maps = np.broadcast_to(maps, (maps.shape[0], capture.targets.shape[1], *maps.shape[2:]))
    if m.relu:
        maps = relu(maps)
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    if not np.isfinite(maps).all():
        raise XcamError(f"the {m.name} map of layer {capture.layer!r} overflows float32 (NaN or inf): the "
                        "activations or gradients are too large for this method")
    return maps


def map_rank(capture: Capture, method, model_inputs=None) -> int:
    """The spatial rank of a method's maps: the layer's, or the input's for pixel methods."""
    if get_method(method).kind == "pixel" and model_inputs is not None:
        return model_inputs.ndim - 2
    return capture.rank


def compute_cam(capture: Capture, method="gradcam", size: tuple | None = None, *, model_inputs=None,
                probe=None, options=None, batch_size=None) -> np.ndarray:
    """Maps in [0, 1], float32: (N, *S), or (N, K, *S) when several classes were captured per sample.

    ``size=None`` keeps the layer's own resolution; otherwise maps are resampled to ``size`` ((L,), (H, W) or
    (D, H, W): as many numbers as the maps' rank). Order: weights -> \\sum_k -> ReLU (if the paper has one) ->
    linear / bilinear / trilinear resize -> min-max per map over its whole signal, image or volume.
    """
    rank = map_rank(capture, method, model_inputs)
    if size is not None:
        size = check_size(size, rank)
    maps = raw_maps(capture, method, model_inputs=model_inputs, probe=probe, options=options, batch_size=batch_size)
    return finish(maps, size, rank)


def layer_maps(captures: list, method, size: tuple, *, model_inputs=None, probes=None, options=None,
               batch_size=None):
    """Maps in [0, 1] for one layer's capture, or several layers' captures fused (``fuse``); ``probes`` has one
    adapter probe per capture for methods that run the model again."""
    probes = probes or [None] * len(captures)
    ranks = {map_rank(c, method, model_inputs) for c in captures}
    if len(ranks) > 1:
        raise XcamError(f"the layers give maps of different ranks ({sorted(ranks)}); fuse layers of one rank")
    rank = ranks.pop()
    size = check_size(size, rank)
    raws = [raw_maps(c, method, model_inputs=model_inputs, probe=p, options=options, batch_size=batch_size)
            for c, p in zip(captures, probes)]
    m = get_method(method)
    if m.fuse is not None:  # the method fuses its layers itself (refinecam)
        return m.fuse(raws, size, resolve_options(m, options))
    return finish(raws[0], size, rank) if len(raws) == 1 else fuse(raws, size)


def default_size(captures: list, method, input_size: tuple, model_inputs=None) -> tuple:
    """The maps' size when the caller gives none: the input's spatial size when the maps have the input's
    rank, else the (first) layer's own size."""
    rank = map_rank(captures[0], method, model_inputs)
    if rank == len(input_size):
        return tuple(input_size)
    return tuple(captures[0].activations.shape[2:])


def cam_for(adapter: Adapter):
    """``cam(model, inputs, layer, method, targets, *, classes, size, labels, options)`` bound to one adapter:
    the public ``xcam_torch.cam`` and ``xcam_tf.cam`` (arguments as in ``explain``)."""
    layout = "(N, C, *S)" if adapter.LAYOUT == "channels_first" else "(N, *S, C)"

    def cam(model, inputs, layer=None, method="gradcam", targets=None, *, classes=None, size=None, labels=None,
            options=None, output=None, reshape=None, call=None, batch_size=None, layer_output=None) -> np.ndarray:
        return explain(adapter, model, inputs, layer, method, targets, classes=classes, size=size, labels=labels,
                       options=options, output=output, reshape=reshape, call=call, batch_size=batch_size,
                       layer_output=layer_output)

    cam.__doc__ = (f"Class activation maps for a batch {layout}: float32 (N, *S) in [0, 1], or (N, K, *S) with "
                   f"``classes``.\n\n{explain.__doc__.split(chr(10) * 2, 1)[1]}")
    cam.__module__ = adapter.__name__
    return cam


def explain(adapter: Adapter, model, inputs, layer=None, method="gradcam", targets=None, *, classes=None, size=None,
            labels=None, options=None, output=None, reshape=None, call=None, batch_size=None,
            layer_output=None) -> np.ndarray:
    """Class activation maps for a batch: float32 (N, *S) in [0, 1] (or (N, K, *S) with ``classes``), S of the
    layer's spatial rank: (L,) for signals, (H, W) for images, (D, H, W) for volumes and clips.

    inputs: a batch in the adapter's layout, or several inputs: a tuple or list (positional arguments of the model)
    or a dict (keyword arguments; a Keras model's named inputs), batch first; layer: a name, path or layer object,
    or a list of them (maps fused as in LayerCAM), or None: the layer the CLI picks (``xcam.layers.default_layer``,
    the last spatial layer that is not pooling; the capture's ``layer`` names it); method: a name from
    ``xcam.methods()``; targets: what is explained: None for each sample's top-1 class, an int for all, one int per
    sample, a ``xcam.targets`` Target (Class, Binary, Regression, Segmentation, Boxes, Similarity, Custom), a spec
    string ("segmentation:15") or a callable; classes: several classes for every sample; size: the maps' size, one
    number per spatial axis (default: the input's; the layer's own size skips resampling; a wrong count or a
    non-positive size is a one-line error naming the rank); options: the method's options (see its docstring), e.g.
    {"weighting": "logit-softmax"} for scorecam; output: which model output the target sees (a dict key, a tuple
    index, a Keras output name, an attribute such as "logits", or a callable); reshape: overrides the layer's
    detected layout (``xcam.layouts``): a callable (N, ...) -> (N, C, *s) (PyTorch: on tensors, as
    pytorch-grad-cam's ``reshape_transform``; Keras: on NumPy arrays), a Layout, or a layout name; call: for a layer
    that runs several times in one forward (one encoder applied to two images: a siamese network), which call to
    explain, counted from 0 in the order the forward runs them; gradients and activations are that call's, the maps
    take the size of the first image-like input (give ``size`` when the branches differ); without it such a layer is
    a one-line error saying how often it runs; layer_output: for a layer that returns a tuple, dict or dataclass
    (a Hugging Face Swin stage, ``BaseModelOutput``), which tensor is explained, by index or name (default: the
    first of a spatial rank, ``xcam.layer_outputs``).

    Several inputs: the layer may lie on any branch; its maps take the size of the first image-like input
    (3-D to 5-D) of their rank. Pixel methods give one map per image-like input (a tuple for positional,
    a dict for keyword inputs; one array when there is one), SmoothGrad adds noise only to the input it
    explains, and Score-CAM masks the first image-like input; every other input is held fixed.

    Pixel methods (``xcam.methods("pixel")``) take ``layer=None`` (Guided Grad-CAM then uses the default layer,
    the last with a spatial output); their map is the signed attribution (``attribute``) reduced over the
    input channels as the method documents (``Method.reduce``). batch_size: rows per model call for the
    forwards and input gradients a method asks (default ``xcam.methods.registry.DEFAULT_BATCH``).
    """
    m = get_method(method)
    if m.kind != "pixel" and resolve_options(m, options)["aug_smooth"]:
        return aug_smoothed(adapter, model, inputs, layer, m, targets, classes=classes, size=size, labels=labels,
                            options=options, output=output, reshape=reshape, call=call, batch_size=batch_size)
    kind, _ = entries(inputs)
    extra = _extra(reshape, call, layer_output)
    keys = image_keys(inputs)
    if _capture_free(m, inputs, layer, targets, classes):  # pixel methods that ask input gradients only
        _check_layers(adapter, model, inputs, layer, output, extra)
        signed = _attributions(adapter, model, inputs, m, targets, classes, labels, output, extra, options,
                               batch_size)
        maps = {key: _pixel_maps(m, a, size, rank) for key, (a, rank) in signed.items()}
        return _per_input(maps, kind)
    layer = _layer_or_default(adapter, model, inputs, layer)
    layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    sizes = {k: spatial_size(tuple(np.shape(lookup(inputs, k))), adapter.LAYOUT) for k in keys}
    explained = keys if m.kind == "pixel" and kind != SINGLE and keys else keys[:1] or [None]
    if m.explains is not None:  # the method explains a score of its own built from the user's target
        targets, classes = m.explains(as_target(targets, classes), resolve_options(m, options)), None
    caps = adapter.capture(model, inputs, layers, targets, classes=classes, gradients=m.needs_gradients,
                           head=m.needs_head, labels=labels, output=output, **capture_asks(m, options), **extra)
    maps = {}
    for key in explained:
        which = {} if kind == SINGLE else {"key": key}
        probes = [adapter.probe(model, inputs, one, output=output, **extra, **which) for one in layers] \
            if m.needs_probe else None
        model_inputs = probes[0].inputs if probes else None
        out_size = size if size is not None else default_size(caps, m, sizes.get(key, ()), model_inputs)
        maps[key] = layer_maps(caps, m, out_size, model_inputs=model_inputs, probes=probes, options=options,
                               batch_size=batch_size)
    if len(explained) == 1:
        return maps[explained[0]]
    return tuple(maps.values()) if kind == POSITIONAL else maps


def _layer_or_default(adapter: Adapter, model, inputs, layer):
    """The layer to capture: the given one, else the CLI's default layer (``xcam.layers.default_layer_name``: the
    last with a spatial output; for pixel methods the capture only supplies the scores, the resolved targets and
    Guided Grad-CAM's map)."""
    if layer is not None:
        return layer
    kind, _ = entries(inputs)
    return default_layer_name(adapter.layer_records, model, tuple(np.shape(inputs))[1:] if kind == SINGLE else None)


def attribute_for(adapter: Adapter):
    """``attribute(model, inputs, method, targets, *, options, output, classes, batch_size, layer)`` bound to one
    adapter: the public ``xcam_torch.attribute`` and ``xcam_tf.attribute`` (see ``attribute``)."""
    layout = "(N, C, *S)" if adapter.LAYOUT == "channels_first" else "(N, *S, C)"

    def bound(model, inputs, method, targets=None, *, options=None, output=None, classes=None, batch_size=None,
              layer=None, reshape=None, call=None, layer_output=None):
        return attribute(adapter, model, inputs, method, targets, options=options, output=output, classes=classes,
                         batch_size=batch_size, layer=layer, reshape=reshape, call=call, layer_output=layer_output)

    bound.__doc__ = (f"Signed input attributions for a batch {layout}: float32 in the input's shape, or (N, K, ...) "
                     f"with ``classes``.\n\n{attribute.__doc__.split(chr(10) * 2, 1)[1]}")
    bound.__name__ = "attribute"
    bound.__module__ = adapter.__name__
    return bound


def attribute(adapter: Adapter, model, inputs, method, targets=None, *, options=None, output=None, classes=None,
              batch_size=None, layer=None, reshape=None, call=None, layer_output=None):
    """Signed input attributions, float32, in the input's own layout and shape (PyTorch (N, C, *S), Keras
    (N, *S, C); (N, K, ...) with ``classes``), not normalized: what captum's ``attribute`` and xplique's
    ``explain`` return.

    method: a pixel method (``xcam.methods("pixel")``); a CAM (layer) method is a one-line error naming ``cam()``.
    targets, classes, options, output: as in ``cam``; batch_size: rows per model call for the forwards and input
    gradients the method asks (the core batches; default ``xcam.methods.registry.DEFAULT_BATCH``); layer: only
    for methods that use one (Guided Grad-CAM; default: the last layer with a spatial output); reshape, call,
    layer_output: as in ``cam``. Several inputs:
    one attribution per image-like input (a tuple for positional, a dict for keyword inputs), the others held
    fixed.
    """
    m = get_method(method)
    if m.kind != "pixel":
        raise XcamError(f"method {m.name!r} is a CAM (layer) method: its maps come from "
                        f"cam(model, inputs, layer, {m.name!r}); attribute() takes pixel methods: "
                        f"{', '.join(method_names('pixel'))}")
    extra = _extra(reshape, call, layer_output)
    kind, _ = entries(inputs)
    if _capture_free(m, inputs, layer, targets, classes):  # no layer capture, no default-layer search
        _check_layers(adapter, model, inputs, layer, output, extra)
        signed = _attributions(adapter, model, inputs, m, targets, classes, None, output, extra, options,
                               batch_size)
        return _per_input({key: _framework_layout(adapter, a, rank) for key, (a, rank) in signed.items()}, kind)
    layer = _layer_or_default(adapter, model, inputs, layer)
    keys = image_keys(inputs)
    explained = keys if kind != SINGLE and keys else keys[:1] or [None]
    cap = _one(adapter.capture(model, inputs, layer, targets, classes=classes, gradients=m.needs_gradients,
                               head=m.needs_head, output=output, **capture_asks(m, options), **extra))
    out = {}
    for key in explained:
        which = {} if kind == SINGLE else {"key": key}
        probe = adapter.probe(model, inputs, layer, output=output, **extra, **which)
        x = method_args(cap, m, model_inputs=probe.inputs, probe=probe, options=options, batch_size=batch_size)
        with np.errstate(over="ignore", invalid="ignore"):
            signed = np.asarray(m.fn(x), dtype=np.float32)
        if not np.isfinite(signed).all():
            raise XcamError(f"the {m.name} attribution overflows float32 (NaN or inf)")
        if adapter.LAYOUT != "channels_first":
            signed = np.moveaxis(signed, -(probe.inputs.ndim - 1), -1)
        out[key] = np.ascontiguousarray(signed)
    if len(explained) == 1:
        return out[explained[0]]
    return tuple(out.values()) if kind == POSITIONAL else out


def _capture_free(m, inputs, layer, targets, classes) -> bool:
    """Whether a pixel method runs without a layer capture: it asks the probe for input gradients only
    (``Method.needs_capture`` False; such a method uses no layer, so a layer given is only checked to exist,
    ``_check_layers``), the target is a class (``Class``) and there is an image-like input to explain."""
    if m.kind != "pixel" or m.needs_capture or not image_keys(inputs):
        return False
    return isinstance(as_target(targets, classes), Class)


def _check_layers(adapter: Adapter, model, inputs, layer, output, extra) -> None:
    """A layer given to a method that does not use it (``_capture_free``) must still name a layer of the model:
    the adapter's probe resolves it (a one-line error with the nearest names), no forward runs."""
    for one in () if layer is None else layer if isinstance(layer, (list, tuple)) else [layer]:
        adapter.probe(model, inputs, one, output=output, **extra)


def _class_target(probe, m, targets, classes, labels):
    """The class target for a capture-free pixel method. Classes given: fixed as they are (no forward). A
    top-1 class (None): for methods whose gradients are taken at the inputs (``Method.at_inputs``) it stays
    as it is (the gradient's own forward picks it: each row is its input); otherwise one forward of the inputs
    fixes it (noisy copies and path points must explain the input's class, not their own). The probe checks
    the target on every output it differentiates (range, logits)."""
    target = as_target(targets, classes)
    n = len(probe.inputs)
    wanted = target.class_indices(n)  # a per-sample argument of the wrong length fails before any forward
    if not (wanted == TOP1).any():
        return Class(wanted, target.space)
    if m.at_inputs:
        return target
    out = probe.predict(probe.inputs)
    target.check(out, labels)
    return target.resolve(out)


def _attributions(adapter: Adapter, model, inputs, m, targets, classes, labels, output, extra, options,
                  batch_size) -> dict:
    """{input key: (signed attribution float32 channels first, spatial rank)} for a capture-free pixel
    method: one probe per explained input, no layer (``_capture_free``)."""
    kind, _ = entries(inputs)
    keys = image_keys(inputs)
    explained = keys if kind != SINGLE else keys[:1]
    target, out = None, {}
    for key in explained:
        which = {} if kind == SINGLE else {"key": key}
        probe = adapter.probe(model, inputs, None, output=output, **extra, **which)
        if target is None:
            target = _class_target(probe, m, targets, classes, labels)
        n = len(probe.inputs)
        x = MethodArgs(None, None, target.class_indices(n), model_inputs=probe.inputs, probe=probe,
                       options=resolve_options(m, options), target=target, rank=probe.inputs.ndim - 2,
                       batch_size=batch_size)
        with np.errstate(over="ignore", invalid="ignore"):
            signed = np.asarray(m.fn(x), dtype=np.float32)
        if not np.isfinite(signed).all():
            raise XcamError(f"the {m.name} attribution overflows float32 (NaN or inf)")
        out[key] = (signed, x.input_rank)
    return out


def _pixel_maps(m, signed: np.ndarray, size, rank: int) -> np.ndarray:
    """cam()'s maps from a signed attribution (..., C_in, *S): reduced over C_in (``Method.reduce``), ReLU if
    the method has one, resampled to ``size`` (default the input's) and min-max normalized (``finish``)."""
    size = tuple(signed.shape[-rank:]) if size is None else check_size(size, rank)
    with np.errstate(over="ignore", invalid="ignore"):
        maps = reduce_channels(signed, m.reduce, rank)
    if m.relu:
        maps = relu(maps)
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    if not np.isfinite(maps).all():
        raise XcamError(f"the {m.name} map overflows float32 (NaN or inf)")
    return finish(maps, size, rank)


def _framework_layout(adapter: Adapter, signed: np.ndarray, rank: int) -> np.ndarray:
    """A channels-first attribution in the adapter's layout (Keras: channels last), contiguous."""
    if adapter.LAYOUT != "channels_first":
        signed = np.moveaxis(signed, -(rank + 1), -1)
    return np.ascontiguousarray(signed)


def _per_input(out: dict, kind: str):
    """One array for one explained input, else a tuple (positional inputs) or a dict (keyword inputs)."""
    if len(out) == 1:
        return next(iter(out.values()))
    return tuple(out.values()) if kind == POSITIONAL else out


def _one(capture):
    """The single Capture of a one-layer capture (adapters return a Capture or a list of one)."""
    return capture[0] if isinstance(capture, list) else capture


AUG_FLIPS = (False, True)       # aug_smooth: horizontal flip off / on (ttach's HorizontalFlip)
AUG_FACTORS = (0.9, 1.0, 1.1)   # aug_smooth: intensity factors (ttach's Multiply, pytorch-grad-cam's default)


def augmentations(scales=(1.0,)) -> list:
    """aug_smooth's (flip, factor, scale) triples in ttach's order (flip outermost), pytorch-grad-cam 1.5.7's
    default set HorizontalFlip x Multiply(0.9, 1, 1.1) times the geometric ``scales`` (default: 1 only)."""
    return [(f, m, s) for f in AUG_FLIPS for m in AUG_FACTORS for s in scales]


def augment(inputs: np.ndarray, flip: bool, factor: float, scale: float) -> np.ndarray:
    """One augmented copy of a batch (N, C, *S) (channels first): flipped along its last axis (width), times
    ``factor``, resized (linear / bilinear / trilinear) to int(S * scale) when ``scale`` != 1."""
    x = inputs[..., ::-1] if flip else inputs
    x = x * np.float32(factor) if factor != 1 else x
    if scale != 1:
        n, c, *spatial = x.shape
        new = tuple(int(s * scale) for s in spatial)
        x = resize(x.reshape(n * c, *spatial), new).reshape(n, c, *new)
    return np.ascontiguousarray(x, dtype=np.float32)


def deaugment(maps: np.ndarray, flip: bool) -> np.ndarray:
    """A map made on an augmented copy, back in the original's geometry: flipped back along its last axis (the
    scale is undone when the map is resampled to the original's size)."""
    return maps[..., ::-1] if flip else maps


def _aug_scales(options: dict) -> tuple:
    scales = options["aug_scales"]
    if isinstance(scales, (int, float)) and not isinstance(scales, bool):
        scales = (scales,)
    try:
        scales = tuple(float(s) for s in scales)
    except (TypeError, ValueError):
        scales = ()
    if not scales or any(not s > 0 for s in scales):
        raise XcamError(f"option aug_scales={options['aug_scales']!r} is not valid; give positive scale factors, "
                        "e.g. (1.0, 1.1)")
    return scales


def aug_smoothed(adapter: Adapter, model, inputs, layer, m, targets=None, *, classes=None, size=None, labels=None,
                 options=None, output=None, reshape=None, call=None, batch_size=None) -> np.ndarray:
    """``options={"aug_smooth": True}``: the mean of the maps of augmented copies of the inputs, each mapped back
    to the original geometry, then min-max normalized (pytorch-grad-cam's aug_smooth leaves the mean as it is).
    The copies are pytorch-grad-cam 1.5.7's (ttach): horizontal flip {off, on} x intensity factor {0.9, 1, 1.1};
    ``aug_scales`` adds geometric scales (the input resized by each, its map resampled to the original size).
    Each copy's map is the method's map in [0, 1] at the original size (``explain``), flipped back. A class
    target left to the model (None: each sample's top-1) is resolved once on the original inputs (one extra
    forward) and explained in every copy (pytorch-grad-cam re-picks the top-1 class per copy); other targets are
    given to every copy as they are. One batch of images, signals or volumes (not several inputs)."""
    opts = resolve_options(m, options)
    scales = _aug_scales(opts)
    kind, _ = entries(inputs)
    if kind != SINGLE:
        raise XcamError("aug_smooth flips one batch of inputs; with several inputs (a tuple, list or dict) call "
                        "cam without it")
    layer = _layer_or_default(adapter, model, inputs, layer)
    first = layer[0] if isinstance(layer, (list, tuple)) else layer
    extra = {} if reshape is None else {"reshape": reshape}
    if check_call(call) is not None:
        extra["call"] = check_call(call)
    x = adapter.probe(model, inputs, first, output=output, **extra).inputs               # (N, C, *S) NumPy
    out_size = tuple(size) if size is not None else tuple(x.shape[2:])
    target = as_target(targets, classes)
    if isinstance(target, Class) and (target.class_indices(len(x)) == TOP1).any():
        target = adapter.capture(model, inputs, first, target, gradients=False, labels=labels, output=output,
                                 **extra).explained
    inner = {**(options or {}), "aug_smooth": False, "aug_scales": (1.0,)}
    maps = []
    for flip, factor, scale in augmentations(scales):
        copy = augment(x, flip, factor, scale)
        if adapter.LAYOUT != "channels_first":
            copy = np.ascontiguousarray(np.moveaxis(copy, 1, -1))
        one = explain(adapter, model, copy, layer, m, target, size=out_size, labels=labels, options=inner,
                      output=output, reshape=reshape, call=call, batch_size=batch_size)
        maps.append(deaugment(one, flip))
    return finish(np.mean(np.float32(maps), axis=0), None, len(out_size))

def _extra(reshape, call, layer_output) -> dict:
    """The keywords capture and probe take for ``reshape``, ``call`` and ``layer_output`` (only those given)."""
    extra = {} if reshape is None else {"reshape": reshape}
    if check_call(call) is not None:
        extra["call"] = check_call(call)
    if layer_output is not None:
        check_choice(layer_output)
        extra["layer_output"] = layer_output
    return extra
