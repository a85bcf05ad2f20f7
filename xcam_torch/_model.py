"""The model's modules by name, the tensor ops and a target's parameters as tensors: what the capture and
LeGrad's attention watch both use (``_capture`` and ``_attention`` import it, never each other's way back)."""

import torch
from torch import nn

from xcam.errors import XcamError
from xcam.layers import unknown_layer

from ._tensor_ops import TorchOps

OPS = TorchOps()


def resolve_module(model: nn.Module, layer) -> tuple[str, nn.Module]:
    """(name, module) for a dotted name ("features.10") or a module object of ``model``."""
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name, module
        raise XcamError(f"the given {type(layer).__name__} module is not part of the model")
    modules = dict(model.named_modules())
    if isinstance(layer, str) and layer in modules and layer != "":
        return layer, modules[layer]
    raise unknown_layer(str(layer), [n for n in modules if n])


def first_tensor(tree):
    """The first tensor inside an output (the device and dtype target parameters go to)."""
    if isinstance(tree, torch.Tensor):
        return tree
    values = tree.values() if isinstance(tree, dict) else tree if isinstance(tree, (list, tuple)) else ()
    for v in values:
        found = first_tensor(v)
        if found is not None:
            return found
    return None


def tensors(params: dict, like) -> dict:
    """A target's NumPy parameters as tensors next to ``like``."""
    return {k: OPS.constant(v, like) for k, v in params.items()}
