"""The probe: extra batched forwards and input gradients that perturbation and pixel methods ask for.
It runs the model; the masks, ablations, noise and weights are made in xcam/."""

import numpy as np
import torch
from torch import nn

from xcam.errors import XcamError

from ._capture import as_batch, hooked, preserved, resolve_module
from ._layouts import layout_of

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
    """``xcam.contract.Probe`` for a PyTorch model, one layer and one batch."""

    def __init__(self, model: nn.Module, module: nn.Module, batch: torch.Tensor, reshape=None):
        self.model, self.module, self.batch, self.reshape = model, module, batch, reshape
        self.inputs = batch.detach().float().cpu().numpy()

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Logits (B, K) for a batch of inputs (B, C, *S). An image batch is handed over channels-last, which
        oneDNN/cuDNN convolve faster (measured 1.3x on AlexNet, CPU); a model that needs a contiguous input
        (a view or reshape of it) gets one."""
        x = as_batch(self.model, inputs)
        fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.ndim, torch.contiguous_format)
        with hooked(self.model, []) as run, preserved(self.model):
            try:
                return run(x.contiguous(memory_format=fmt)).float().cpu().numpy()
            except RuntimeError:
                return run(x.contiguous()).float().cpu().numpy()

    def predict_from_layer(self, sample: int, activations: np.ndarray) -> np.ndarray:
        """Logits (B, K) when the layer's output for input ``sample`` is replaced by ``activations``
        (B, C, *s), brought back to the layer's own layout (tokens keep their prefix tokens). The layers
        before it run once, on that one input; if the network cannot broadcast a batch of one against B (a
        concatenation with an earlier layer), the input is repeated B times."""
        one = self.batch[sample:sample + 1]
        rank, box = self.batch.ndim - 2, {}

        def replace(module, args, out):
            if "value" not in box:
                native = out.detach().float().cpu().numpy()
                layout = layout_of(self.model, module, native.shape, rank, self.reshape)
                box["value"] = torch.from_numpy(layout.from_canonical(activations, native[:1])).to(
                    device=out.device, dtype=out.dtype)
            return box["value"]

        hook = (self.module, replace)
        with hooked(self.model, [hook]) as run, preserved(self.model):
            try:
                out = run(one)
                if out.shape[0] == len(activations):
                    return out.float().cpu().numpy()
            except RuntimeError:
                pass
            return run(one.expand(len(activations), *one.shape[1:])).float().cpu().numpy()

    def input_gradients(self, inputs: np.ndarray, targets: np.ndarray, guided: bool = False) -> np.ndarray:
        """d logit[n, targets[n]] / d input (B, C, *S); ``guided`` passes only positive gradients through
        every nn.ReLU / nn.ReLU6 (forward hooks for this call only: the modules are not changed)."""
        x = as_batch(self.model, inputs).detach().requires_grad_(True)
        hooks = [(m, lambda mod, args, out: _PositiveGradient.apply(out))
                 for m in self.model.modules() if isinstance(m, _RELUS)] if guided else []
        if guided and not hooks:
            raise XcamError("guided backprop needs nn.ReLU modules; this model has none "
                            "(functional relu calls cannot be guided without changing the model)")
        with hooked(self.model, hooks) as run, preserved(self.model):
            torch.set_grad_enabled(True)
            logits = run(x)
            index = torch.as_tensor(np.asarray(targets), device=logits.device)[:, None]
            (grad,) = torch.autograd.grad(logits.gather(1, index).sum(), x)
        return grad.float().cpu().numpy()


def probe(model: nn.Module, inputs, layer, reshape=None) -> Probe:
    """A ``Probe`` for methods that run the model again on this batch (N, C, *S) and layer (its layout
    detected, or given by ``reshape`` as in ``capture``)."""
    return Probe(model, resolve_module(model, layer)[1], as_batch(model, inputs), reshape)


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
