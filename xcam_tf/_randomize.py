"""Randomizing a model's top layers for the cascading randomization test, and putting every weight back exactly.
The order, the distribution and the values come from xcam.randomization (canonical PyTorch layout); this file
lists the layers and moves values between that layout and Keras' own."""

import contextlib

import keras
import numpy as np

from xcam.randomization import ParamLayer, check_cascade_names, random_parameters

from ._capture import walk


def _is_leaf(layer) -> bool:
    return not (isinstance(layer, keras.Model) or getattr(layer, "layers", None))


def _to_canonical(layer, value: np.ndarray) -> np.ndarray:
    """A Keras weight in the canonical layout: Conv2D (kh, kw, in, out) -> (out, in, kh, kw); DepthwiseConv2D
    (kh, kw, in, m) -> (in * m, 1, kh, kw); Dense (in, out) -> (out, in); any other n-D weight: axes reversed."""
    if value.ndim < 2:
        return value
    if isinstance(layer, keras.layers.DepthwiseConv2D) and value.ndim == 4:
        return value.transpose(2, 3, 0, 1).reshape(-1, 1, *value.shape[:2])
    if isinstance(layer, keras.layers.Conv2D) and value.ndim == 4:
        return value.transpose(3, 2, 0, 1)
    return value.transpose(tuple(range(value.ndim))[::-1])


def _from_canonical(layer, value: np.ndarray, shape: tuple) -> np.ndarray:
    """The inverse of ``_to_canonical`` for a weight of Keras ``shape``."""
    if value.ndim < 2:
        return value
    if isinstance(layer, keras.layers.DepthwiseConv2D) and len(shape) == 4:
        return value.reshape(shape[2], shape[3], *shape[:2]).transpose(2, 3, 0, 1)
    if isinstance(layer, keras.layers.Conv2D) and len(shape) == 4:
        return value.transpose(2, 3, 1, 0)
    return value.transpose(tuple(range(value.ndim))[::-1])


def _canonical_shape(layer, shape: tuple) -> tuple:
    return tuple(_to_canonical(layer, np.empty(shape, dtype=np.float32)).shape)


def _leaves(model) -> list[tuple[str, object]]:
    return [(path, layer) for path, layer in walk(model) if _is_leaf(layer) and layer.trainable_weights]


def parameter_layers(model) -> list[ParamLayer]:
    """Every layer with trainable weights (nested models entered), input to output, shapes in the canonical
    PyTorch layout (batch normalization: gamma and beta; the moving statistics are not trainable)."""
    return [ParamLayer(path, tuple(_canonical_shape(layer, tuple(v.shape)) for v in layer.trainable_weights))
            for path, layer in _leaves(model)]


@contextlib.contextmanager
def randomized(model, layers, seed: int = 0, *, first_position: int = 0):
    """Inside the block, the trainable weights of ``layers`` (paths, the cascade's top-down order: ``layers[j]``
    gets ``xcam.randomization.random_parameters(..., position=first_position + j, seed)``, moved to Keras' layout)
    hold random values; on exit every variable is assigned its saved value back, bit for bit (nested blocks, one
    layer each with its ``first_position``, build a cascade step by step). Compiled steps read the variables, so
    they see the random values without retracing."""
    leaves = dict(_leaves(model))
    records = {r.name: r for r in parameter_layers(model)}
    names = check_cascade_names(layers, list(records))
    saved = []
    try:
        for position, name in enumerate(names):
            layer = leaves[name]
            values = random_parameters(records[name], first_position + position, seed)
            for var, value in zip(layer.trainable_weights, values):
                saved.append((var, np.array(var.numpy(), copy=True)))
                var.assign(_from_canonical(layer, value, tuple(var.shape)).astype(var.dtype))
        yield model
    finally:
        for var, old in reversed(saved):
            var.assign(old)
