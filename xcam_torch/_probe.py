"""The probe: extra batched forwards and input gradients that perturbation and pixel methods ask for.
It runs the model; the masks, ablations, noise and weights are made in xcam/."""

import contextlib
import functools

import numpy as np
import torch
from torch import nn

from xcam.contract import warn_low_precision
from xcam.errors import XcamError
from xcam.inputs import SINGLE, name
from xcam.layer_outputs import pick, put
from xcam.targets import as_target, batch_params, check_rows

from ._capture import (
    OPS,
    Batch,
    as_batch,
    check_gradients_possible,
    first_tensor,
    hooked,
    model_device,
    preserved,
    resolve_module,
    tensors,
    to_numpy,
)
from ._layouts import layout_of, model_facts

_RELUS = (nn.ReLU, nn.ReLU6)


@contextlib.contextmanager
def _pre_hooked(pairs):
    """(module, forward pre-hook) pairs registered for the block only."""
    handles = []
    try:
        handles.extend(m.register_forward_pre_hook(h) for m, h in pairs)
        yield
    finally:
        for h in handles:
            h.remove()


class _PositiveGradient(torch.autograd.Function):
    """Identity forward; backward passes only positive gradients (guided backprop, with the ReLU's own
    backward supplying the [x > 0] factor)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(min=0)


class _PositiveOutputGradient(torch.autograd.Function):
    """Forward: the ReLU module's own output ``out``; backward: the positive part of the output gradient, handed
    straight to the module's input ``x`` (the ReLU's own backward is skipped: deconvnet)."""

    @staticmethod
    def forward(ctx, x, out):
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(min=0), None


def _relu_hooks(model: nn.Module, mode):
    """(forward pre-hooks, forward hooks) on every nn.ReLU / nn.ReLU6 for the ReLU backward ``mode``: True or
    "guided" (positive gradients, then the ReLU's own backward), "deconvnet" (positive output gradients straight
    to the input; the pre-hook hands the module a copy so an in-place ReLU leaves the input it saw)."""
    relus = [m for m in model.modules() if isinstance(m, _RELUS)]
    if mode != "deconvnet":
        return [], [(m, lambda mod, args, out: _PositiveGradient.apply(out)) for m in relus]
    seen: dict = {}

    def keep(mod, args):
        seen[mod] = args[0]
        return (args[0].clone(),) + tuple(args[1:]) if getattr(mod, "inplace", False) else None

    return ([(m, keep) for m in relus],
            [(m, lambda mod, args, out: _PositiveOutputGradient.apply(seen.pop(mod), out)) for m in relus])


class Probe:
    """``xcam.contract.Probe`` for a PyTorch model, one layer, one batch and one output selection."""

    def __init__(self, model: nn.Module, module: nn.Module, batch: Batch, output=None, reshape=None, key=None,
                 call=None, layer_output=None):
        self.model, self.module, self.batch, self.output, self.reshape = model, module, batch, output, reshape
        self.layer_output = layer_output   # which tensor of a structured layer output (``xcam.layer_outputs``)
        self.call = call or 0   # which call of a shared layer is replaced
        if batch.kind != SINGLE and key is not None and key not in batch.keys:
            raise XcamError(f"{name(key)} is not an image-like input; image-like inputs: "
                            f"{', '.join(name(k) for k in batch.keys) or 'none'}")
        self.key = key if key is not None or batch.kind == SINGLE else (batch.keys or [None])[0]
        self.inputs = None if self.key is None and batch.kind != SINGLE else \
            batch.get(self.key).detach().float().cpu().numpy()

    @functools.cached_property
    def facts(self) -> tuple:
        """``model_facts`` of the model, walked once per probe (the layout of every call reads it)."""
        return model_facts(self.model)

    def _inputs(self, inputs: np.ndarray, samples=None) -> Batch:
        """All the model's inputs with the explained one replaced by ``inputs`` (its rows ``samples``)."""
        x = as_batch(self.model, inputs) if self.batch.kind == SINGLE else \
            torch.as_tensor(np.ascontiguousarray(inputs)).to(self.batch.get(self.key))   # as the model was given
        return self.batch.swap(self.key, x, samples)

    def _forward(self, x: Batch, whole: bool = False):
        """The selected output for inputs ``x``. One image batch is handed over channels-last, which
        oneDNN/cuDNN convolve faster (measured 1.3x on AlexNet, CPU); a model that needs a contiguous input
        (a view or reshape of it) gets one. ``softmax_skipped`` records whether a final softmax was skipped."""
        with hooked(self.model, [], self.output, whole) as run, preserved(self.model):
            try:
                if x.kind != SINGLE:
                    return run(x)
                t = x.get()
                fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(t.ndim, torch.contiguous_format)
                try:
                    return run(x.swap(None, t.contiguous(memory_format=fmt)))
                except RuntimeError:
                    return run(x.swap(None, t.contiguous()))
            finally:
                self.softmax_skipped = getattr(run, "softmax_skipped", False)

    def _forward_from_layer(self, sample: int, activations: np.ndarray, whole: bool = False):
        """The selected output when the layer's output for input ``sample`` is replaced by ``activations``
        (B, C, *s), brought back to the layer's own layout (tokens keep their prefix tokens). The layers
        before it run once, on that one input; if the network cannot broadcast a batch of one against B (a
        concatenation with an earlier layer), the input is repeated B times."""
        one = self.batch.rows(sample)
        rank, box = self.batch.rank, {}

        def replace(module, args, out):
            index = box["calls"] = box.get("calls", -1) + 1
            if index != self.call:
                return None
            part, tensor = pick(out, self.layer_output)
            if "value" not in box:
                native = tensor.detach().float().cpu().numpy()
                layout = layout_of(self.model, module, native.shape, rank, self.reshape,
                                   tuple(self.batch.get().shape[2:]) if self.batch.keys else None, self.facts)
                box["value"] = torch.from_numpy(layout.from_canonical(activations, native[:1])).to(
                    device=tensor.device, dtype=tensor.dtype)
            return put(out, part, box["value"])

        hook = (self.module, replace)
        with hooked(self.model, [hook], self.output, whole) as run, preserved(self.model):
            try:
                box.pop("calls", None)
                out = run(one)
                if not isinstance(out, torch.Tensor) or out.shape[0] == len(activations):
                    return out
            except RuntimeError:
                pass
            box.pop("calls", None)
            return run(self.batch.rows(sample, len(activations)))

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """The selected output (logits (B, K) for a classifier) for a batch of inputs (B, C, *S)."""
        return to_numpy(self._forward(self._inputs(inputs)))

    def predict_from_layer(self, sample: int, activations: np.ndarray) -> np.ndarray:
        """The selected output (B, K) when the layer's output for input ``sample`` is ``activations``."""
        return to_numpy(self._forward_from_layer(sample, activations))

    def _scores(self, out, target, samples) -> np.ndarray:
        with torch.no_grad():
            return to_numpy(target.score(out, tensors(batch_params(target, len(self.inputs), samples),
                                                      first_tensor(out)), OPS))

    def score(self, inputs: np.ndarray, target, samples: np.ndarray) -> np.ndarray:
        """The target's scores (B,) or (B, K) for inputs whose row b belongs to sample ``samples[b]``."""
        out = self._forward(self._inputs(inputs, samples), target.whole_output)
        if self.module is None:  # no capture checked the target: range, logits (a final softmax skipped)
            check_rows(target, to_numpy(out), len(self.inputs), samples, self.softmax_skipped)
        return self._scores(out, target, samples)

    def score_from_layer(self, sample: int, activations: np.ndarray, target) -> np.ndarray:
        """The target's scores for input ``sample`` with the layer's output replaced by ``activations``."""
        out = self._forward_from_layer(sample, activations, target.whole_output)
        return self._scores(out, target, np.full(len(activations), sample))

    def input_gradients(self, inputs: np.ndarray, targets, guided: bool = False, samples=None) -> np.ndarray:
        """d score / d input (B, C, *S) for a Target or class indices; ``guided`` (True or "guided") passes only
        positive gradients through every nn.ReLU / nn.ReLU6, "deconvnet" passes their positive output gradients
        to their inputs (hooks for this call only: the modules are not changed)."""
        target = as_target(targets)
        batch = self._inputs(inputs, samples)
        x = batch.get(self.key).detach().requires_grad_(True)
        batch = batch.swap(self.key, x, None)
        pre, hooks = _relu_hooks(self.model, guided) if guided else ([], [])
        if guided and not hooks:
            what = "deconvnet" if guided == "deconvnet" else "guided backprop"
            raise XcamError(f"{what} needs nn.ReLU modules; this model has none "
                            "(functional relu calls cannot be guided without changing the model)")
        check_gradients_possible(self.model)
        params = target.params(len(x)) if samples is None else batch_params(target, len(self.inputs), samples)
        with hooked(self.model, hooks, self.output, target.whole_output) as run, preserved(self.model), \
                _pre_hooked(pre):
            torch.set_grad_enabled(True)
            out = run(batch)
            if self.module is None:  # no capture checked the target: range, logits (a final softmax skipped)
                check_rows(target, to_numpy(out), len(self.inputs), samples, run.softmax_skipped)
            score = target.score(out, tensors(params, first_tensor(out)), OPS)
            (grad,) = torch.autograd.grad(score.sum(), x, allow_unused=True, materialize_grads=True)
        return grad.float().cpu().numpy()

    def layer_gradients(self, inputs: np.ndarray, target, samples=None) -> tuple:
        """The layer's activations and d score / d activations, both (B, C, *s) canonical, for inputs
        (B, C_in, *S) whose row b belongs to input ``samples[b]`` (default: the batch itself). The graph starts
        at the layer's output (the layers before it run without autograd); no parameter gets a ``.grad``."""
        box, rank = {}, self.batch.rank
        target = as_target(target)

        def keep(module, args, out):
            index = box["calls"] = box.get("calls", -1) + 1
            if index != self.call:
                return None
            box["out"] = out.detach().requires_grad_(True)
            torch.set_grad_enabled(True)                  # the graph starts here; restored by `preserved`
            return box["out"].clone()                     # later in-place ops change the copy only

        batch = self._inputs(inputs, samples)
        check_gradients_possible(self.model)
        params = target.params(len(inputs)) if samples is None else batch_params(target, len(self.inputs), samples)
        with hooked(self.model, [(self.module, keep)], self.output, target.whole_output) as run, \
                preserved(self.model):
            out = run(batch)
            if "out" not in box:
                raise XcamError("the layer did not run in the forward pass")
            score = target.score(out, tensors(params, first_tensor(out)), OPS)
            if not score.requires_grad:
                g = torch.zeros_like(box["out"])
            else:
                (g,) = torch.autograd.grad(score.sum(), box["out"], allow_unused=True, materialize_grads=True)
        a, g = box["out"].detach().float().cpu().numpy(), g.float().cpu().numpy()
        layout = layout_of(self.model, self.module, a.shape, rank, self.reshape,
                           tuple(self.batch.get().shape[2:]) if self.batch.keys else None, self.facts)
        return layout.to_canonical(a), layout.to_canonical(g)


