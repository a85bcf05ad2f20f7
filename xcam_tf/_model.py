"""The model's layers by path, the tensor ops, patch undoing and a target's parameters as tensors: what the
capture and LeGrad's block arrays both use (``_capture`` and ``_attention`` import it, never each other's way
back)."""

import keras
import numpy as np
import tensorflow as tf

from xcam.errors import XcamError
from xcam.layers import unknown_layer

from ._tensor_ops import TFOps

OPS = TFOps()


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


def restore(saved) -> None:
    """Undo (object, attribute, old value) patches, newest first; a patched ``call`` is an instance attribute
    shadowing the class's method, so it is deleted rather than set back."""
    for obj, attr, value in reversed(saved):
        if attr == "call":
            object.__delattr__(obj, "call")
        else:
            object.__setattr__(obj, attr, value)


def param_tensors(params: dict) -> dict:
    """A target's NumPy parameters as tensors matching ``param_specs``."""
    out = {}
    for k, v in params.items():
        if v.dtype.kind == "f":
            out[k] = tf.constant(v, tf.float32)
        else:
            info = np.iinfo(np.int32)
            out[k] = tf.constant(np.clip(v, info.min, info.max).astype(np.int32))
    return out
