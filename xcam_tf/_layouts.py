"""Which layout a Keras layer's output has: the layer's data format and the model's counted prefix tokens feed
the core's rule (``xcam.layouts.detect``; Keras is channels last). Mechanics only."""

import keras

from xcam.layouts import Layout, as_layout, count_prefix, detect


def own_features(layer):
    """("first" | "last", size) the layer declares for its output: a convolution's filters on the axis of its
    ``data_format``, a dense layer's units on the last axis; else None."""
    filters = getattr(layer, "filters", None)
    if isinstance(filters, int):
        return ("first" if getattr(layer, "data_format", "channels_last") == "channels_first" else "last"), filters
    if isinstance(layer, keras.layers.Dense):
        return "last", layer.units
    return None


def prefix_tokens(model) -> int:
    """Class / distillation / register tokens the model prepends, counted from its weights' paths
    (``xcam.layouts.count_prefix``)."""
    return count_prefix({getattr(v, "path", v.name): tuple(v.shape) for v in model.weights})


def layout_of(model, layer, shape: tuple, input_rank: int, reshape=None) -> Layout:
    """The layout of ``layer``'s output of ``shape`` (N, ...): the user's ``reshape`` (a callable on NumPy
    arrays, a Layout or a layout name) if given, else detected."""
    prefix = prefix_tokens(model)
    if reshape is not None:
        return as_layout(reshape, tuple(shape), input_rank, prefix)
    return detect(tuple(shape), default="channels_last", input_rank=input_rank, own=own_features(layer),
                  prefix=prefix)
