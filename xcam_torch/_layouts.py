"""Which layout a PyTorch layer's output has: the module's own feature size, the model's feature sizes and its
counted prefix tokens feed the core's rule (``xcam.layouts.detect``). Mechanics only."""

import numpy as np
import torch
from torch import nn

from xcam.layouts import Layout, as_layout, count_prefix, detect, patch_grid


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


def own_features(module: nn.Module, shape: tuple | None = None):
    """The feature size and axis of the last module (in registration order) inside ``module`` that declares one;
    given the output's ``shape``, when that one does not fit it, the last that does (a Swin stage registers its
    patch merging's reduction Linear(4C, 2C) before its LayerNorm(4C), and returns 2C features)."""
    declared = [f for f in map(_features, module.modules()) if f is not None]
    if not declared or shape is None:
        return declared[-1] if declared else None
    fits = [f for f in declared if len(shape) >= 2 and shape[1 if f[0] == "first" else -1] == f[1]]
    return declared[-1] if not fits or fits[-1] == declared[-1] else fits[-1]


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


def patch_embedding(model: nn.Module):
    """(kernel, stride, padding) of the model's patch embedding: its first 2-D convolution (registration order)
    whose stride equals its kernel and exceeds 1 (a ViT's 16x16/16 projection), or None."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and tuple(m.stride) == tuple(m.kernel_size) and max(m.stride) > 1 \
                and isinstance(m.padding, tuple):
            return tuple(m.kernel_size), tuple(m.stride), tuple(m.padding)
    return None


def input_patches(model: nn.Module, spatial) -> tuple | None:
    """The grid the model's patch embedding lays over an input of ``spatial`` (h, w) size, or None."""
    found = patch_embedding(model) if spatial is not None and len(spatial) == 2 else None
    return None if found is None else patch_grid(tuple(spatial), *found)


def layout_of(model: nn.Module, module: nn.Module, shape: tuple, input_rank: int, reshape=None,
              spatial=None) -> Layout:
    """The layout of ``module``'s output of ``shape`` (N, ...): the user's ``reshape`` if given, else detected;
    ``spatial``: the input's (h, w), whose grid under the patch embedding lays out non-square token counts."""
    prefix = prefix_tokens(model)
    grid = input_patches(model, spatial)
    if reshape is not None:
        if callable(reshape) and not isinstance(reshape, Layout):
            reshape = torch_reshape(reshape)
        return as_layout(reshape, shape, input_rank, prefix, grid)
    return detect(tuple(shape), default="channels_first", input_rank=input_rank, own=own_features(module, tuple(shape)),
                  sizes=model_sizes(model), prefix=prefix, patches_grid=grid)
