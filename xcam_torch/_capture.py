"""Fetch activations, gradients and logits from a PyTorch model. Mechanics only: every formula is in xcam/.

How: a forward hook on the target module keeps its output and hands the rest of the network a copy, so an
in-place op after the layer (AlexNet's ReLU(inplace=True)) cannot change what was kept. Layers before the
target run without autograd; the graph starts at the kept output, and ``torch.autograd.grad`` goes back to
it alone: no full backward, no ``.grad`` written into parameters. Hooks are removed and train/eval modes
restored in ``finally``.
"""

import contextlib

import numpy as np
import torch
from torch import nn

from xcam.contract import Capture, check_batch
from xcam.errors import XcamError
from xcam.layers import unknown_layer
from xcam.methods.activation import check_head_weights
from xcam.targets import check_scores, requested, resolve

LAYOUT = "channels_first"
_SOFTMAX = (nn.Softmax, nn.LogSoftmax)


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


@contextlib.contextmanager
def preserved(model: nn.Module):
    """Run with the model in eval mode and grad mode off (outside any inference_mode of the caller); restore
    every module's mode and grad mode after."""
    modes = [(m, m.training) for m in model.modules()]
    grad_mode = torch.is_grad_enabled()
    try:
        with torch.inference_mode(False):
            model.eval()
            torch.set_grad_enabled(False)
            yield
    finally:
        torch.set_grad_enabled(grad_mode)
        for module, training in modes:
            module.training = training


def model_device(model: nn.Module):
    """(device, dtype) of the model's first parameter (CPU float32 for a model without parameters)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    return device, dtype


def as_batch(model: nn.Module, inputs) -> torch.Tensor:
    """The inputs as a float tensor on the model's device and dtype, (N, C, H, W)."""
    device, dtype = model_device(model)
    x = torch.as_tensor(inputs) if not isinstance(inputs, torch.Tensor) else inputs
    check_batch(tuple(x.shape), LAYOUT)
    x = x.to(device=device, dtype=dtype)
    if x.is_inference():  # made under torch.inference_mode: autograd needs a normal copy
        with torch.inference_mode(False):
            x = x.clone()
    return x


@contextlib.contextmanager
def hooked(model: nn.Module, hooks):
    """Register (module, forward hook) pairs, plus hooks that see a final nn.Softmax; yield ``logits(x)``."""
    softmax_io: dict = {}
    handles = [module.register_forward_hook(hook) for module, hook in hooks]
    for i, sm in enumerate(m for m in model.modules() if isinstance(m, _SOFTMAX)):
        handles.append(sm.register_forward_hook(
            lambda mod, args, out, i=i: softmax_io.__setitem__(i, (out, args[0]))))

    def logits(x):
        softmax_io.clear()
        out, logits.softmax_skipped = _logits(model(x), softmax_io)
        return out

    try:
        yield logits
    finally:
        for h in handles:
            h.remove()


def dry_run(model: nn.Module, input_shape, hooks) -> None:
    """One forward on zeros (1, *input_shape) in eval mode without autograd, with (module, forward hook) pairs
    registered for that forward only."""
    handles = [module.register_forward_hook(hook) for module, hook in hooks]
    try:
        with preserved(model):
            model(as_batch(model, torch.zeros((1, *input_shape))))
    finally:
        for h in handles:
            h.remove()


class _Keeper:
    """The forward hook: keeps the layer's output (and starts the graph there when gradients are wanted)."""

    def __init__(self, name: str, track: bool):
        self.name, self.track, self.kept, self.calls = name, track, None, 0

    def __call__(self, module, args, output):
        self.calls += 1
        if self.calls > 1:
            raise XcamError(f"layer {self.name!r} runs more than once in one forward pass; "
                            "pick a layer that runs once")
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise XcamError(f"layer {self.name!r} outputs {shape}, not a spatial map (N, C, h, w)")
        if self.track and output.requires_grad and torch.is_grad_enabled():
            self.kept = output  # an earlier kept layer started the graph: stay in it
        else:
            self.kept = output.detach()
            if self.track:
                torch.set_grad_enabled(True)  # the graph starts here; restored by `preserved`
                self.kept.requires_grad_(True)
        return self.kept.clone()  # later in-place ops change the copy, never the kept tensor


