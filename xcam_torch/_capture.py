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

from xcam.contract import Capture, check_batch, warn_low_precision
from xcam.errors import XcamError
from xcam.inputs import POSITIONAL, SINGLE, batch_size, entries, image_like, name
from xcam.layer_outputs import pick, put
from xcam.layers import LayerRecord, LayerRecorder, call_error, check_call, default_layer_name
from xcam.methods.activation import check_head_weights
from xcam.targets import as_target, is_tensor, select_output

from ._attention import AttentionWatch
from ._layouts import layout_of, model_facts
from ._model import OPS, first_tensor, resolve_module, tensors

LAYOUT = "channels_first"
_SOFTMAX = (nn.Softmax, nn.LogSoftmax)
@contextlib.contextmanager
def preserved(model: nn.Module):
    """Run with the model in eval mode and grad mode off; restore every module's mode and grad mode after."""
    modules = list(model.modules())
    modes = [m.training for m in modules]
    grad_mode = torch.is_grad_enabled()
    try:
        if any(modes):  # a model already in eval mode is left as it is (eval() sets every module's flag)
            model.eval()
        with torch.inference_mode(False):  # a caller inside torch.inference_mode() still gets gradients
            torch.set_grad_enabled(False)
            yield
    finally:
        torch.set_grad_enabled(grad_mode)
        for module, training in zip(modules, modes):
            if module.training != training:
                module.training = training


def model_device(model: nn.Module):
    """(device, dtype) of the model's first parameter (CPU float32 for a model without parameters)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    return device, dtype


def input_rank(model: nn.Module) -> int | None:
    """The spatial rank the model's first convolution takes (Conv1d 1, Conv2d 2, Conv3d 3), None without one."""
    conv = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    return None if conv is None else conv.weight.ndim - 2


def as_batch(model: nn.Module, inputs) -> torch.Tensor:
    """The inputs as a float tensor on the model's device and dtype, (N, C, *S)."""
    device, dtype = model_device(model)
    x = torch.as_tensor(inputs) if not isinstance(inputs, torch.Tensor) else inputs
    check_batch(tuple(x.shape), LAYOUT, input_rank(model))
    x = x.to(device=device, dtype=dtype)
    if x.is_inference():  # made inside torch.inference_mode(): a normal copy can enter autograd
        with torch.inference_mode(False):
            x = x.clone()
    return x


class Batch:
    """The model's inputs as tensors on its device: one batch (N, C, *S), or positional (a tuple or list) or
    keyword (a dict) inputs (``xcam.inputs``). Float inputs take the model's dtype; others keep theirs."""

    def __init__(self, model: nn.Module, inputs, items=None, kind=None):
        if items is not None:
            self.kind, self.items = kind, items
        else:
            self.kind, raw = entries(inputs)
            if self.kind == SINGLE:
                self.items = [(None, as_batch(model, inputs))]
            else:
                batch_size(raw)
                self.items = [(k, _tensor(model, v)) for k, v in raw]
        self.n = int(self.items[0][1].shape[0])

    @property
    def keys(self) -> list:
        """Keys of the image-like inputs (what maps can be made for)."""
        return [k for k, v in self.items if image_like(v.shape) and v.is_floating_point()]

    def get(self, key=None) -> torch.Tensor:
        """The input under ``key`` (default: the first image-like one)."""
        key = self.keys[0] if key is None and self.keys else key
        return dict(self.items)[key] if self.kind != SINGLE else self.items[0][1]

    @property
    def rank(self) -> int:
        """The spatial rank of the first image-like input (2 when there is none)."""
        return self.get().ndim - 2 if self.keys else 2

    def swap(self, key, x: torch.Tensor, samples=None) -> "Batch":
        """These inputs with input ``key`` replaced by ``x``; the others take rows ``samples`` (default: all,
        which needs len(x) == N)."""
        if self.kind == SINGLE:
            return Batch(None, None, [(None, x)], SINGLE)
        key = self.keys[0] if key is None else key
        rows = None if samples is None else torch.as_tensor(np.asarray(samples), device=x.device)
        if rows is None and len(x) != self.n:
            raise XcamError(f"{len(x)} rows for {name(key)} but the other inputs have {self.n}")
        return Batch(None, None, [(k, x if k == key else v if rows is None else v[rows]) for k, v in self.items],
                     self.kind)

    def rows(self, sample: int, count: int = 1) -> "Batch":
        """Input ``sample`` of every input, repeated ``count`` times (a view)."""
        return Batch(None, None, [(k, v[sample:sample + 1].expand(count, *v.shape[1:])) for k, v in self.items],
                     self.kind)

    def __call__(self, model: nn.Module):
        if self.kind == SINGLE:
            return model(self.items[0][1])
        if self.kind == POSITIONAL:
            return model(*[v for _, v in self.items])
        return model(**dict(self.items))


