"""The probe: extra batched forwards and input gradients that perturbation and pixel methods ask for.
It runs the model; the masks, ablations, noise and weights are made in xcam/."""

import numpy as np
import torch
from torch import nn

from xcam.errors import XcamError
from xcam.targets import as_target, batch_params

from ._capture import (
    OPS,
    as_batch,
    check_gradients_possible,
    first_tensor,
    hooked,
    preserved,
    resolve_module,
    tensors,
    to_numpy,
)

_RELUS = (nn.ReLU, nn.ReLU6)


class _PositiveGradient(torch.autograd.Function):
    """Identity forward; backward passes only positive gradients (guided backprop, with the ReLU's own
    backward supplying the [x > 0] factor)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(min=0)


class Probe:
    """``xcam.contract.Probe`` for a PyTorch model, one layer, one batch and one output selection."""

    def __init__(self, model: nn.Module, module: nn.Module, batch: torch.Tensor, output=None):
        self.model, self.module, self.batch, self.output = model, module, batch, output
        self.inputs = batch.detach().float().cpu().numpy()

    def _forward(self, x: torch.Tensor, whole: bool = False):
        """The selected output for inputs ``x``. The batch is handed over channels-last, which oneDNN/cuDNN
        convolve faster (measured 1.3x on AlexNet, CPU); a model that needs a contiguous input (a view or
        reshape of it) gets one."""
        with hooked(self.model, [], self.output, whole) as run, preserved(self.model):
            try:
                return run(x.contiguous(memory_format=torch.channels_last))
            except RuntimeError:
                return run(x.contiguous())

    def _forward_from_layer(self, sample: int, activations: np.ndarray, whole: bool = False):
        """The selected output when the layer's output for input ``sample`` is replaced by ``activations``.
        The layers before it run once, on that one input; if the network cannot broadcast a batch of one
        against B (a concatenation with an earlier layer), the input is repeated B times."""
        replacement = torch.from_numpy(np.ascontiguousarray(activations)).to(device=self.batch.device,
                                                                           dtype=self.batch.dtype)
        one = self.batch[sample:sample + 1]
        hook = (self.module, lambda m, args, out: replacement)
        with hooked(self.model, [hook], self.output, whole) as run, preserved(self.model):
            try:
                out = run(one)
                if not isinstance(out, torch.Tensor) or out.shape[0] == replacement.shape[0]:
                    return out
            except RuntimeError:
                pass
            return run(one.expand(replacement.shape[0], *one.shape[1:]))

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """The selected output (logits (B, K) for a classifier) for a batch of inputs (B, C, H, W)."""
        return to_numpy(self._forward(as_batch(self.model, inputs)))

    def predict_from_layer(self, sample: int, activations: np.ndarray) -> np.ndarray:
        """The selected output (B, K) when the layer's output for input ``sample`` is ``activations``."""
        return to_numpy(self._forward_from_layer(sample, activations))

    def _scores(self, out, target, samples) -> np.ndarray:
        with torch.no_grad():
            return to_numpy(target.score(out, tensors(batch_params(target, len(self.inputs), samples),
                                                      first_tensor(out)), OPS))

    def score(self, inputs: np.ndarray, target, samples: np.ndarray) -> np.ndarray:
        """The target's scores (B,) or (B, K) for inputs whose row b belongs to sample ``samples[b]``."""
        return self._scores(self._forward(as_batch(self.model, inputs), target.whole_output), target, samples)

    def score_from_layer(self, sample: int, activations: np.ndarray, target) -> np.ndarray:
        """The target's scores for input ``sample`` with the layer's output replaced by ``activations``."""
        out = self._forward_from_layer(sample, activations, target.whole_output)
        return self._scores(out, target, np.full(len(activations), sample))

    def input_gradients(self, inputs: np.ndarray, targets, guided: bool = False, samples=None) -> np.ndarray:
        """d score / d input (B, C, H, W) for a Target or class indices; ``guided`` passes only positive
        gradients through every nn.ReLU / nn.ReLU6 (forward hooks for this call only: the modules are not
        changed)."""
        target = as_target(targets)
        x = as_batch(self.model, inputs).detach().requires_grad_(True)
        hooks = [(m, lambda mod, args, out: _PositiveGradient.apply(out))
                 for m in self.model.modules() if isinstance(m, _RELUS)] if guided else []
        if guided and not hooks:
            raise XcamError("guided backprop needs nn.ReLU modules; this model has none "
                            "(functional relu calls cannot be guided without changing the model)")
        check_gradients_possible(self.model)
        params = target.params(len(x)) if samples is None else batch_params(target, len(self.inputs), samples)
        with hooked(self.model, hooks, self.output, target.whole_output) as run, preserved(self.model):
            torch.set_grad_enabled(True)
            out = run(x)
            score = target.score(out, tensors(params, first_tensor(out)), OPS)
            (grad,) = torch.autograd.grad(score.sum(), x, allow_unused=True, materialize_grads=True)
        return grad.float().cpu().numpy()


def probe(model: nn.Module, inputs, layer, output=None) -> Probe:
    """A ``Probe`` for methods that run the model again on this batch (N, C, H, W), layer and output."""
    return Probe(model, resolve_module(model, layer)[1], as_batch(model, inputs), output)


class _Stop(Exception):
    """Raised by a hook once the layer's output exists: the rest of the forward is not needed."""


def kernels(model: nn.Module, layer) -> np.ndarray:
    """A conv layer's weights as (out, in / groups, kh, kw) NumPy (PyTorch's own layout)."""
    name, module = resolve_module(model, layer)
    if not isinstance(module, nn.modules.conv._ConvNd) or module.weight.ndim != 4:
        raise XcamError(f"layer {name!r} is a {type(module).__name__}, not a 2-D convolution with kernels")
    return module.weight.detach().float().cpu().numpy()


def activation_gradient(model: nn.Module, layer, inputs: np.ndarray, channel: int) -> np.ndarray:
    """d mean_{h,w} A[n, channel] / d input for each image n (the forward stops at the layer)."""
    name, module = resolve_module(model, layer)
    x = as_batch(model, inputs).detach().requires_grad_(True)
    kept = {}

    def stop(mod, args, out):
        kept["out"] = out
        raise _Stop

    with hooked(model, [(module, stop)]), preserved(model):
        torch.set_grad_enabled(True)
        try:
            model(x)
        except _Stop:
            pass
        out = kept.get("out")
        if out is None or out.ndim != 4:
            raise XcamError(f"layer {name!r} did not give a spatial output (N, C, h, w)")
        if not 0 <= channel < out.shape[1]:
            raise XcamError(f"channel {channel} is out of range: layer {name!r} has {out.shape[1]} channels")
        (grad,) = torch.autograd.grad(out[:, channel].mean(dim=(1, 2)).sum(), x)
    return grad.float().cpu().numpy()