def probe(model: nn.Module, inputs, layer, output=None, reshape=None, key=None, call=None,
          layer_output=None) -> Probe:
    """A ``Probe`` for methods that run the model again on these inputs (a batch (N, C, *S), or several
    inputs: ``key`` names the image-like one the probe's ``inputs`` are, default the first), layer (its layout
    detected, or given by ``reshape`` as in ``capture``; None: input gradients only, each output checked
    against the target as a capture would), output, and ``call`` (which call of a layer that runs
    several times is replaced; default the first), and ``layer_output`` (which tensor of a tuple / dataclass
    layer output, as in ``capture``)."""
    if layer is None:  # a pixel method without a capture: the probe checks the target and the model's dtype
        warn_low_precision(str(model_device(model)[1]).removeprefix("torch."))
    return Probe(model, None if layer is None else resolve_module(model, layer)[1], Batch(model, inputs), output,
                 reshape, key, call, layer_output)


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
        kept["out"] = pick(out)[1]
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


_BIASED = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm)


def _bias_arrays(module: nn.Module) -> dict:
    """A convolution's ``bias``, or a batch norm's gamma, beta, running mean and variance and eps, as NumPy."""
    def arr(t):
        return None if t is None else t.detach().float().cpu().numpy()

    if isinstance(module, nn.modules.conv._ConvNd):
        return {"bias": arr(module.bias)}
    return {"gamma": arr(module.weight), "beta": arr(module.bias), "mean": arr(module.running_mean),
            "var": arr(module.running_var), "eps": float(module.eps)}


