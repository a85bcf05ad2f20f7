"""Record every module's output shape in one dummy forward (for `xcam layers` and the default layer)."""

import torch
from torch import nn

from xcam.layers import LayerRecord, LayerRecorder

from ._capture import dry_run

_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout, nn.Dropout2d,
          nn.Identity, nn.Flatten)


def layer_records(model: nn.Module, input_shape: tuple) -> list[LayerRecord]:
    """One record per named module, in the order modules finish, from a forward on zeros (1, C, H, W)."""
    recorder = LayerRecorder()

    def hook(name):
        def record(module, args, out):
            is_tensor = isinstance(out, torch.Tensor)
            recorder.saw(name, tuple(out.shape) if is_tensor else None, id(out) if is_tensor else None)
        return record

    named = [(n, m) for n, m in model.named_modules() if n]
    dry_run(model, input_shape, [(m, hook(n)) for n, m in named])
    return recorder.records({n: type(m).__name__ for n, m in named},
                            {n for n, m in named if isinstance(m, _POOLS)})


def input_shape(model: nn.Module) -> tuple:
    """(C, None, None): the channel count of the first convolution (3 if there is none); PyTorch modules do
    not declare an input size."""
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return (m.in_channels, None, None)
    return (3, None, None)
