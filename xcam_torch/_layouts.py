"""Which layout a PyTorch layer's output has: the module's own feature size, the model's feature sizes and its
counted prefix tokens feed the core's rule (``xcam.layouts.detect``). Mechanics only."""

import numpy as np
import torch
from torch import nn

from xcam.layouts import Layout, as_layout, count_prefix, detect


def _features(module: nn.Module):
    """("first" | "last", size) that one module declares for its output, or None."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return "first", module.out_channels
    if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)):
        return "first", module.num_features
    if isinstance(module, nn.GroupNorm):
        return "first", module.num_channels
    if isinstance(module, nn.Linear):
        return "last", module.out_features
    if isinstance(module, nn.LayerNorm) and module.normalized_shape:
        return "last", module.normalized_shape[-1]
    return None


def own_features(module: nn.Module):
    """The feature size and axis of the last module (in registration order) inside ``module`` that declares one."""
    found = None
    for m in module.modules():
        found = _features(m) or found
    return found


def model_sizes(model: nn.Module) -> set:
    """Every feature size the model's modules declare (channels, widths)."""
    return {f[1] for f in map(_features, model.modules()) if f is not None}


def prefix_tokens(model: nn.Module) -> int:
    """Class / distillation / register tokens the model prepends, counted (``xcam.layouts.count_prefix``)."""
    declared = getattr(model, "num_prefix_tokens", None)
    return count_prefix({n: tuple(p.shape) for n, p in model.named_parameters()},
                        declared if isinstance(declared, int) else None)


def torch_reshape(fn):
    """A user's reshape written for tensors (pytorch-grad-cam's ``reshape_transform``), run on NumPy arrays."""
    def run(a: np.ndarray) -> np.ndarray:
        out = fn(torch.from_numpy(np.ascontiguousarray(a)))
        return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    run.__qualname__ = getattr(fn, "__qualname__", "reshape")
    return run


def layout_of(model: nn.Module, module: nn.Module, shape: tuple, input_rank: int, reshape=None) -> Layout:
    """The layout of ``module``'s output of ``shape`` (N, ...): the user's ``reshape`` if given, else detected."""
    prefix = prefix_tokens(model)
    if reshape is not None:
        if callable(reshape) and not isinstance(reshape, Layout):
            reshape = torch_reshape(reshape)
        return as_layout(reshape, shape, input_rank, prefix)
    return detect(tuple(shape), default="channels_first", input_rank=input_rank, own=own_features(module),
                  sizes=model_sizes(model), prefix=prefix)
