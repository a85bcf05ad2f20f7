"""Record every layer's output shape in one eager forward (for `xcam layers` and the default layer)."""

import contextlib

import keras
import tensorflow as tf

from xcam.layers import LayerRecord, LayerRecorder

from ._capture import walk

_POOLS = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.Dropout, keras.layers.Flatten,
          keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D, keras.layers.Identity)


def layer_records(model, input_shape: tuple[int, int, int]) -> list[LayerRecord]:
    """One record per layer (nested paths), in the order layers finish, from a forward on zeros (1, H, W, C).

    Shapes are reported channels first, (N, C, h, w), like the rest of xcam.
    """
    recorder = LayerRecorder()
    paths = list(walk(model))

    def wrap(path, layer):
        original = layer.call

        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            if tf.is_tensor(out):
                shape = tuple(out.shape)
                recorder.saw(path, (shape[0], shape[-1], *shape[1:-1]) if len(shape) == 4 else shape, id(out))
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
    """(C, H, W) the model declares (channels first, like the rest of xcam), None where it fixes no size."""
    try:
        shape = tuple(model.inputs[0].shape[1:])
    except (AttributeError, IndexError, TypeError, ValueError):
        return (3, None, None)
    return (shape[2], shape[0], shape[1]) if len(shape) == 3 else (3, None, None)