def _logits(out, softmax_io: dict) -> tuple[torch.Tensor, bool]:
    """The tensor to differentiate: the model's output, or the input of a final nn.Softmax (then True)."""
    if not isinstance(out, torch.Tensor):
        raise XcamError(f"the model returns a {type(out).__name__}; xcam explains classifiers returning logits "
                        "(N, K)")
    for module_out, module_in in softmax_io.values():
        if module_out is out:  # a final nn.Softmax: explain the logits it was given
            return module_in, True
    return out, False


def _last_linear_weight(model: nn.Module):
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1].weight.detach().float().cpu().numpy() if linears else None


def capture(model: nn.Module, inputs, layer, targets=None, *, classes=None, gradients: bool = True,
            head: bool = False, labels=None):
    """Activations (N, C, h, w), gradients of the target logits and the logits (N, K), as NumPy.

    layer: a name or module, or a list of them (then a list of Captures, from one forward and one backward).
    targets: None (top-1 per sample), an int, or one int per sample. classes: several classes for every
    sample instead (gradients become (N, K, C, h, w)).
    """
    layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    if not layers:
        raise XcamError("no layer given")
    resolved = [resolve_module(model, one) for one in layers]
    x = as_batch(model, inputs)
    wanted = requested(targets, classes, x.shape[0])
    keepers = [_Keeper(name, gradients) for name, _ in resolved]
    with hooked(model, [(module, k) for (_, module), k in zip(resolved, keepers)]) as run, preserved(model):
        logits = run(x)
        for keeper in keepers:
            if keeper.kept is None:
                raise XcamError(f"layer {keeper.name!r} did not run in the forward pass")
        scores = logits.detach().float().cpu().numpy()
        check_scores(scores, softmax_skipped=run.softmax_skipped)
        chosen = resolve(wanted, scores, labels)
        grads = _gradients(logits, [k.kept for k in keepers], chosen) if gradients else [None] * len(keepers)
    caps = []
    for keeper, g in zip(keepers, grads):
        acts = keeper.kept.detach()
        head_w = check_head_weights(_last_linear_weight(model), acts.shape[1], scores.shape[1]) if head else None
        caps.append(Capture(activations=acts.float().cpu().numpy(), gradients=g, scores=scores, targets=chosen,
                            layer=keeper.name, head_weights=head_w))
    return caps if isinstance(layer, (list, tuple)) else caps[0]


def _gradients(logits: torch.Tensor, kept: list, chosen: np.ndarray) -> list:
    """d logit[n, chosen[n]] / d kept, one backward for the batch; (N, K, ...) for several classes."""
    index = torch.as_tensor(chosen, device=logits.device)
    if chosen.ndim == 1:
        score = logits.gather(1, index[:, None]).sum()
        return [g.float().cpu().numpy() for g in torch.autograd.grad(score, kept)]
    k = chosen.shape[1]
    onehots = torch.zeros((k, *logits.shape), dtype=logits.dtype, device=logits.device)
    onehots.scatter_(2, index.T[:, :, None], 1.0)
    try:
        grads = torch.autograd.grad(logits, kept, grad_outputs=onehots, is_grads_batched=True)
    except RuntimeError:  # an op without a batching rule: one backward per class
        per_class = [torch.autograd.grad(logits, kept, grad_outputs=onehots[j], retain_graph=j < k - 1)
                     for j in range(k)]
        grads = [torch.stack([pc[i] for pc in per_class]) for i in range(len(kept))]
    return [g.transpose(0, 1).float().cpu().numpy() for g in grads]