def _tensor(model: nn.Module, value) -> torch.Tensor:
    """One of several inputs as a tensor on the model's device (floats in the model's dtype)."""
    device, dtype = model_device(model)
    try:
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError):
        raise XcamError(f"an input of type {type(value).__name__} cannot be batched: give an array or tensor "
                        "with the batch on its first axis") from None
    t = t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)
    if t.is_inference():
        with torch.inference_mode(False):
            t = t.clone()
    return t


def check_gradients_possible(model: nn.Module) -> None:
    """Gradients need parameters that autograd may save: refuse inference tensors in one line."""
    if any(p.is_inference() for p in model.parameters()):
        raise XcamError("the model's parameters were created inside torch.inference_mode(), and inference "
                        "tensors cannot take part in gradients; create or load the model outside it (calling "
                        "xcam inside inference_mode or no_grad is fine), or use a gradient-free method")


def to_numpy(tree):
    """Tensors of an output (nested in dicts, lists, tuples) as NumPy; floats as float32."""
    if isinstance(tree, torch.Tensor):
        t = tree.detach()
        return (t.float() if t.is_floating_point() else t).cpu().numpy()
    if isinstance(tree, dict):
        return {k: to_numpy(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [to_numpy(v) for v in tree]
    return tree


@contextlib.contextmanager
def hooked(model: nn.Module, hooks, output=None, whole: bool = False):
    """Register (module, forward hook) pairs, plus hooks that see a final nn.Softmax; yield ``logits(x)``, the
    model's output selected by ``output`` (``xcam.targets.select_output``; ``whole``: the whole output)."""
    softmax_io: dict = {}
    handles = [module.register_forward_hook(hook) for module, hook in hooks]
    for i, sm in enumerate(m for m in model.modules() if isinstance(m, _SOFTMAX)):
        handles.append(sm.register_forward_hook(
            lambda mod, args, out, i=i: softmax_io.__setitem__(i, (out, args[0]))))

    def logits(x):
        softmax_io.clear()
        selected = select_output(x(model) if isinstance(x, Batch) else model(x), output, whole=whole)
        out, logits.softmax_skipped = _logits(selected, softmax_io)
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


_POOLS = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
          nn.modules.pooling._AdaptiveMaxPoolNd, nn.modules.dropout._DropoutNd, nn.Identity, nn.Flatten)


def layer_records(model: nn.Module, input_shape: tuple) -> list[LayerRecord]:
    """One record per named module, in the order modules finish, from a forward on zeros (1, C, *S); shapes
    channels first after each layer's layout (tokens on their grid)."""
    recorder = LayerRecorder()

    rank = len(input_shape) - 1

    def hook(name):
        def record(module, args, out):
            out = _default_part(out)
            is_tensor = isinstance(out, torch.Tensor)
            recorder.saw(name, tuple(out.shape) if is_tensor else None, out if is_tensor else None,
                         lambda shape: layout_of(model, module, shape, rank, spatial=tuple(input_shape[1:]),
                                                 facts=facts))
        return record

    facts = model_facts(model)

    named = [(n, m) for n, m in model.named_modules() if n]
    dry_run(model, input_shape, [(m, hook(n)) for n, m in named])
    return recorder.records({n: type(m).__name__ for n, m in named},
                            {n for n, m in named if isinstance(m, _POOLS)})


class _Keeper:
    """The forward hook: keeps the layer's output at its call ``call`` (0: the first; None: the only one) and
    starts the graph there when gradients are wanted; other calls pass through and are counted."""

    def __init__(self, name: str, track: bool, call: int | None = None, layer_output=None):
        self.name, self.track, self.kept, self.calls, self.call = name, track, None, 0, call
        self.layer_output = layer_output   # which tensor of a tuple / dataclass output (``xcam.layer_outputs``)

    def check_calls(self) -> None:
        """After the forward: a layer that ran several times without ``call``, or fewer times than ``call``
        needs, is a one-line error saying how often it ran."""
        if (self.call is None and self.calls > 1) or (self.call is not None and self.calls <= self.call):
            raise call_error(self.name, self.calls, self.call)

    def __call__(self, module, args, output):
        index, self.calls = self.calls, self.calls + 1
        if index != (self.call or 0):
            return None                                     # another call of a shared layer: left as it is
        whole, (part, output) = output, pick(output, self.layer_output, self.name)
        if not isinstance(output, torch.Tensor) or not 3 <= output.ndim <= 5:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise XcamError(f"layer {self.name!r} outputs {shape}, not a spatial map (N, C, L), (N, C, h, w), "
                            "(N, C, d, h, w), channels last, or tokens (N, T, C)")
        if self.track and output.requires_grad and torch.is_grad_enabled():
            self.kept = output  # an earlier kept layer started the graph: stay in it
        else:
            self.kept = output.detach()
            if self.track:
                torch.set_grad_enabled(True)  # the graph starts here; restored by `preserved`
                self.kept.requires_grad_(True)
        return put(whole, part, self.kept.clone())  # later in-place ops change the copy, never the kept tensor


def _logits(out, softmax_io: dict) -> tuple:
    """The selected output, or the input of a final nn.Softmax that produced it (then True)."""
    if not is_tensor(out):
        return out, False
    for module_out, module_in in softmax_io.values():
        if module_out is out:  # a final nn.Softmax: explain the logits it was given
            return module_in, True
    return out, False


def _last_linear_weight(model: nn.Module):
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1].weight.detach().float().cpu().numpy() if linears else None


