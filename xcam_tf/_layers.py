"""Record every layer's output shape in one eager forward (for `xcam layers` and the default layer)."""

from ._capture import layer_records

__all__ = ["input_shape", "layer_records"]


def input_shape(model) -> tuple:
    """(C, *S) the model declares (channels first, like the rest of xcam: (C, H, W) for images, (C, L) for
    signals, (C, D, H, W) for volumes), None where it fixes no size."""
    try:
        shape = tuple(model.inputs[0].shape[1:])
    except (AttributeError, IndexError, TypeError, ValueError):
        return (3, None, None)
    return (shape[-1], *shape[:-1]) if 2 <= len(shape) <= 4 else (3, None, None)


