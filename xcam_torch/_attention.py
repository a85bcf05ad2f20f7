"""What LeGrad asks of a transformer block, fetched in the capture's own forward (``capture(...,
attention=...)``, ``Capture.attention``): the block's self-attention value input, the gradient of the block's
own score at the attention's output, and the attention's value and output projections. The graph starts at the
first attention's output (the layers before it run without autograd); one backward per block from its score to
its attention's output. The formula (the score from the block's tokens, ds/dA by the chain rule) is in
``xcam.methods.gradient``."""

import torch
from torch import nn

from xcam.errors import XcamError
from xcam.methods.gradient import attention_before, legrad_score

from ._model import OPS, first_tensor, resolve_module, tensors


def _head(model: nn.Module, head, modules: list) -> nn.Module:
    """The modules applied to the mean token: ``head`` (names, in order) or the last LayerNorm then the last
    Linear of the model (``modules``: the model's, in order)."""
    if head is not None:
        names = [head] if isinstance(head, (str, nn.Module)) else list(head)
        return nn.Sequential(*[resolve_module(model, h)[1] for h in names])
    norms = [m for m in modules if isinstance(m, nn.LayerNorm)]
    linears = [m for m in modules if isinstance(m, nn.Linear)]
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


class AttentionWatch:
    """The capture's LeGrad part for ``blocks`` (modules, one per captured layer): ``handles()`` registers, for
    the capture's forward only, hooks that keep every nn.MultiheadAttention's value input and output (starting
    the graph there when none runs yet) and how many attentions ran before each block finished; ``arrays``
    then gives each block's {"inputs", "output_gradients", "value_kernel", "value_bias", "output_kernel"}."""

    def __init__(self, model: nn.Module, blocks: list, head=None, attention=None):
        self.model, self.blocks = model, blocks
        chosen = None if attention is None else resolve_module(model, attention)
        if chosen is not None and not isinstance(chosen[1], nn.MultiheadAttention):
            raise XcamError(f"attention {chosen[0]!r} is a {type(chosen[1]).__name__}, not an nn.MultiheadAttention")
        self.chosen = None if chosen is None else chosen[1]
        modules = list(model.modules())
        self.attentions = [m for m in modules if isinstance(m, nn.MultiheadAttention)]
        if not self.attentions:
            raise XcamError("legrad needs a transformer: the model has no nn.MultiheadAttention")
        self.head = _head(model, head, modules)
        self.seen, self.ran = [], {}

    def handles(self) -> list:
        """The registered hooks' handles (the caller removes them); one watch serves one forward."""
        handles = [m.register_forward_hook(self._keep_attention, with_kwargs=True) for m in self.attentions]
        return handles + [b.register_forward_hook(self._finish) for b in {id(b): b for b in self.blocks}.values()]

    def _keep_attention(self, module, args, kwargs, out):
        value = args[2] if len(args) > 2 else kwargs.get("value", args[0])
        y = out[0] if isinstance(out, tuple) else out
        replaced = None
        if not y.requires_grad:   # the graph starts here; restored by the capture's `preserved`
            torch.set_grad_enabled(True)
            y = y.detach().requires_grad_(True)
            replaced = (y, *out[1:]) if isinstance(out, tuple) else y
        seen_value, seen_y = (value, y) if module.batch_first else (value.transpose(0, 1), y.transpose(0, 1))
        self.seen.append((module, seen_value, seen_y, y))
        return replaced

    def _finish(self, module, args, out):
        self.ran.setdefault(module, len(self.seen))   # the attentions that ran before the block's first output

    def arrays(self, tokens: list, target, n: int, last: bool = True) -> list:
        """Each block's arrays for its output ``tokens`` (N, T, E) (the capture's kept tensors, in its graph)
        and the resolved ``target``; ``last``: no backward follows (the graph is freed after the last)."""
        out = []
        for i, (block, t) in enumerate(zip(self.blocks, tokens)):
            if not isinstance(t, torch.Tensor) or t.ndim != 3:
                raise XcamError(f"legrad needs a block whose output is tokens (N, T, E); this layer gave "
                                f"{None if t is None else tuple(getattr(t, 'shape', ()))}")
            module, value, y, leaf = attention_before(self.seen[:self.ran.get(block, 0)], self.chosen)
            score = legrad_score(t, self.head, target, tensors(target.params(n), first_tensor(t)), OPS)
            (grad,) = torch.autograd.grad(score.sum(), leaf, retain_graph=not last or i < len(tokens) - 1,
                                          allow_unused=True, materialize_grads=True)
            grad = grad if module.batch_first else grad.transpose(0, 1)
            out.append({"inputs": _numpy(value), "output_gradients": _numpy(grad), **_weights(self.model, module)})
        return out


def _numpy(t: torch.Tensor):
    return t.detach().float().cpu().numpy()
