"""Loading PyTorch model files for the CLI: a state dict with a torchvision architecture, a whole pickled model
(only when trusted), and a clear refusal of TorchScript; a job's memory format (channels-last for the run)."""

import contextlib
import itertools
import pickle
import zipfile
from pathlib import Path

import torch

from xcam.errors import XcamError


def device() -> torch.device:
    """Where loaded models go: CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())


def _state_dict(obj):
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    return None


def _build(torchvision, arch, num_classes):
    try:
        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    except ValueError:
        names = ", ".join(sorted(torchvision.models.list_models(module=torchvision.models))[:12])
        raise XcamError(f"unknown --arch {arch!r}; torchvision classifiers include: {names}, ...") from None


def _head_rows(model, state, num_classes):
    """The class count the weights were saved with when the model built for ``num_classes`` differs from them
    only in the first dimension of a tensor with ``num_classes`` rows (the head, whatever its kind); else None."""
    for key, ref in model.state_dict().items():
        got = state.get(key)
        if (got is not None and ref.ndim >= 1 and ref.shape[0] == num_classes and got.ndim == ref.ndim
                and got.shape[0] != num_classes and tuple(got.shape[1:]) == tuple(ref.shape[1:])):
            return int(got.shape[0])
    return None


def _from_state_dict(path, state, arch, num_classes):
    import torchvision

    if not arch:
        raise XcamError(f"{str(path)!r} holds a state dict (weights only): name the network with --arch "
                        "(e.g. alexnet, vgg16, resnet50) and, if it is not 1000, --num-classes")
    inferred = num_classes is None
    if inferred:
        last = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
        num_classes = int(last[-1].shape[0]) if last else 1000
    model = _build(torchvision, arch, num_classes)
    if inferred and (head := _head_rows(model, state, num_classes)) is not None:
        num_classes = head  # a head that is not a Linear (SqueezeNet's 1x1 convolution)
        model = _build(torchvision, arch, num_classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise XcamError(f"the weights in {str(path)!r} do not fit {arch} with {num_classes} classes: {first}") \
            from None
    return model


def load_model(path, *, trust_model=False, arch=None, num_classes=None):
    """A model from a file: TorchScript, a whole pickled model (only with trust_model), or a state dict + arch;
    a Hugging Face save_pretrained directory (``xcam.app.models.hf``), or weights of ``arch="timm:NAME"``
    (``xcam.app.models.timm_models``)."""
    path = Path(path)
    if arch and str(arch).startswith("timm:"):
        from xcam.app.models import timm_models

        return timm_models.load(path, arch, num_classes).to(device())
    if path.is_dir():
        from xcam.app.models import hf

        if not hf.is_hf_dir(path):
            raise XcamError(f"{str(path)!r} is a directory but not a Hugging Face model (config.json with "
                            f"{' or '.join(hf.WEIGHTS)})")
        return hf.load(path).to(device())
    if not path.is_file():
        raise XcamError(f"cannot read model {str(path)!r}: no such file")
    dev = device()
    try:
        if _is_torchscript(path):
            raise XcamError(f"{str(path)!r} is a TorchScript model: PyTorch cannot hook layers inside a "
                            "ScriptModule, so no layer can be explained; save the nn.Module instead (its state "
                            "dict with --arch, or the whole model with --trust-model)")
        try:
            obj = torch.load(path, map_location=dev, weights_only=True)
        except pickle.UnpicklingError as exc:
            if "global" not in str(exc).lower():  # not a refused class: the file is not a pickle at all
                raise
            if not trust_model:
                raise XcamError(f"{str(path)!r} holds a whole pickled model, and loading it runs code from the "
                                "file: pass --trust-model if you trust its source (or save a state dict and use "
                                "--arch)") from None
            from xcam.app.models import yolo

            yolo.offline()
            try:
                obj = torch.load(path, map_location=dev, weights_only=False)
            except ModuleNotFoundError as missing_module:
                if str(missing_module.name).split(".")[0] == "ultralytics":
                    raise XcamError(yolo.NEEDS) from None
                raise
            if yolo.is_checkpoint(obj):
                return yolo.load(obj, path).to(dev)
            del exc
    except XcamError:
        raise
    except Exception as exc:
        raise XcamError(f"cannot read model {str(path)!r}: {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'}") from None
    if isinstance(obj, torch.nn.Module):
        return obj.to(dev)
    state = _state_dict(obj)
    if state is None:
        raise XcamError(f"{str(path)!r} holds a {type(obj).__name__}, not a model or a state dict")
    return _from_state_dict(path, state, arch, num_classes).to(dev).eval()


def prefers_channels_last(model) -> bool:
    """Whether a job runs ``model`` channels-last (``memory_format``): a model with 2-D convolutions (oneDNN on
    CPUs and cuDNN on GPUs run them faster on NHWC tensors: EfficientNet-Lite0 1.6x on this project's CPU)."""
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


@contextlib.contextmanager
def memory_format(model, fmt: str):
    """Run ``model`` with its 4-D parameters and buffers in ``fmt`` ("channels_last" or "contiguous") for the
    duration of the block, then give every tensor back its own storage and strides (the model is left as it
    was; the values never change, convolutions on channels-last weights run NHWC)."""
    if fmt != "channels_last":
        yield
        return
    kept = []
    with torch.no_grad():
        for t in itertools.chain(model.parameters(), model.buffers()):
            if t.dim() == 4 and not t.is_contiguous(memory_format=torch.channels_last):
                kept.append((t, t.data))
                t.data = t.data.contiguous(memory_format=torch.channels_last)
    try:
        yield
    finally:
        with torch.no_grad():
            for t, data in kept:
                t.data = data
