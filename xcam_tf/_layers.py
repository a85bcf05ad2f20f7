"""Record every layer's output shape in one eager forward (for `xcam layers` and the default layer)."""

import contextlib

import keras
import tensorflow as tf

from xcam.layers import LayerRecord

from ._capture import walk

_POOLS = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.Dropout, keras.layers.Flatten,
          keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D, keras.layers.Identity)


def layer_records(model, input_shape: tuple[int, int, int]) -> list[LayerRecord]:
    """One record per layer (nested paths), in the order layers finish, from a forward on zeros (1, H, W, C).

    Shapes are reported channels first, (N, C, h, w), like the rest of xcam.
    """
    order, info, owner = [], {}, {}
    paths = list(walk(model))

    def wrap(path, layer):
        original = layer.call

        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            entry = info.setdefault(path, {"calls": 0, "shape": None, "same": None})
            entry["calls"] += 1
            if entry["calls"] == 1:
                order.append(path)
                if tf.is_tensor(out):
                    shape = tuple(out.shape)
                    entry["shape"] = (shape[0], shape[-1], *shape[1:-1]) if len(shape) == 4 else shape
                    entry["same"] = owner.get(id(out))
                    owner[id(out)] = path
            return out
        return call

    with contextlib.ExitStack() as stack:
        for path, layer in paths:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            object.__setattr__(layer, "call", wrap(path, layer))
            stack.callback(object.__delattr__, layer, "call")
        model(tf.zeros((1, *input_shape), tf.float32), training=False)
    kinds = dict(paths)
    return [LayerRecord(name=p, kind=type(kinds[p]).__name__, shape=info[p]["shape"], calls=info[p]["calls"],
                        is_pool=isinstance(kinds[p], _POOLS), same_as=info[p]["same"]) for p in order]


def input_shape(model) -> tuple:
    """(H, W, C) the model declares, with None where it does not fix a size."""
    try:
        shape = tuple(model.inputs[0].shape[1:])
    except (AttributeError, IndexError, TypeError, ValueError):
        return (None, None, 3)
    return shape if len(shape) == 3 else (None, None, 3)


