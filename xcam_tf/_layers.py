"""Record every layer's output shape in one eager forward (for `xcam layers` and the default layer)."""

import contextlib

import keras
import tensorflow as tf

from xcam.layers import LayerRecord, LayerRecorder

from ._capture import walk
from ._layouts import layout_of

_POOLS = (keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.MaxPooling3D,
          keras.layers.AveragePooling1D, keras.layers.AveragePooling2D, keras.layers.AveragePooling3D,
          keras.layers.GlobalAveragePooling1D, keras.layers.GlobalAveragePooling2D, keras.layers.GlobalAveragePooling3D,
          keras.layers.GlobalMaxPooling1D, keras.layers.GlobalMaxPooling2D, keras.layers.GlobalMaxPooling3D,
          keras.layers.Dropout, keras.layers.Flatten, keras.layers.Identity)


def layer_records(model, input_shape: tuple) -> list[LayerRecord]:
    """One record per layer (nested paths), in the order layers finish, from a forward on zeros (1, *S, C).

    Shapes are reported channels first, (N, C, *s), after each layer's layout (tokens on their grid).
    """
    recorder = LayerRecorder()
    paths = list(walk(model))
    rank = len(input_shape) - 1

    def wrap(path, layer):
        original = layer.call

        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            if tf.is_tensor(out):
                recorder.saw(path, tuple(out.shape), out, lambda shape: layout_of(model, layer, shape, rank))
            else:
                recorder.saw(path, None)
            return out
        return call

    with contextlib.ExitStack() as stack:
        for path, layer in paths:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            object.__setattr__(layer, "call", wrap(path, layer))
            stack.callback(object.__delattr__, layer, "call")
        model(tf.zeros((1, *input_shape), tf.float32), training=False)
    return recorder.records({p: type(obj).__name__ for p, obj in paths},
                            {p for p, obj in paths if isinstance(obj, _POOLS)})


def input_shape(model) -> tuple:
    """(C, *S) the model declares (channels first, like the rest of xcam: (C, H, W) for images, (C, L) for
    signals, (C, D, H, W) for volumes), None where it fixes no size."""
    try:
        shape = tuple(model.inputs[0].shape[1:])
    except (AttributeError, IndexError, TypeError, ValueError):
        return (3, None, None)
    return (shape[-1], *shape[:-1]) if 2 <= len(shape) <= 4 else (3, None, None)


