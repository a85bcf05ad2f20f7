"""Which layout a Keras layer's output has: the layer's data format and the model's counted prefix tokens feed
the core's rule (``xcam.layouts.detect``; Keras is channels last). Mechanics only."""

import keras

from xcam.layouts import Layout, as_layout, count_prefix, detect, patch_grid


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


def patch_embedding(model):
    """(kernel, stride, padding) of the model's patch embedding: its first 2-D convolution with "valid" padding
    whose strides equal its kernel and exceed 1 (a ViT's 16x16/16 projection), or None."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Conv2D) and tuple(layer.strides) == tuple(layer.kernel_size) \
                and max(layer.strides) > 1 and layer.padding == "valid":
            return tuple(layer.kernel_size), tuple(layer.strides), (0, 0)
    return None


def model_facts(model) -> tuple:
    """(patch embedding, prefix tokens): what layout detection reads off the whole model, read once by a
    capture, a probe or a layer listing for all its layers (the prefix walks every weight: 0.85 ms on the demo's
    EfficientNet-Lite0, 140 times in a listing of its layers)."""
    return patch_embedding(model), prefix_tokens(model)


def layout_of(model, layer, shape: tuple, input_rank: int, reshape=None, spatial=None,
              facts: tuple | None = None) -> Layout:
    """The layout of ``layer``'s output of ``shape`` (N, ...): the user's ``reshape`` (a callable on NumPy
    arrays, a Layout or a layout name) if given, else detected; ``spatial``: the input's (h, w), whose grid
    under the patch embedding lays out non-square token counts. ``facts``: ``model_facts(model)`` when the
    caller has it (else read here)."""
    patch, prefix = model_facts(model) if facts is None else facts
    grid = None if patch is None or spatial is None or len(spatial) != 2 else \
        patch_grid(tuple(int(s) for s in spatial), *patch)
    if reshape is not None:
        return as_layout(reshape, tuple(shape), input_rank, prefix, grid)
    return detect(tuple(shape), default="channels_last", input_rank=input_rank, own=own_features(layer),
                  prefix=prefix, patches_grid=grid)
