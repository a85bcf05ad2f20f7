"""What the CLI needs from Keras: load a model file, describe its input, capture a batch."""

from pathlib import Path

import keras
import numpy as np

from xcam.errors import XcamError

from ._capture import capture as _capture
from ._layers import input_shape, layer_records as _records

NAME = "tf"


def load_model(path, *, trust_model=False, arch=None, num_classes=None):
    """A Keras model from .keras / .h5. Lambda layers (code in the file) load only with trust_model."""
    path = Path(path)
    if arch:
        raise XcamError("--arch is for PyTorch state dicts; a Keras file holds its own architecture")
    if path.is_dir():
        raise XcamError(f"{str(path)!r} is a TensorFlow SavedModel: Keras 3 cannot reach the layers inside it, "
                        "so no CAM can be made; re-save the model as .keras (model.save('model.keras'))")
    if not path.is_file():
        raise XcamError(f"cannot read model {str(path)!r}: no such file")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=not trust_model)
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "safe_mode" in str(exc) or "Lambda" in str(exc):
            raise XcamError(f"{str(path)!r} holds code (a Lambda layer), and loading it runs that code: pass "
                            "--trust-model if you trust its source") from None
        raise XcamError(f"cannot read model {str(path)!r}: {type(exc).__name__}: {text}") from None


def input_spec(model, size):
    h, w, c = input_shape(model)
    if size:
        if h is not None and (h, w) != (size, size):
            raise XcamError(f"the model takes {h}x{w} inputs; --input-size {size} does not fit")
        return c, (size, size)
    return c, (h or 224, w or 224)


def layer_records(model, channels, hw):
    return _records(model, (*hw, channels))


def to_inputs(batch_nhwc: np.ndarray):
    return batch_nhwc


def capture(model, batch_nhwc, layer, **kwargs):
    return _capture(model, batch_nhwc, layer, **kwargs)


def probe(model, batch_nhwc, layer):
    """(inputs channels first as NumPy, a Probe) for methods that run the model again."""
    from ._capture import resolve_layer
    from ._probe import Probe

    return np.ascontiguousarray(batch_nhwc.transpose(0, 3, 1, 2)), Probe(model, resolve_layer(model, layer)[1],
                                                                       batch_nhwc)


def kernels(model, layer):
    from ._probe import kernels as _kernels

    return _kernels(model, layer)


def visualize_filters(model, layer, channels, size, input_channels, steps):
    from . import visualize_filters as _visualize

    return _visualize(model, layer, channels, size=size, input_channels=input_channels, steps=steps)