def capture(model: nn.Module, inputs, layer, targets=None, *, classes=None, gradients: bool = True,
            head: bool = False, labels=None, output=None, reshape=None, call=None, layer_output=None,
            hvp: bool = False, attention: dict | None = None):
    """Activations (N, C, *s), gradients of the target's score and the selected output, as NumPy.

    layer: a name or module, or a list of them (then a list of Captures, from one forward and one backward);
    None: the CLI's default layer (``xcam.layers.default_layer``), named in the Capture's ``layer``.
    targets: None (top-1 per sample), an int, one int per sample, a ``xcam.targets`` Target, a spec string or
    a callable; classes: several classes for every sample instead (gradients become (N, K, C, *s)).
    output: which of the model's outputs the target sees (``xcam.targets.select_output``). The layer's
    layout (channels first, channels last, tokens) is detected (``xcam.layouts``) or given by ``reshape`` (a
    callable on tensors, as pytorch-grad-cam's ``reshape_transform``, a Layout or a layout name). call: which
    call of a layer that runs several times in one forward (a siamese encoder) is captured, from 0.
    layer_output: which tensor of a layer that returns a tuple, dict or dataclass (a Hugging Face Swin stage,
    ``BaseModelOutput``) is explained, by index or name; default the first of a spatial rank
    (``xcam.layer_outputs``). hvp: also H A, the Hessian of the summed scores w.r.t. each layer's output A times
    A, by a double backward in the same graph (with the gradients; (N, K, C, *s) with ``classes``).
    attention: {"head": ..., "attention": ...} (LeGrad's options): also each layer's LeGrad arrays
    (``Capture.attention``, ``xcam_torch._attention.AttentionWatch``) from the same forward, one backward per
    layer from its own score; one class per sample only (else None).
    """
    x = Batch(model, inputs)
    if layer is None:
        layer = default_layer_name(layer_records, model, tuple(x.get().shape[1:]) if x.kind == SINGLE else None)
    layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    if not layers:
        raise XcamError("no layer given")
    resolved = [resolve_module(model, one) for one in layers]
    target = as_target(targets, classes)
    warn_low_precision(str(model_device(model)[1]).removeprefix("torch."))
    n = x.n
    target.params(n)  # a per-sample argument of the wrong length fails before the forward
    gradients = gradients or hvp
    watch = None if attention is None else AttentionWatch(model, [module for _, module in resolved], **attention)
    tracked = gradients or watch is not None   # a graph is built: layer gradients, or LeGrad's backwards
    if tracked:
        check_gradients_possible(model)
    keepers = [_Keeper(name, tracked, check_call(call), layer_output) for name, _ in resolved]
    hooks = [(module, k) for (_, module), k in zip(resolved, keepers)]
    watching = watch.handles() if watch is not None else []
    with hooked(model, hooks, output, target.whole_output) as run, preserved(model):
        try:
            selected = run(x)
        finally:
            for handle in watching:
                handle.remove()
        for keeper in keepers:
            if keeper.calls == 0:
                raise XcamError(f"layer {keeper.name!r} did not run in the forward pass")
            keeper.check_calls()
        out_np = to_numpy(selected)
        target.check(out_np, labels, softmax_skipped=run.softmax_skipped)
        chosen = target.resolve(out_np)
        score = chosen.score(selected, tensors(chosen.params(n), first_tensor(selected)), OPS)
        kept = [k.kept for k in keepers]
        arrays = [None] * len(keepers)
        if watch is not None and not chosen.columns:
            arrays = watch.arrays(kept, chosen, n, last=not gradients)
        hvps = [None] * len(keepers)
        if hvp:
            grads, hvps = _hessian_products(score, kept, chosen.columns)
        else:
            grads = _gradients(score, kept, chosen.columns) if gradients else [None] * len(keepers)
    scores = out_np if is_tensor(out_np) and out_np.ndim >= 1 else np.zeros((n, 0), np.float32)
    caps, facts = [], model_facts(model)
    for (_, module), keeper, g, hv, att in zip(resolved, keepers, grads, hvps, arrays):
        native = keeper.kept.detach().float().cpu().numpy()
        layout = layout_of(model, module, native.shape, x.rank, reshape,
                           tuple(x.get().shape[2:]) if x.keys else None, facts)
        acts = layout.to_canonical(native)
        g = None if g is None else layout.to_canonical(g, lead=g.ndim - native.ndim + 1)
        hv = None if hv is None else layout.to_canonical(hv, lead=hv.ndim - native.ndim + 1)
        head_w = check_head_weights(_last_linear_weight(model), acts.shape[1], scores.shape[1]) if head else None
        caps.append(Capture(activations=acts, gradients=g, scores=scores, targets=chosen.class_indices(n),
                            layer=keeper.name, head_weights=head_w, target=chosen, target_scores=to_numpy(score),
                            layout=layout, hvp=hv, attention=att))
    return caps if isinstance(layer, (list, tuple)) else caps[0]


