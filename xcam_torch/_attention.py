"""What LeGrad asks of a transformer block (``Probe.attention_gradients``): the block's self-attention value
input, the gradient of the block's own score at the attention's output, and the attention's value and output
projections. One forward, stopped at the block; one backward from the block's score to the attention's output.
The formula (the score from the block's tokens, ds/dA by the chain rule) is in ``xcam.methods.gradient``."""

import torch
from torch import nn

from xcam.errors import XcamError
from xcam.methods.gradient import legrad_score
from xcam.targets import as_target

from ._capture import OPS, check_gradients_possible, first_tensor, hooked, preserved, resolve_module, tensors


class _Stop(Exception):
    """Raised once the block's output exists: the rest of the forward is not needed."""


def _head(model: nn.Module, head) -> nn.Module:
    """The modules applied to the mean token: ``head`` (names, in order) or the last LayerNorm then the last
    Linear of the model."""
    if head is not None:
        names = [head] if isinstance(head, (str, nn.Module)) else list(head)
        return nn.Sequential(*[resolve_module(model, h)[1] for h in names])
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise XcamError("legrad needs the model's classifier to score a block's tokens: the model has no "
                        "nn.Linear; give options={'head': [layer names]}")
    return nn.Sequential(*(norms[-1:] + linears[-1:]))


def _weights(attn: nn.MultiheadAttention, name: str) -> dict:
    """The value projection (E_in, heads, d) + (heads, d) and the output projection (heads, d, E_out), NumPy."""
    if attn.bias_k is not None or attn.add_zero_attn:
        raise XcamError(f"attention {name!r} adds key/value tokens (bias_k or add_zero_attn): legrad needs plain "
                        "self-attention")
    heads, e = attn.num_heads, attn.embed_dim
    w = attn.in_proj_weight[2 * e:] if attn.in_proj_weight is not None else attn.v_proj_weight
    b = attn.in_proj_bias[2 * e:] if attn.in_proj_bias is not None else torch.zeros(e, device=w.device)
    wo = attn.out_proj.weight
    as_np = lambda t: t.detach().float().cpu().numpy()  # noqa: E731
    return {"value_kernel": as_np(w.T.reshape(w.shape[1], heads, e // heads)),
            "value_bias": as_np(b.reshape(heads, e // heads)),
            "output_kernel": as_np(wo.T.reshape(heads, e // heads, wo.shape[0]))}


def attention_gradients(probe, target, head=None, attention=None) -> dict:
    """For the probe's block: {"inputs": the attention's value input (N, T, E_in), "output_gradients":
    d s / d attention output (N, T, E_out) with s = ``legrad_score`` of the block's output tokens,
    "value_kernel", "value_bias", "output_kernel"} as float32 NumPy. ``attention``: a name or module, default the
    last nn.MultiheadAttention to finish before the block does."""
    model, block = probe.model, probe.module
    target = as_target(target)
    check_gradients_possible(model)
    chosen = None if attention is None else resolve_module(model, attention)
    if chosen is not None and not isinstance(chosen[1], nn.MultiheadAttention):
        raise XcamError(f"attention {chosen[0]!r} is a {type(chosen[1]).__name__}, not an nn.MultiheadAttention")
    names = {m: n for n, m in model.named_modules()}
    attentions = [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]
    if not attentions:
        raise XcamError("legrad needs a transformer: the model has no nn.MultiheadAttention")
    seen, box = [], {}

    def keep_attention(module, args, kwargs, out):
        value = args[2] if len(args) > 2 else kwargs.get("value", args[0])
        y = out[0] if isinstance(out, tuple) else out
        if not module.batch_first:
            value, y = value.transpose(0, 1), y.transpose(0, 1)
        seen.append((module, value, y))

    def stop(module, args, out):
        box["tokens"] = out
        raise _Stop

    handles = [m.register_forward_hook(keep_attention, with_kwargs=True) for m in attentions]
    try:
        with hooked(model, [(block, stop)], probe.output) as run, preserved(model):
            torch.set_grad_enabled(True)
            try:
                run(probe.batch)
            except _Stop:
                pass
            tokens = box.get("tokens")
            if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3:
                shape = None if tokens is None else tuple(getattr(tokens, "shape", ()))
                raise XcamError(f"legrad needs a block whose output is tokens (N, T, E); this layer gave {shape}")
            runs = [r for r in seen if chosen is None or r[0] is chosen[1]]
            if not runs:
                raise XcamError("no multi-head attention ran before the block's output: give the transformer "
                                "block (options attention= names its attention)")
            module, value, y = runs[-1]
            score = legrad_score(tokens, _head(model, head), target,
                                 tensors(target.params(len(tokens)), first_tensor(tokens)), OPS)
            (grad,) = torch.autograd.grad(score.sum(), y, allow_unused=True, materialize_grads=True)
    finally:
        for h in handles:
            h.remove()
    as_np = lambda t: t.detach().float().cpu().numpy()  # noqa: E731
    return {"inputs": as_np(value), "output_gradients": as_np(grad),
            **_weights(module, names.get(module, type(module).__name__))}
