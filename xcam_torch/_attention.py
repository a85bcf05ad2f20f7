"""What LeGrad asks of a transformer block (``Probe.attention_gradients``): the block's self-attention value
input, the gradient of the block's own score at the attention's output, and the attention's value and output
projections. One forward for every block of a call, stopped once the last has run; one backward per block from
its score to its attention's output.
The formula (the score from the block's tokens, ds/dA by the chain rule) is in ``xcam.methods.gradient``."""

import torch
from torch import nn

from xcam.errors import XcamError
from xcam.methods.gradient import attention_before, legrad_score
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


def _weights(model: nn.Module, attn: nn.MultiheadAttention) -> dict:
    """The value projection (E_in, heads, d) + (heads, d) and the output projection (heads, d, E_out), NumPy."""
    if attn.bias_k is not None or attn.add_zero_attn:
        name = next((n for n, m in model.named_modules() if m is attn), type(attn).__name__)
        raise XcamError(f"attention {name!r} adds key/value tokens (bias_k or add_zero_attn): legrad needs plain "
                        "self-attention")
    heads, e = attn.num_heads, attn.embed_dim
    w = attn.in_proj_weight[2 * e:] if attn.in_proj_weight is not None else attn.v_proj_weight
    b = attn.in_proj_bias[2 * e:] if attn.in_proj_bias is not None else torch.zeros(e, device=w.device)
    wo = attn.out_proj.weight
    return {"value_kernel": _numpy(w.T.reshape(w.shape[1], heads, e // heads)),
            "value_bias": _numpy(b.reshape(heads, e // heads)),
            "output_kernel": _numpy(wo.T.reshape(heads, e // heads, wo.shape[0]))}


def attention_gradients(probe, target, head=None, attention=None) -> dict:
    """For the probe's block: {"inputs": the attention's value input (N, T, E_in), "output_gradients":
    d s / d attention output (N, T, E_out) with s = ``legrad_score`` of the block's output tokens,
    "value_kernel", "value_bias", "output_kernel"} as float32 NumPy. ``attention``: a name or module, default the
    last nn.MultiheadAttention to finish before the block does. The blocks of the probe's ``group`` (the probes
    of one call's layers) are computed together: one forward, stopped once every block has run, then one
    backward per block; each probe keeps its own arrays for its call."""
    memo = probe.attention_memo
    if memo and memo[0] is target and memo[1:3] == (head, attention):
        return memo[3]
    members = probe.group if probe in (probe.group or ()) else [probe]
    for member, arrays in zip(members, _blocks_gradients(probe, [p.module for p in members], target, head,
                                                         attention)):
        member.attention_memo = (target, head, attention, arrays)
    return probe.attention_memo[3]


def _blocks_gradients(probe, blocks: list, target, head, attention) -> list:
    """``attention_gradients``'s arrays for each of ``blocks`` (modules), from one forward."""
    model = probe.model
    resolved = as_target(target)
    check_gradients_possible(model)
    chosen = None if attention is None else resolve_module(model, attention)
    if chosen is not None and not isinstance(chosen[1], nn.MultiheadAttention):
        raise XcamError(f"attention {chosen[0]!r} is a {type(chosen[1]).__name__}, not an nn.MultiheadAttention")
    attentions = [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]
    if not attentions:
        raise XcamError("legrad needs a transformer: the model has no nn.MultiheadAttention")
    seen, finished = [], {}

    def keep_attention(module, args, kwargs, out):
        value = args[2] if len(args) > 2 else kwargs.get("value", args[0])
        y = out[0] if isinstance(out, tuple) else out
        if not module.batch_first:
            value, y = value.transpose(0, 1), y.transpose(0, 1)
        seen.append((module, value, y))

    def finish(module, args, out):
        finished.setdefault(module, (out, len(seen)))   # its tokens and the attentions run before it
        if len(finished) == len(set(blocks)):
            raise _Stop

    handles = [m.register_forward_hook(keep_attention, with_kwargs=True) for m in attentions]
    head_module = _head(model, head)
    arrays = []
    try:
        with hooked(model, [(b, finish) for b in set(blocks)], probe.output) as run, preserved(model):
            torch.set_grad_enabled(True)
            try:
                run(probe.batch)
            except _Stop:
                pass
            picked = []
            for block in blocks:
                tokens, ran = finished.get(block, (None, 0))
                if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3:
                    shape = None if tokens is None else tuple(getattr(tokens, "shape", ()))
                    raise XcamError(f"legrad needs a block whose output is tokens (N, T, E); this layer gave "
                                    f"{shape}")
                picked.append((tokens, *attention_before(seen[:ran], None if chosen is None else chosen[1])))
            for i, (tokens, module, value, y) in enumerate(picked):
                score = legrad_score(tokens, head_module, resolved,
                                     tensors(resolved.params(len(tokens)), first_tensor(tokens)), OPS)
                (grad,) = torch.autograd.grad(score.sum(), y, retain_graph=i < len(picked) - 1, allow_unused=True,
                                              materialize_grads=True)
                arrays.append({"inputs": _numpy(value), "output_gradients": _numpy(grad),
                               **_weights(model, module)})
    finally:
        for h in handles:
            h.remove()
    return arrays


def _numpy(t: torch.Tensor):
    return t.detach().float().cpu().numpy()
