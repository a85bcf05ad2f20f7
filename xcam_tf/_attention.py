"""What LeGrad asks of a transformer block, for Keras (``capture(..., attention=...)``, ``Capture.attention``):
the block's self-attention value input, the gradient of the block's own score at the attention's output, and
the attention's value and output projections. One eager forward for every block of a capture (after its
compiled one has resolved the target), stopped once the last has run, under a GradientTape that watches the
attention outputs; the wraps are removed in ``finally``. The formula is in ``xcam.methods.gradient``."""

import keras
import numpy as np
import tensorflow as tf

from xcam.errors import XcamError
from xcam.methods.gradient import attention_before, legrad_score
from xcam.targets import as_target

from ._model import OPS, param_tensors, resolve_layer, restore, walk


class _Stop(Exception):
    """Raised once the block's output exists: the rest of the forward is not needed."""


def _head(model, head):
    """A callable for the layers applied to the mean token: ``head`` (names, in order) or the model's last
    LayerNormalization then its last Dense, whose activation (a softmax) is left out: logits."""
    if head is not None:
        layers = [resolve_layer(model, h)[1] for h in ([head] if isinstance(head, str) else head)]
    else:
        all_layers = [obj for _, obj in walk(model)]
        norms = [o for o in all_layers if isinstance(o, keras.layers.LayerNormalization)]
        dense = [o for o in all_layers if isinstance(o, keras.layers.Dense)]
        if not dense:
            raise XcamError("legrad needs the model's classifier to score a block's tokens: the model has no "
                            "Dense layer; give options={'head': [layer names]}")
        layers = norms[-1:] + dense[-1:]

    def run(x):
        for layer in layers:
            if isinstance(layer, keras.layers.Dense) and layer is layers[-1]:
                x = tf.matmul(x, layer.kernel) + (layer.bias if layer.use_bias else 0)  # the logits
            else:
                x = layer(x, training=False)
        return x
    return run


def _weights(attn) -> dict:
    """The value projection (E_in, heads, d) + (heads, d) and the output projection (heads, d, E_out), NumPy."""
    value, out = attn._value_dense, attn._output_dense
    kernel = np.asarray(value.kernel.numpy(), np.float32)
    bias = np.asarray(value.bias.numpy(), np.float32) if value.bias is not None else np.zeros(kernel.shape[1:],
                                                                                                np.float32)
    return {"value_kernel": kernel, "value_bias": bias,
            "output_kernel": np.asarray(out.kernel.numpy(), np.float32)}


def block_arrays(model, inputs, blocks: list, target, head=None, attention=None) -> list:
    """LeGrad's arrays for each of ``blocks`` (layers) on ``inputs`` (tensors, the model's layout) for the
    resolved ``target``, from one forward: {"inputs": the attention's value input (N, T, E_in),
    "output_gradients": d s / d attention output (N, T, E_out) with s = ``legrad_score`` of the block's output
    tokens, "value_kernel", "value_bias", "output_kernel"} as float32 NumPy. ``attention``: a name or layer,
    default the last MultiHeadAttention to finish before the block does."""
    target = as_target(target)
    attentions = [obj for _, obj in walk(model) if isinstance(obj, keras.layers.MultiHeadAttention)]
    chosen = None if attention is None else resolve_layer(model, attention)
    if chosen is not None and not isinstance(chosen[1], keras.layers.MultiHeadAttention):
        raise XcamError(f"attention {chosen[0]!r} is a {type(chosen[1]).__name__}, not a MultiHeadAttention")
    if not attentions:
        raise XcamError("legrad needs a transformer: the model has no keras MultiHeadAttention layer")
    unique = list({id(b): b for b in blocks}.values())
    waiting = [b for b in unique if b not in attentions]
    seen, finished, saved = [], {}, []

    def wrap_attention(layer, tape):
        original = layer.call

        def call_(*args, **kwargs):
            out = original(*args, **kwargs)
            y = out[0] if isinstance(out, (tuple, list)) else out
            tape.watch(y)
            seen.append((layer, args[1] if len(args) > 1 else kwargs["value"], y))
            return out
        return call_

    def wrap_block(layer):
        original = layer.call

        def call_(*args, **kwargs):
            out = original(*args, **kwargs)
            finished.setdefault(id(layer), (out, len(seen)))   # its tokens and the attentions run before it
            if len(finished) == len(waiting):
                raise _Stop
            return out
        return call_

    batch = inputs
    n = int(tf.nest.flatten(inputs)[0].shape[0])
    run_head = _head(model, head)
    picked = []
    with tf.GradientTape(watch_accessed_variables=False, persistent=len(blocks) > 1) as tape:
        try:
            for layer in attentions:
                object.__setattr__(layer, "call", wrap_attention(layer, tape))
                saved.append((layer, "call", None))
            for block in waiting:
                object.__setattr__(block, "call", wrap_block(block))
                saved.append((block, "call", None))
            try:
                model(batch, training=False)
            except _Stop:
                pass
        finally:
            restore(saved)
        for block in blocks:
            tokens, ran = finished.get(id(block), (None, 0))
            if tokens is None or not tf.is_tensor(tokens) or tokens.shape.rank != 3:
                raise XcamError("legrad needs a block whose output is tokens (N, T, E); this layer gave "
                                f"{None if tokens is None else tuple(getattr(tokens, 'shape', ()))}")
            layer, value, y = attention_before(seen[:ran], None if chosen is None else chosen[1])
            score = tf.reduce_sum(legrad_score(tokens, run_head, target, param_tensors(target.params(n)), OPS))
            picked.append((score, layer, value, y))
    arrays = []
    for score, layer, value, y in picked:
        grad = tape.gradient(score, y, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        arrays.append({"inputs": np.asarray(value.numpy(), np.float32),
                       "output_gradients": np.asarray(grad.numpy(), np.float32), **_weights(layer)})
    del tape
    return arrays
