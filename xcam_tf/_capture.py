"""Fetch activations, gradients and logits from a Keras 3 model. Mechanics only: every formula is in xcam/.

How: while a compiled (``tf.function``) step is traced, the target layer's ``call`` is wrapped so that its
output is kept and watched by a ``GradientTape(watch_accessed_variables=False)``: the tape records only what
follows the layer, and ``tape.gradient`` goes back to that output alone. This reaches layers inside
Sequential, functional and nested models alike. A final softmax is traced as the identity, so scores are
logits. The step is cached per model, layer and input shape, so repeated calls do not retrace; the wraps
are removed in ``finally`` and the model's layers are left as they were.
"""

import contextlib
from collections import OrderedDict

import keras
import numpy as np
import tensorflow as tf

from xcam.contract import Capture, check_batch
from xcam.errors import XcamError
from xcam.layers import unknown_layer
from xcam.methods.activation import check_head_weights
from xcam.targets import TOP1, check_class_range, check_scores, requested, resolve

LAYOUT = "channels_last"

_STEPS: OrderedDict = OrderedDict()  # (id(model), layer, shape, rank, gradients) -> compiled step; LRU
_MAX_STEPS = 16  # a step holds its model: keep only the few most recent


def walk(model, prefix=""):
    """(path, layer) for every layer, nested models included ("vgg16/block5_conv3")."""
    for layer in getattr(model, "layers", []):
        path = f"{prefix}{layer.name}"
        yield path, layer
        if isinstance(layer, keras.Model) or hasattr(layer, "layers"):
            yield from walk(layer, path + "/")


def resolve_layer(model, layer) -> tuple[str, keras.layers.Layer]:
    """(path, layer) for a path ("vgg16/block5_conv3"), a unique plain name inside nested models, or a layer."""
    paths = list(walk(model))
    if isinstance(layer, keras.layers.Layer):
        for path, obj in paths:
            if obj is layer:
                return path, obj
        raise XcamError(f"the given layer {layer.name!r} is not part of the model")
    for path, obj in paths:
        if path == layer:
            return path, obj
    matches = [(p, o) for p, o in paths if p.rsplit("/", 1)[-1] == layer]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise XcamError(f"layer name {layer!r} is ambiguous: {', '.join(p for p, _ in matches)}")
    raise unknown_layer(layer, [p for p, _ in paths])


def final_layer(model):
    """The layer that produces the model's output (descending into a nested last model)."""
    layers = getattr(model, "layers", [])
    if not layers:
        return None
    last = layers[-1]
    return final_layer(last) if hasattr(last, "layers") and last.layers else last


@contextlib.contextmanager
def wrapped(layers, keep: dict, tape_box: dict, final, replace=None):
    """Wrap the target layers' calls (keep and watch their outputs; or ``replace`` the first one's output)
    and make a final softmax the identity. Everything is undone on exit."""
    saved = []

    def wrap(index, layer):
        original = layer.call

        def call(*args, **kwargs):
            out = original(*args, **kwargs) if replace is None else replace
            if index in keep:
                raise XcamError(f"layer {layer.name!r} runs more than once in one forward pass; "
                                "pick a layer that runs once")
            if tape_box.get("tape") is not None:
                tape_box["tape"].watch(out)
            keep[index] = out
            return out
        return call

    try:
        for index, layer in enumerate(layers):
            object.__setattr__(layer, "call", wrap(index, layer))
            saved.append((layer, "call", None))
        if final is not None and _is_softmax(getattr(final, "activation", None)):
            saved.append((final, "activation", final.activation))
            object.__setattr__(final, "activation", keras.activations.linear)
        elif final is not None and isinstance(final, keras.layers.Softmax):
            saved.append((final, "call", None))
            object.__setattr__(final, "call", lambda x, *a, **k: x)
        yield
    finally:
        restore(saved)


@contextlib.contextmanager
def traced_errors():
    """Re-raise an XcamError raised while a compiled step is traced (TensorFlow wraps it in a StagingError
    or a Keras layer error) as the original one-line XcamError."""
    try:
        yield
    except XcamError:
        raise
    except Exception as exc:
        found, seen, depth = None, exc, 0
        while seen is not None and depth < 20:
            if isinstance(seen, XcamError):
                found = seen
            seen, depth = seen.__cause__ or seen.__context__, depth + 1
        if found is None:
            raise
        raise found.with_traceback(None) from None


def restore(saved) -> None:
    """Undo (object, attribute, old value) patches, newest first; a patched ``call`` is an instance attribute
    shadowing the class's method, so it is deleted rather than set back."""
    for obj, attr, value in reversed(saved):
        if attr == "call":
            object.__delattr__(obj, "call")
        else:
            object.__setattr__(obj, attr, value)


def _is_softmax(fn) -> bool:
    return fn is not None and getattr(fn, "__name__", "") == "softmax"


def _has_softmax(final) -> bool:
    """Whether ``wrapped`` traces the final layer's softmax as the identity."""
    return final is not None and (_is_softmax(getattr(final, "activation", None))
                                  or isinstance(final, keras.layers.Softmax))


def _cached(key, model, build):
    if key in _STEPS and _STEPS[key][0] is model:
        _STEPS.move_to_end(key)
        return _STEPS[key][1]
    _STEPS[key] = (model, build())
    while len(_STEPS) > _MAX_STEPS:
        _STEPS.popitem(last=False)
    return _STEPS[key][1]


