"""Choosing and loading a framework adapter on demand (``import xcam`` never imports a framework)."""

import importlib
from pathlib import Path

from .errors import XcamError

FRAMEWORKS = ("torch", "tf")
_INSTALL = {"torch": "PyTorch is not installed: pip install 'xcam[torch]'",
            "tf": "TensorFlow is not installed: pip install 'xcam[tf]'"}


def load_backend(framework: str):
    """The adapter's CLI backend module (``xcam_torch.backend`` or ``xcam_tf.backend``)."""
    if framework not in FRAMEWORKS:
        raise XcamError(f"unknown framework {framework!r}; valid: {', '.join(FRAMEWORKS)}")
    if framework == "tf":
        try:  # torch must be imported before tensorflow when both are present
            importlib.import_module("torch")
        except ImportError:
            pass
    try:
        return importlib.import_module(f"xcam_{framework}.backend")
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] in ("torch", "torchvision", "tensorflow", "keras"):
            raise XcamError(_INSTALL[framework]) from None
        raise


def available(framework: str) -> bool:
    return importlib.util.find_spec({"torch": "torch", "tf": "tensorflow"}[framework]) is not None


def infer_framework(path) -> str:
    """'torch' for .pt/.pth/.bin/.ckpt/TorchScript, 'tf' for .keras/.h5/.hdf5 and SavedModel directories."""
    p = Path(path)
    if p.is_dir():
        if (p / "saved_model.pb").exists() or (p / "saved_model.pbtxt").exists():
            return "tf"
        raise XcamError(f"{str(p)!r} is a directory but not a TensorFlow SavedModel (no saved_model.pb)")
    suffix = p.suffix.lower()
    if suffix in (".keras", ".h5", ".hdf5"):
        return "tf"
    if suffix in (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".torchscript"):
        return "torch"
    raise XcamError(f"cannot tell the framework of {str(p)!r} from its name; pass --framework torch or tf "
                    "(PyTorch: .pt .pth; Keras: .keras .h5 or a SavedModel directory)")
