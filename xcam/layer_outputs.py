"""Which tensor of a layer's output a CAM explains (``layer_output=``) when the layer returns a structure: a
tuple or list (a Hugging Face Swin stage: (hidden_states, hidden_states_before_downsampling, dimensions)), a dict,
or a dataclass (``BaseModelOutput``: last_hidden_state, hidden_states, attentions). Default: the first tensor
of a spatial rank (3-D to 5-D: (N, C, L), (N, C, h, w), (N, C, d, h, w), channels last or tokens (N, T, C));
``layer_output=`` picks another by index (an int: a tuple's position, or the n-th entry of a dict or dataclass,
``None`` entries skipped as ``ModelOutput`` does) or by name (a key or attribute). ``put`` hands the rest of the
network the structure with that tensor replaced. Framework-neutral: a tensor has a ``shape`` and a ``dtype``.
"""

import dataclasses
from collections.abc import Mapping

from .errors import XcamError, nearest
from .targets import is_tensor

SPATIAL_RANKS = (3, 4, 5)


def parts(out) -> dict:
    """The entries of a structured layer output: {index or key or field: value}, ``None`` values left out."""
    if isinstance(out, Mapping):
        items = dict(out.items())
    elif isinstance(out, (list, tuple)):
        items = dict(enumerate(out))
    elif dataclasses.is_dataclass(out) and not isinstance(out, type):
        items = {f.name: getattr(out, f.name) for f in dataclasses.fields(out)}
    else:
        items = {}
    return {k: v for k, v in items.items() if v is not None}


def describe(out) -> str:
    """A layer output's structure for error messages: "a tuple with 0 (1, 49, 32), 1 (1, 196, 16), 2 (tuple)"."""
    if is_tensor(out):
        return f"one tensor of shape {tuple(out.shape)}"
    shown = ", ".join(f"{k!r} {tuple(v.shape)}" if is_tensor(v) else f"{k!r} ({type(v).__name__})"
                      for k, v in parts(out).items())
    return f"a {type(out).__name__} with {shown or 'no tensors'}"


def check_choice(choice) -> None:
    """``layer_output=``: None, an index >= 0 or a name; anything else is a one-line error."""
    if choice is None or isinstance(choice, str) or (isinstance(choice, int) and not isinstance(choice, bool)
                                                     and choice >= 0):
        return
    raise XcamError(f"layer_output={choice!r} is not an index (0, 1, ...) or a name (e.g. 'last_hidden_state')")


def pick(out, choice=None, layer: str = "layer"):
    """(key, tensor): the part of the layer's output ``out`` a CAM explains (key None when ``out`` is a tensor).

    choice None: ``out`` itself when it is a tensor, else the first tensor of a spatial rank in it; an int:
    that position (a tuple's index, the n-th entry of a dict or dataclass); a str: that key or field. A
    choice the output lacks, or a structure without such a tensor, is a one-line error listing its entries."""
    check_choice(choice)
    if is_tensor(out):
        if choice in (None, 0):
            return None, out
        raise XcamError(f"layer {layer!r} outputs {describe(out)}, which has no part {choice!r}; leave "
                        "layer_output unset")
    entries = parts(out)
    if choice is None:
        for key, value in entries.items():
            if is_tensor(value) and len(value.shape) in SPATIAL_RANKS:
                return key, value
        raise XcamError(f"layer {layer!r} outputs {describe(out)}, with no spatial tensor (N, C, *s) or tokens "
                        "(N, T, C); pick another layer")
    if isinstance(choice, int) and not isinstance(out, (list, tuple)):
        keys = list(entries)
        key = keys[choice] if choice < len(keys) else None
    else:
        key = choice if choice in entries else None
    if key is None or not is_tensor(entries[key]):
        hint = nearest(str(choice), [str(k) for k in entries]) if isinstance(choice, str) else []
        also = f" (did you mean {', '.join(hint)}?)" if hint else ""
        raise XcamError(f"layer_output={choice!r} is not a tensor of layer {layer!r}{also}; it outputs "
                        f"{describe(out)}")
    return key, entries[key]


def put(out, key, value):
    """``out`` with its part ``key`` (from ``pick``) replaced by ``value``: the tensor itself for key None, a new
    tuple / list / dict of the same type, or a copy of the dataclass (``dataclasses.replace``)."""
    if key is None:
        return value
    if isinstance(out, tuple):
        items = [value if i == key else v for i, v in enumerate(out)]
        return type(out)(*items) if hasattr(out, "_fields") else type(out)(items)
    if isinstance(out, list):
        return [value if i == key else v for i, v in enumerate(out)]
    if dataclasses.is_dataclass(out):
        return dataclasses.replace(out, **{key: value})
    if isinstance(out, Mapping):
        new = dict(out.items())
        new[key] = value
        try:
            return type(out)(new)
        except TypeError:
            return new
    raise XcamError(f"cannot replace part {key!r} of a {type(out).__name__} layer output")
