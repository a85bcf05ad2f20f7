"""timm architectures with weights from a file: ``--arch timm:NAME --model weights.safetensors`` (or a .pth
state dict). The network is built with ``pretrained=False`` (no download), with ``dynamic_img_size=True`` where
the architecture takes it (a ViT then runs at any input size); the class count is read off the weights; the input
size and normalization come from the model's ``pretrained_cfg``."""

from pathlib import Path

from xcam.app.models.hints import Hints, attach, missing
from xcam.errors import XcamError

PREFIX = "timm:"


def _state(path: Path):
    import torch

    from xcam.app.models.torch_models import _state_dict

    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise XcamError(f"cannot read weights {str(path)!r}: {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'}") from None
    state = _state_dict(obj)
    if state is None:
        raise XcamError(f"{str(path)!r} holds a {type(obj).__name__}, not a state dict")
    return state


def _create(timm, name, **kwargs):
    try:
        return timm.create_model(name, pretrained=False, dynamic_img_size=True, **kwargs)
    except TypeError:
        return timm.create_model(name, pretrained=False, **kwargs)


def load(path, arch: str, num_classes=None):
    """The timm model ``arch`` ("timm:NAME") with the weights in ``path``, in eval mode, with its ``Hints``."""
    name = arch[len(PREFIX):]
    try:
        import timm
    except ImportError:
        raise XcamError(missing("timm", "--arch timm:...")) from None
    path = Path(path)
    if not path.is_file():
        raise XcamError(f"cannot read weights {str(path)!r}: no such file")
    if name not in timm.list_models():
        close = timm.list_models(f"*{name}*")[:8]
        raise XcamError(f"unknown timm architecture {name!r}" + (f"; close: {', '.join(close)}" if close else ""))
    state = _state(path)
    model = _create(timm, name)
    if num_classes is None:
        head = model.pretrained_cfg.get("classifier")
        head = head[0] if isinstance(head, (list, tuple)) else head
        weight = state.get(f"{head}.weight") if head else None
        num_classes = int(weight.shape[0]) if weight is not None else model.num_classes
    if num_classes != model.num_classes:
        model = _create(timm, name, num_classes=num_classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        lines = str(exc).splitlines()
        raise XcamError(f"the weights in {str(path)!r} do not fit timm {name} with {num_classes} classes: "
                        f"{(lines[1] if len(lines) > 1 else lines[0]).strip()}") from None
    cfg = model.pretrained_cfg
    size = tuple(int(s) for s in cfg["input_size"][1:]) if cfg.get("input_size") else None
    norm = (tuple(cfg["mean"]), tuple(cfg["std"])) if cfg.get("mean") and cfg.get("std") else None
    return attach(model.eval(), Hints(size=size, normalize=norm, source="timm pretrained_cfg"))
