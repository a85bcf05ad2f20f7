"""Randomizing a model's top layers for the cascading randomization test, and putting every weight back exactly.
The order, the distribution and the values come from xcam.randomization; this file only lists and sets tensors."""

import contextlib

import numpy as np
import torch
from torch import nn

from xcam.randomization import ParamLayer, check_cascade_names, random_parameters


def _own_parameters(module: nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in module.parameters(recurse=False) if p.requires_grad and p.is_floating_point()]


def parameter_layers(model: nn.Module) -> list[ParamLayer]:
    """Every module with trainable parameters of its own, in registration order (the input-to-output order of
    sequential CNNs; Quantus' order too), shapes as PyTorch holds them (the canonical layout)."""
    return [ParamLayer(name, tuple(tuple(p.shape) for p in _own_parameters(m)))
            for name, m in model.named_modules() if name and _own_parameters(m)]


@contextlib.contextmanager
def randomized(model: nn.Module, layers, seed: int = 0, *, first_position: int = 0):
    """Inside the block, the parameters of ``layers`` (names, the cascade's top-down order: ``layers[j]`` gets
    ``xcam.randomization.random_parameters(..., position=first_position + j, seed)``) hold random values; on exit
    every one of them is copied back bit for bit (and any ``.grad`` left as it was). Nested blocks randomize a
    cascade one layer at a time (``first_position`` = the layer's place in it) and unwind in order."""
    records = {r.name: r for r in parameter_layers(model)}
    names = check_cascade_names(layers, list(records))
    modules = dict(model.named_modules())
    saved = []
    try:
        with torch.no_grad():
            for position, name in enumerate(names):
                params = _own_parameters(modules[name])
                for p, value in zip(params, random_parameters(records[name], first_position + position, seed)):
                    saved.append((p, p.detach().clone()))
                    p.copy_(torch.from_numpy(np.ascontiguousarray(value)).to(device=p.device, dtype=p.dtype))
        yield model
    finally:
        with torch.no_grad():
            for p, old in reversed(saved):
                p.copy_(old)