def _hessian_products(score: torch.Tensor, kept: list, columns: int) -> tuple:
    """(g, H A) per kept tensor A, as NumPy: g = d sum(score) / dA with a graph, then H A = d<g, A>/dA with A
    held (``grad_outputs`` = A), one double backward per layer (no cross terms between layers); for K scores per
    sample (``columns``) one of each per class, stacked (N, K, ...)."""
    if not score.requires_grad:
        zeros = [torch.zeros_like(k).float().cpu().numpy() for k in kept]
        zeros = zeros if not columns else [np.repeat(z[:, None], columns, axis=1) for z in zeros]
        return zeros, [z.copy() for z in zeros]
    sums = [score.sum()] if not columns else [score[:, j].sum() for j in range(columns)]
    grads, hvps = [[] for _ in kept], [[] for _ in kept]
    for s in sums:
        firsts = torch.autograd.grad(s, kept, create_graph=True, retain_graph=True, allow_unused=True,
                                     materialize_grads=True)
        for i, (g, a) in enumerate(zip(firsts, kept)):
            grads[i].append(g.detach())
            if not g.requires_grad:   # g does not depend on A (a linear head): H A = 0
                hvps[i].append(torch.zeros_like(a))
                continue
            (hv,) = torch.autograd.grad(g, a, grad_outputs=a.detach(), retain_graph=True, allow_unused=True,
                                        materialize_grads=True)
            hvps[i].append(hv)

    def stacked(parts):
        return (parts[0] if not columns else torch.stack(parts, 1)).float().cpu().numpy()
    return [stacked(g) for g in grads], [stacked(h) for h in hvps]


