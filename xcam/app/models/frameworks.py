"""Choosing and loading a framework on demand (``import xcam`` never imports one): its adapter
(``xcam_torch`` / ``xcam_tf``, the ``xcam.contract.Adapter``) and its model-file loader, behind one object the
CLI and the jobs use."""

import contextlib
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from xcam.app.models import kerashub
from xcam.app.models.hints import hints_of
from xcam.errors import XcamError

FRAMEWORKS = ("torch", "tf")
_MODULES = {"torch": ("xcam_torch", "xcam.app.models.torch_models"), "tf": ("xcam_tf", "xcam.app.models.keras_models")}
_INSTALL = {"torch": "PyTorch is not installed: pip install 'xcam[torch]'",
            "tf": "TensorFlow is not installed: pip install 'xcam[tf]'"}
DEFAULT_SIDE = 224


@dataclass(frozen=True)
class Framework:
    """A framework as the application sees it: ``adapter`` fetches arrays, ``models`` loads model files."""

    name: str
    adapter: ModuleType
    models: ModuleType

    def load_model(self, path, **kwargs):
        return self.models.load_model(path, **kwargs)

    def input_spec(self, model, size: int | None) -> tuple[int, tuple]:
        """(channels, (H, W)) the model is fed: its declared size, else ``size``, else 224 x 224. Signal and
        volume models: (channels, (L,)) or (channels, (D, H, W)), undeclared sizes ``size``, else 1000 samples
        or 16 x 112 x 112."""
        channels, *spatial = self.adapter.input_shape(model)
        hinted = hints_of(model).size
        if isinstance(size, (tuple, list)):   # --input-size HxW
            if len(spatial) != 2 or len(size) != 2:
                raise XcamError(f"--input-size {'x'.join(map(str, size))} is for image models")
            return channels, (int(size[0]), int(size[1]))
        if not size and hinted and len(spatial) == 2 and spatial == [None, None]:
            return channels, tuple(int(s) for s in hinted)
        if len(spatial) != 2:
            fallback = {1: (1000,), 3: (16, 112, 112)}.get(len(spatial), (size or DEFAULT_SIDE,) * len(spatial))
            return channels, tuple(s or size or d for s, d in zip(spatial, fallback))
        h, w = spatial
        if size:
            if h is not None and (h, w) != (size, size):
                raise XcamError(f"the model takes {h}x{w} inputs; --input-size {size} does not fit")
            return channels, (size, size)
        return channels, (h or DEFAULT_SIDE, w or DEFAULT_SIDE)

    def to_inputs(self, batch_nhwc: np.ndarray) -> np.ndarray:
        """A preprocessed channels-last batch ((N, H, W, C); signals (N, L, C), volumes (N, D, H, W, C)) in the
        adapter's layout."""
        if self.adapter.LAYOUT == "channels_last":
            return batch_nhwc
        return np.ascontiguousarray(np.moveaxis(batch_nhwc, -1, 1))

    def layer_records(self, model, channels: int, hw: tuple[int, int]):
        shape = (channels, *hw) if self.adapter.LAYOUT == "channels_first" else (*hw, channels)
        return self.adapter.layer_records(model, shape)

    def capture(self, model, batch_nhwc, layer, **kwargs):
        return self.adapter.capture(model, self.to_inputs(batch_nhwc), layer, **kwargs)

    def probe(self, model, batch_nhwc, layer, **kwargs):
        return self.adapter.probe(model, self.to_inputs(batch_nhwc), layer, **kwargs)

    def memory_format(self, model, fmt: str):
        """A context in which ``model`` runs in ``fmt`` ("channels_last" or "contiguous"), restored on exit
        (PyTorch; other frameworks keep their own layout)."""
        models = self.models
        return models.memory_format(model, fmt) if hasattr(models, "memory_format") else contextlib.nullcontext()

    def run_format(self, model, requested: str, rank: int) -> str:
        """The memory format a job runs in: ``requested`` ("channels_last", "contiguous"), or for "auto"
        channels-last where it is faster (PyTorch image models with 2-D convolutions), else contiguous."""
        if requested != "auto":
            return requested
        prefers = getattr(self.models, "prefers_channels_last", None)
        return "channels_last" if rank == 2 and prefers is not None and prefers(model) else "contiguous"


def load_framework(name: str) -> Framework:
    """The framework's adapter and model loader; a missing framework is a one-line error naming the extra."""
    if name not in FRAMEWORKS:
        raise XcamError(f"unknown framework {name!r}; valid: {', '.join(FRAMEWORKS)}")
    if name == "tf":
        try:  # torch must be imported before tensorflow when both are present
            importlib.import_module("torch")
        except ImportError:
            pass
    adapter_name, models_name = _MODULES[name]
    try:
        with quiet_tensorflow() if name == "tf" else contextlib.nullcontext():
            return Framework(name, importlib.import_module(adapter_name), importlib.import_module(models_name))
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] in ("torch", "torchvision", "tensorflow", "keras"):
            raise XcamError(_INSTALL[name]) from None
        raise


@contextlib.contextmanager
def quiet_tensorflow():
    """Import TensorFlow without its start-up lines (CUDA probing, oneDNN and CPU-feature notices): its C++
    logging is set to errors only (``TF_CPP_MIN_LOG_LEVEL=3`` unless the user set it), and what it writes
    to stderr while it loads, before that setting applies, goes to /dev/null. ``XCAM_DEBUG=1`` shows it all."""
    if "tensorflow" in sys.modules or os.environ.get("XCAM_DEBUG"):
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def available(name: str) -> bool:
    """Whether the framework's package is installed (without importing it)."""
    return importlib.util.find_spec({"torch": "torch", "tf": "tensorflow"}[name]) is not None


def infer_framework(path) -> str:
    """'torch' for .pt/.pth/.bin/.ckpt/.safetensors/TorchScript and Hugging Face directories (config.json), 'tf'
    for .keras/.h5/.hdf5, keras-hub presets (config.json + metadata.json) and SavedModel directories."""
    p = Path(path)
    if p.is_dir():
        if (p / "saved_model.pb").exists() or (p / "saved_model.pbtxt").exists():
            return "tf"
        if kerashub.is_preset(p):
            return "tf"   # a keras-hub preset (save_to_preset)
        if (p / "config.json").is_file():
            return "torch"   # a Hugging Face save_pretrained directory
        raise XcamError(f"{str(p)!r} is a directory but not a Hugging Face model (config.json), a keras-hub "
                        "preset or a TensorFlow SavedModel (saved_model.pb)")
    suffix = p.suffix.lower()
    if suffix in (".keras", ".h5", ".hdf5"):
        return "tf"
    if suffix in (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".torchscript", ".safetensors"):
        return "torch"
    raise XcamError(f"cannot tell the framework of {str(p)!r} from its name; pass --framework torch or tf "
                    "(PyTorch: .pt .pth; Keras: .keras .h5 or a SavedModel directory)")
