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


def model_facts(model: nn.Module) -> tuple:
    """(feature sizes, patch embedding, prefix tokens): what layout detection reads off the whole model, in one
    walk of its modules (a capture or a layer listing computes it once for all its layers). Feature sizes: every
    size the modules declare (channels, widths). Patch embedding: (kernel, stride, padding) of the first 2-D
    convolution (registration order) whose stride equals its kernel and exceeds 1 (a ViT's 16x16/16
    projection), or None. Prefix tokens: class / distillation / register tokens the model prepends, counted
    (``xcam.layouts.count_prefix`` of the parameters, each once, by path)."""
    sizes, patch, shapes, seen = set(), None, {}, set()
    for name, m in model.named_modules():
        declared = _features(m)
        if declared is not None:
            sizes.add(declared[1])
        if patch is None and isinstance(m, nn.Conv2d) and tuple(m.stride) == tuple(m.kernel_size) \
                and max(m.stride) > 1 and isinstance(m.padding, tuple):
            patch = tuple(m.kernel_size), tuple(m.stride), tuple(m.padding)
        for pname, p in m._parameters.items():
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                shapes[f"{name}.{pname}" if name else pname] = tuple(p.shape)
    declared = getattr(model, "num_prefix_tokens", None)
    return sizes, patch, count_prefix(shapes, declared if isinstance(declared, int) else None)


def torch_reshape(fn):
    """A user's reshape written for tensors (pytorch-grad-cam's ``reshape_transform``), run on NumPy arrays."""
    def run(a: np.ndarray) -> np.ndarray:
        out = fn(torch.from_numpy(np.ascontiguousarray(a)))
        return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    run.__qualname__ = getattr(fn, "__qualname__", "reshape")
    return run


def layout_of(model: nn.Module, module: nn.Module, shape: tuple, input_rank: int, reshape=None,
              spatial=None, facts: tuple | None = None) -> Layout:
    """The layout of ``module``'s output of ``shape`` (N, ...): the user's ``reshape`` if given, else detected;
    ``spatial``: the input's (h, w), whose grid under the patch embedding lays out non-square token counts.
    ``facts``: ``model_facts(model)`` when the caller has it (else walked here)."""
    sizes, patch, prefix = model_facts(model) if facts is None else facts
    grid = None if patch is None or spatial is None or len(spatial) != 2 else patch_grid(tuple(spatial), *patch)
    if reshape is not None:
        if callable(reshape) and not isinstance(reshape, Layout):
            reshape = torch_reshape(reshape)
        return as_layout(reshape, shape, input_rank, prefix, grid)
    return detect(tuple(shape), default="channels_first", input_rank=input_rank, own=own_features(module, tuple(shape)),
                  sizes=sizes, prefix=prefix, patches_grid=grid)