def _gradients(score: torch.Tensor, kept: list, columns: int) -> list:
    """d score[n] / d kept, one backward for the batch; (N, K, ...) for K scores per sample (``columns``)."""
    if not score.requires_grad:  # the score does not depend on the layer (e.g. no detection at all)
        zeros = [torch.zeros_like(k).float().cpu().numpy() for k in kept]
        return zeros if not columns else [np.repeat(z[:, None], columns, axis=1) for z in zeros]
    if not columns:
        return [g.float().cpu().numpy() for g in torch.autograd.grad(score.sum(), kept, allow_unused=True,
                                                                      materialize_grads=True)]
    eye = torch.eye(columns, dtype=score.dtype, device=score.device)
    onehots = eye[:, None, :].expand(columns, *score.shape).contiguous()       # (K, N, K)
    try:
        grads = torch.autograd.grad(score, kept, grad_outputs=onehots, is_grads_batched=True, allow_unused=True,
                                    materialize_grads=True)
    except RuntimeError:  # an op without a batching rule: one backward per class
        per_class = [torch.autograd.grad(score, kept, grad_outputs=onehots[j], retain_graph=j < columns - 1,
                                         allow_unused=True, materialize_grads=True) for j in range(columns)]
        grads = [torch.stack([pc[i] for pc in per_class]) for i in range(len(kept))]
    return [g.transpose(0, 1).float().cpu().numpy() for g in grads]


def linear_head(model: nn.Module, head=None) -> tuple:
    """(weight (K, C), bias (K,) or None) of a linear layer as float32 NumPy: ``head`` (a name or module) or, by
    default, the model's last ``nn.Linear`` (the classifier ``xcam.concepts`` scores concepts with)."""
    if head is None:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise XcamError("the model has no nn.Linear layer to score the concepts with; give head= a linear "
                            "layer, or head=False")
        name, module = "", linears[-1]
    else:
        name, module = resolve_module(model, head)
        if not isinstance(module, nn.Linear):
            raise XcamError(f"head {name!r} is a {type(module).__name__}, not a linear layer (nn.Linear)")
    bias = None if module.bias is None else module.bias.detach().float().cpu().numpy()
    return module.weight.detach().float().cpu().numpy(), bias

def _default_part(out):
    """The tensor a layer listing records for a structured output (``xcam.layer_outputs.pick``'s default), or
    ``out`` itself when no part fits."""
    if isinstance(out, torch.Tensor):
        return out
    try:
        return pick(out)[1]
    except XcamError:
        return out
