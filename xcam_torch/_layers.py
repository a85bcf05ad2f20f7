"""Record every module's output shape in one dummy forward (for `xcam layers` and the default layer)."""

import torch
from torch import nn

from xcam.layers import LayerRecord

from ._capture import dry_run

_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout, nn.Dropout2d,
          nn.Identity, nn.Flatten)


def layer_records(model: nn.Module, input_shape: tuple[int, int, int]) -> list[LayerRecord]:
    """One record per named module, in the order modules finish, from a forward on zeros (1, C, H, W)."""
    order: list[str] = []
    info: dict[str, dict] = {}
    owner: dict[int, str] = {}

    def hook(name):
        def record(module, args, out):
            entry = info.setdefault(name, {"calls": 0, "shape": None, "same": None})
            entry["calls"] += 1
            if entry["calls"] == 1:
                order.append(name)
                if isinstance(out, torch.Tensor):
                    entry["shape"] = tuple(out.shape)
                    entry["same"] = owner.get(id(out))
                    owner[id(out)] = name
        return record

    named = [(n, m) for n, m in model.named_modules() if n]
    dry_run(model, input_shape, [(m, hook(n)) for n, m in named])
    kinds = dict(named)
    return [LayerRecord(name=n, kind=type(kinds[n]).__name__, shape=info[n]["shape"], calls=info[n]["calls"],
                        is_pool=isinstance(kinds[n], _POOLS), same_as=info[n]["same"]) for n in order]


def input_channels(model: nn.Module) -> int:
    """The channel count of the first convolution (what the model takes), 3 if none is found."""
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return m.in_channels
    return 3
