"""Record every module's output shape in one dummy forward (for `xcam layers` and the default layer)."""

import torch
from torch import nn

from xcam.layers import LayerRecord, LayerRecorder

from ._capture import dry_run
from ._layouts import layout_of

_POOLS = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
          nn.modules.pooling._AdaptiveMaxPoolNd, nn.modules.dropout._DropoutNd, nn.Identity, nn.Flatten)


def layer_records(model: nn.Module, input_shape: tuple) -> list[LayerRecord]:
    """One record per named module, in the order modules finish, from a forward on zeros (1, C, *S); shapes
    channels first after each layer's layout (tokens on their grid)."""
    recorder = LayerRecorder()

    rank = len(input_shape) - 1

    def hook(name):
        def record(module, args, out):
            is_tensor = isinstance(out, torch.Tensor)
            recorder.saw(name, tuple(out.shape) if is_tensor else None, out if is_tensor else None,
                         lambda shape: layout_of(model, module, shape, rank))
        return record

    named = [(n, m) for n, m in model.named_modules() if n]
    dry_run(model, input_shape, [(m, hook(n)) for n, m in named])
    return recorder.records({n: type(m).__name__ for n, m in named},
                            {n for n, m in named if isinstance(m, _POOLS)})


def input_shape(model: nn.Module) -> tuple:
    """(C, None, ...): the channel count of the first convolution (3 if there is none) and one None per spatial
    axis it convolves (Conv1d: (C, None), Conv3d: (C, None, None, None)); PyTorch modules do not declare an
    input size."""
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return (m.in_channels, *[None] * (m.weight.ndim - 2))
    return (3, None, None)