def bias_gradients(self, inputs: np.ndarray, targets, samples=None) -> tuple:
    """FullGrad's arrays (``xcam.contract.Probe.bias_gradients``) from one forward and one backward: d score /
    d input (B, C, *S), and for every run of a convolution with a bias or a batch norm whose output has the
    input's rank, {"layer", "gradient" d score / d output (B, C, *s), and its parameters as arrays}. Each output
    is kept and the network continues on a copy (an in-place op after it cannot change it)."""
    target = as_target(targets)
    batch = self._inputs(inputs, samples)
    x = batch.get(self.key).detach().requires_grad_(True)
    batch = batch.swap(self.key, x, None)
    names = {m: n for n, m in self.model.named_modules()}
    kept = []

    def keep(module, args, out):
        if not isinstance(out, torch.Tensor) or out.ndim != x.ndim or not out.requires_grad:
            return None
        kept.append((module, out))
        return out.clone()

    hooks = [(m, keep) for m in self.model.modules()
             if isinstance(m, _BIASED) and (isinstance(m, nn.modules.batchnorm._BatchNorm) or m.bias is not None)]
    check_gradients_possible(self.model)
    params = target.params(len(x)) if samples is None else batch_params(target, len(self.inputs), samples)
    with hooked(self.model, hooks, self.output, target.whole_output) as run, preserved(self.model):
        torch.set_grad_enabled(True)
        out = run(batch)
        if self.module is None:  # no capture checked the target: range, logits (a final softmax skipped)
            check_rows(target, to_numpy(out), len(self.inputs), samples, run.softmax_skipped)
        score = target.score(out, tensors(params, first_tensor(out)), OPS)
        grads = torch.autograd.grad(score.sum(), [x] + [o for _, o in kept], allow_unused=True,
                                    materialize_grads=True)
    layers = [{"layer": names.get(m, type(m).__name__), "gradient": g.float().cpu().numpy(), **_bias_arrays(m)}
              for (m, _), g in zip(kept, grads[1:])]
    return grads[0].float().cpu().numpy(), layers


Probe.bias_gradients = bias_gradients
