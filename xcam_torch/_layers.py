"""Record every module's output shape in one dummy forward (for `xcam layers` and the default layer)."""

from torch import nn

from ._capture import layer_records

__all__ = ["input_shape", "layer_records"]


def input_shape(model: nn.Module) -> tuple:
    """(C, None, ...): the channel count of the first convolution (3 if there is none) and one None per spatial
    axis it convolves (Conv1d: (C, None), Conv3d: (C, None, None, None)); PyTorch modules do not declare an
    input size."""
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return (m.in_channels, *[None] * (m.weight.ndim - 2))
    return (3, None, None)
