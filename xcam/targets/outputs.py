"""Which of the model's outputs a target sees (``output=``): a key of a dict output, an index of a tuple or
list, a Keras output name, an attribute (``"logits"`` of a Hugging Face-style output object), or a callable.
Default: the output itself when it is one tensor, or the one tensor inside a container that holds exactly one;
otherwise a one-line error that lists the available outputs. Framework-neutral: a tensor is anything with a
``shape`` and a ``dtype``.
"""

from collections.abc import Callable, Mapping, Sequence

from ..errors import XcamError, nearest


def is_tensor(x) -> bool:
    """Whether ``x`` is one array/tensor (has ``shape`` and ``dtype``, and is not a container)."""
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, (Mapping, list, tuple))


def entries(outputs, names: Sequence[str] | None = None) -> dict:
    """The named parts of a structured output: {key or index or attribute: value}, ``None`` values left out.
    A sequence with Keras ``names`` (one per entry) is keyed by those names."""
    if isinstance(outputs, Mapping):
        items = dict(outputs.items())
    elif isinstance(outputs, (list, tuple)):
        keys = list(names) if names is not None and len(names) == len(outputs) else range(len(outputs))
        items = dict(zip(keys, outputs))
    elif hasattr(outputs, "__dict__"):
        items = {k: v for k, v in vars(outputs).items() if not k.startswith("_")}
    else:
        items = {}
    return {k: v for k, v in items.items() if v is not None}


def describe(outputs, names: Sequence[str] | None = None) -> str:
    """A short description of the output structure for error messages ("a dict with outputs 'out', 'aux')."""
    if is_tensor(outputs):
        return f"one tensor of shape {tuple(outputs.shape)}"
    kind = "dict" if isinstance(outputs, Mapping) else type(outputs).__name__
    shown = ", ".join(f"{k!r} {tuple(v.shape)}" if is_tensor(v) else f"{k!r} ({type(v).__name__})"
                      for k, v in entries(outputs, names).items())
    return f"a {kind} with outputs {shown or '(none)'}"


def select_output(outputs, output=None, *, names: Sequence[str] | None = None, whole: bool = False):
    """The part of the model's ``outputs`` that the target sees.

    output: None (default: the one tensor), a dict key / Keras output name / attribute name (str), a tuple or
    list index (int), or a callable ``outputs -> tensor``. ``whole=True`` (targets that read a structured
    output, e.g. ``Boxes`` on a detector's list of dicts) makes the default the whole output. ``names``: the
    output names of a Keras model whose outputs come back as a list.
    """
    if output is None:
        if whole or is_tensor(outputs):
            return outputs
        parts = entries(outputs, names)
        tensors = {k: v for k, v in parts.items() if is_tensor(v)}
        if len(parts) == 1 and len(tensors) == 1:
            return next(iter(tensors.values()))
        example = next(iter(parts), 0)
        raise XcamError(f"the model returns {describe(outputs, names)}; choose the one to explain with "
                        f"output= (e.g. output={example!r}) or a callable")
    if callable(output) and not isinstance(output, (str, int)):
        return output(outputs)
    if isinstance(output, bool) or not isinstance(output, (str, int)):
        raise XcamError(f"output must be None, a name, an index or a callable, got {output!r}")
    if is_tensor(outputs):
        if output in (0, "0"):
            return outputs
        raise XcamError(f"the model returns {describe(outputs)}, which has no output {output!r}; "
                        "leave output= unset")
    parts = entries(outputs, names)
    if output in parts:
        return parts[output]
    if isinstance(output, str) and not isinstance(outputs, Mapping) and hasattr(outputs, output) \
            and getattr(outputs, output) is not None:
        return getattr(outputs, output)
    if isinstance(output, int) and isinstance(outputs, (list, tuple)) and -len(outputs) <= output < len(outputs):
        return outputs[output]
    hint = nearest(str(output), [str(k) for k in parts])
    also = f" (did you mean {', '.join(hint)}?)" if hint else ""
    raise XcamError(f"the model has no output {output!r}{also}; it returns {describe(outputs, names)}")


OutputSpec = str | int | Callable | None