def _step(model, paths, shape, classes_per_sample: int, gradients: bool):
    """The compiled capture step for this model, layers, input shape and class count (0: one per sample)."""
    target_rank = 2 if classes_per_sample else 1
    count = len(paths)

    def build():
        keep: dict = {}
        tape_box: dict = {}

        @tf.function(input_signature=[tf.TensorSpec((None, *shape), tf.float32),
                                      tf.TensorSpec((None, classes_per_sample)[:target_rank], tf.int32)])
        def step(x, targets):
            keep.clear()
            with tf.GradientTape(watch_accessed_variables=False, persistent=target_rank == 2) as tape:
                tape_box["tape"] = tape if gradients else None
                logits = model(x, training=False)
                acts = [keep[i] for i in range(count)]
                top1 = tf.argmax(logits, axis=1, output_type=tf.int32)
                if target_rank == 1:
                    chosen = tf.where(targets == TOP1, top1, targets)
                    score = tf.reduce_sum(logits * tf.one_hot(chosen, tf.shape(logits)[1], dtype=logits.dtype))
            tape_box.clear()
            if not gradients:
                return acts, [tf.zeros((0,))] * count, logits
            if target_rank == 1:
                return acts, tape.gradient(score, acts), logits
            onehots = tf.one_hot(targets, tf.shape(logits)[1], dtype=logits.dtype)  # (N, K, classes)
            per_class = [tape.gradient(logits, acts, output_gradients=onehots[:, j])
                         for j in range(classes_per_sample)]
            return acts, [tf.stack([pc[i] for pc in per_class], axis=1) for i in range(count)], logits

        return step, keep, tape_box

    return _cached((id(model), tuple(paths), tuple(shape), classes_per_sample, gradients), model, build)


def as_batch(inputs, model=None) -> tf.Tensor:
    """The inputs as a float32 tensor (N, H, W, C), checked against the shape the model declares."""
    x = tf.convert_to_tensor(inputs, dtype=tf.float32)
    check_batch(tuple(x.shape), LAYOUT)
    if model is not None:
        check_input_shape(model, tuple(x.shape))
    return x


def check_input_shape(model, shape: tuple) -> None:
    """Refuse a batch that does not fit the model's declared input (H, W, C) before anything is traced; a
    channels-first batch (N, C, H, W) is named as such."""
    try:
        declared = tuple(model.inputs[0].shape[1:])
    except (AttributeError, IndexError, TypeError, ValueError):
        return
    got = tuple(int(d) for d in shape[1:])
    if len(declared) != 3 or all(d is None or d == g for d, g in zip(declared, got)):
        return
    want = "(N, " + ", ".join("?" if d is None else str(d) for d in declared) + ")"
    hint = ""
    if declared[2] is not None and got[0] == declared[2] and got[2] != declared[2]:
        hint = ": this batch looks channels first (N, C, H, W); give np.moveaxis(inputs, 1, -1)"
    raise XcamError(f"the model takes inputs {want}, channels last (N, H, W, C), got shape {(shape[0], *got)}"
                    f"{hint}")


def _last_dense_weight(model):
    dense = [obj for _, obj in walk(model) if isinstance(obj, keras.layers.Dense)]
    return np.asarray(dense[-1].kernel.numpy()).T if dense else None


def capture(model, inputs, layer, targets=None, *, classes=None, gradients: bool = True, head: bool = False,
            labels=None):
    """Activations and gradients as (N, C, h, w) NumPy arrays (channels first), and the logits (N, K).

    layer: a name, path or layer, or a list of them (then a list of Captures from one forward/backward).
    """
    layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    if not layers:
        raise XcamError("no layer given")
    resolved = [resolve_layer(model, one) for one in layers]
    x = as_batch(inputs, model)
    wanted = requested(targets, classes, int(x.shape[0]))
    num = _num_classes(model)
    if num is not None:  # a class index past the model's range would be silently zero in one_hot
        check_class_range(wanted, num, labels)
    paths = [p for p, _ in resolved]
    step, keep, tape_box = _step(model, paths, x.shape[1:], wanted.shape[1] if wanted.ndim == 2 else 0,
                                 gradients)
    final = final_layer(model)
    try:
        with wrapped([obj for _, obj in resolved], keep, tape_box, final), traced_errors():
            acts, grads, logits = step(x, tf.constant(np.maximum(wanted, TOP1).astype(np.int32)))
    except tf.errors.InvalidArgumentError as exc:
        raise XcamError(f"the model could not run on inputs of shape {tuple(x.shape)}: "
                        f"{exc.message.splitlines()[0]}") from None
    finally:
        keep.clear()
    scores = logits.numpy().astype(np.float32)
    check_scores(scores, softmax_skipped=_has_softmax(final))
    chosen = resolve(wanted, scores, labels)
    caps = []
    for path, act, grad in zip(paths, acts, grads):
        if act.shape.rank != 4:
            raise XcamError(f"layer {path!r} outputs shape {tuple(act.shape)}, not a spatial map (N, h, w, C)")
        a = np.moveaxis(act.numpy(), -1, -3)  # NHWC -> NCHW, a view
        g = np.moveaxis(grad.numpy(), -1, -3) if gradients else None
        head_w = check_head_weights(_last_dense_weight(model), a.shape[1], scores.shape[1]) if head else None
        caps.append(Capture(activations=a, gradients=g, scores=scores, targets=chosen, layer=path,
                            head_weights=head_w))
    return caps if isinstance(layer, (list, tuple)) else caps[0]


def _num_classes(model):
    try:
        return int(model.outputs[0].shape[-1])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
