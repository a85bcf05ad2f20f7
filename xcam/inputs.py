"""Several model inputs: ``inputs`` may be one batch, a tuple or list (positional arguments of the model) or a
dict (keyword arguments, or a Keras model's named inputs), each batch first. The core only reads their
structure and shapes here; the adapters turn them into tensors and keep every input but the explained one
fixed. Image-like inputs (signals, images, volumes: 3-D to 5-D) are the ones maps are made for; tables,
token ids and other 2-D inputs are held fixed.
"""

import numpy as np

from .errors import XcamError

SINGLE, POSITIONAL, KEYWORD = "single", "positional", "keyword"


def entries(inputs) -> tuple[str, list]:
    """(kind, [(key, value), ...]): one batch (key None), positional inputs (keys 0, 1, ...) or keyword inputs
    (the dict's keys, in order)."""
    if isinstance(inputs, dict):
        if not inputs:
            raise XcamError("inputs is an empty dict: give at least one input")
        return KEYWORD, list(inputs.items())
    if isinstance(inputs, (list, tuple)):
        if not inputs:
            raise XcamError("inputs is empty: give at least one input")
        return POSITIONAL, list(enumerate(inputs))
    return SINGLE, [(None, inputs)]


def rebuild(kind: str, items: list):
    """The structure ``entries`` read, rebuilt from (key, value) pairs: the value, a list or a dict."""
    if kind == SINGLE:
        return items[0][1]
    return [v for _, v in items] if kind == POSITIONAL else dict(items)


def image_like(shape) -> bool:
    """Whether a batch shape is a signal, image or volume batch (3-D to 5-D) that a map can be made for."""
    return 3 <= len(tuple(shape)) <= 5


def name(key) -> str:
    """How an input is named in messages: "inputs", "input 0", "input 'image'"."""
    return "inputs" if key is None else f"input {key!r}" if isinstance(key, str) else f"input {key}"


def batch_size(items: list) -> int:
    """The common batch size of (key, value) inputs; a value without a batch axis (a scalar, a string, None,
    an object) or a batch of another size is a one-line error."""
    sizes = {}
    for key, value in items:
        shape = tuple(np.shape(value)) if not isinstance(value, (str, bytes)) else ()
        if len(shape) == 0:
            raise XcamError(f"{name(key)} (a {type(value).__name__}) cannot be batched: give an array or tensor "
                            "with the batch on its first axis")
        sizes[key] = int(shape[0])
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{name(k)}: {v}" for k, v in sizes.items())
        raise XcamError(f"the inputs have different batch sizes ({listed}); give every input the same batch")
    n = next(iter(sizes.values()))
    if n == 0:
        raise XcamError("the batch is empty (N = 0): give at least one input")
    return n


def image_keys(inputs) -> list:
    """Keys of the image-like inputs, in order (``[None]`` for one batch)."""
    kind, items = entries(inputs)
    if kind == SINGLE:
        return [None]
    return [k for k, v in items if image_like(np.shape(v))]


def lookup(inputs, key):
    """The input under ``key`` (``None``: the one batch)."""
    kind, items = entries(inputs)
    for k, v in items:
        if k == key:
            return v
    raise XcamError(f"there is no {name(key)}; inputs are: {', '.join(name(k) for k, _ in items)}")
