"""Loading Keras model files for the CLI: .keras and .h5 (Lambda layers only when trusted), keras-hub preset
directories (``xcam.app.models.kerashub``); SavedModels refused with the reason."""

from pathlib import Path

import keras

from xcam.app.models import kerashub
from xcam.errors import XcamError


def load_model(path, *, trust_model=False, arch=None, num_classes=None):
    """A Keras model from .keras / .h5. Lambda layers (code in the file) load only with trust_model."""
    path = Path(path)
    if arch:
        raise XcamError("--arch is for PyTorch state dicts; a Keras file holds its own architecture")
    if kerashub.is_preset(path):
        return kerashub.load(path)
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
