"""The probe: extra batched forwards and input gradients that perturbation and pixel methods ask for.
It runs the model (compiled, cached per shape); masks, ablations, noise and weights are made in xcam/."""

import contextlib

import keras
import numpy as np
import tensorflow as tf

from xcam.errors import XcamError
from xcam.targets import Target, as_target, batch_params

from ._capture import (
    OPS,
    _cached,
    as_batch,
    final_layer,
    output_key,
    param_specs,
    param_tensors,
    resolve_layer,
    restore,
    selected,
    to_numpy,
    unstaged,
    walk,
    wrapped,
)


@tf.custom_gradient
def _positive_gradient(x):
    """Identity forward; backward passes only positive gradients (guided backprop)."""
    return tf.identity(x), lambda g: tf.nn.relu(g)


def _is_relu(fn) -> bool:
    return getattr(fn, "__name__", "") in ("relu", "relu6")


@contextlib.contextmanager
def guided_relus(model):
    """While tracing: every ReLU layer and every layer with a fused relu activation passes only positive
    gradients backward. The layers' attributes are restored on exit."""
    saved = []
    try:
        for _, layer in walk(model):
            if isinstance(layer, keras.layers.ReLU):
                original = layer.call
                object.__setattr__(layer, "call", lambda *a, _f=original, **k: _positive_gradient(_f(*a, **k)))
                saved.append((layer, "call", None))
            elif _is_relu(getattr(layer, "activation", None)):
                act = layer.activation
                object.__setattr__(layer, "activation", lambda t, _f=act: _positive_gradient(_f(t)))
                saved.append((layer, "activation", act))
        if not saved:
            raise XcamError("guided backprop needs ReLU layers or relu activations; this model has none")
        yield
    finally:
        restore(saved)


def _channels_last(inputs: np.ndarray) -> tf.Tensor:
    return tf.constant(np.ascontiguousarray(np.moveaxis(inputs, 1, -1)), tf.float32)


def _unstaged_call(fn, *args):
    try:
        return fn(*args)
    except XcamError:
        raise
    except Exception as exc:  # an XcamError raised while tracing comes back wrapped by TensorFlow
        found = unstaged(exc)
        if found is exc:
            raise
        raise found.with_traceback(None) from None


_CLASS_LOGITS = as_target(None)  # predict: the selected output itself, whatever the target


class Probe:
    """``xcam.contract.Probe`` for a Keras model, one layer, one batch and one output selection (arrays
    channels first)."""

    def __init__(self, model, layer, batch_nhwc: np.ndarray, output=None):
        self.model, self.layer, self.batch, self.output = model, layer, batch_nhwc, output
        self.inputs = np.ascontiguousarray(np.moveaxis(batch_nhwc, -1, 1))
        self.final = final_layer(model)

    def _forward(self, inputs: np.ndarray, target: Target | None, params: dict | None):
        """The selected output (target None) or the target's scores for inputs (B, C, H, W), compiled."""
        x = _channels_last(inputs)
        model, output, final = self.model, self.output, self.final
        specs = param_specs(params or {})
        pick = target or _CLASS_LOGITS

        def build():
            @tf.function(input_signature=[tf.TensorSpec((None, *x.shape[1:]), tf.float32), specs])
            def forward(batch, p):
                with wrapped([], {}, {}, final):
                    out = selected(model, model(batch, training=False), output, pick)
                return out if target is None else target.score(out, p, OPS)
            return forward

        key = (id(model), "predict", tuple(x.shape[1:]), None if target is None else target.key(),
               tuple((k, v.shape[1:], v.dtype.kind) for k, v in sorted((params or {}).items())), output_key(output))
        fn = _cached(key, model, build)
        return to_numpy(_unstaged_call(fn, x, param_tensors(params or {})))

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """The selected output (logits (B, K) for a classifier) for a batch of inputs (B, C, H, W)."""
        return self._forward(inputs, None, None)

    def score(self, inputs: np.ndarray, target, samples: np.ndarray) -> np.ndarray:
        """The target's scores (B,) or (B, K) for inputs whose row b belongs to sample ``samples[b]``."""
        return self._forward(inputs, target, batch_params(target, len(self.inputs), samples))

    def _from_layer(self, sample: int, activations: np.ndarray, target: Target | None):
        acts = tf.constant(np.ascontiguousarray(np.moveaxis(activations, 1, -1)), tf.float32)
        one = tf.constant(self.batch[sample:sample + 1], tf.float32)
        model, layer, output = self.model, self.layer, self.output
        params = {} if target is None else batch_params(target, len(self.inputs), np.full(len(activations), sample))
        specs = param_specs(params)
        pick = target or _CLASS_LOGITS

        def build():
            @tf.function(input_signature=[tf.TensorSpec((None, *one.shape[1:]), tf.float32),
                                          tf.TensorSpec((None, *acts.shape[1:]), tf.float32), specs])
            def forward(x, replacement, p):
                with wrapped([layer], {}, {}, final_layer(model), replace=replacement):
                    out = selected(model, model(x, training=False), output, pick)
                return out if target is None else target.score(out, p, OPS)
            return forward

        key = (id(model), "from_layer", layer.name, tuple(one.shape[1:]), tuple(acts.shape[1:]),
               None if target is None else target.key(),
               tuple((k, v.shape[1:], v.dtype.kind) for k, v in sorted(params.items())), output_key(output))
        fn = _cached(key, model, build)
        p = param_tensors(params)
        try:
            out = fn(one, acts, p)
            if out.shape[0] == acts.shape[0]:
                return to_numpy(out)
        except (tf.errors.InvalidArgumentError, ValueError):
            pass
        return to_numpy(_unstaged_call(fn, tf.repeat(one, acts.shape[0], axis=0), acts, p))

    def predict_from_layer(self, sample: int, activations: np.ndarray) -> np.ndarray:
        """The selected output (B, K) when the layer's output for input ``sample`` is replaced by
        ``activations`` (B, C, h, w); the layers before it run once on that input (or on B copies if the
        network cannot broadcast a batch of one)."""
        return self._from_layer(sample, activations, None)

    def score_from_layer(self, sample: int, activations: np.ndarray, target) -> np.ndarray:
        """The target's scores for input ``sample`` with the layer's output replaced by ``activations``."""
        return self._from_layer(sample, activations, target)

    def input_gradients(self, inputs: np.ndarray, targets, guided: bool = False, samples=None) -> np.ndarray:
        """d score / d input for a Target or class indices, returned channels first (B, C, H, W); ``guided``:
        through ReLUs that pass only positive gradients."""
        target = as_target(targets)
        x = _channels_last(inputs)
        params = target.params(len(inputs)) if samples is None else batch_params(target, len(self.inputs), samples)
        use_guided = bool(guided)
        model, output = self.model, self.output

        def build():
            @tf.function(input_signature=[tf.TensorSpec((None, *x.shape[1:]), tf.float32), param_specs(params)])
            def grads(batch, p):
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(batch)
                    with contextlib.ExitStack() as stack:
                        stack.enter_context(wrapped([], {}, {}, final_layer(model)))
                        if use_guided:
                            stack.enter_context(guided_relus(model))
                        out = selected(model, model(batch, training=False), output, target)
                    score = tf.reduce_sum(target.score(out, p, OPS))  # inside the tape
                return tape.gradient(score, batch, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return grads

        key = (id(model), "input_grad", use_guided, tuple(x.shape[1:]), target.key(),
               tuple((k, v.shape[1:], v.dtype.kind) for k, v in sorted(params.items())), output_key(output))
        fn = _cached(key, model, build)
        g = _unstaged_call(fn, x, param_tensors(params)).numpy()
        return np.moveaxis(g, -1, 1)


def probe(model, inputs, layer, output=None) -> Probe:
    """A ``Probe`` for methods that run the model again on this batch (N, H, W, C), layer and output."""
    return Probe(model, resolve_layer(model, layer)[1], as_batch(inputs, model).numpy(), output)


class _Stop(Exception):
    """Raised by a wrapped call once the layer's output exists: the rest of the forward is not needed."""


def kernels(model, layer) -> np.ndarray:
    """A conv layer's kernels in xcam's layout (out, in, kh, kw) (Keras stores (kh, kw, in, out))."""
    path, obj = resolve_layer(model, layer)
    if isinstance(obj, keras.layers.DepthwiseConv2D):
        k = obj.kernel.numpy()                            # (kh, kw, in, multiplier)
        return np.ascontiguousarray(k.transpose(2, 3, 0, 1).reshape(-1, 1, *k.shape[:2]))
    if not isinstance(obj, keras.layers.Conv2D):
        raise XcamError(f"layer {path!r} is a {type(obj).__name__}, not a 2-D convolution with kernels")
    return np.ascontiguousarray(obj.kernel.numpy().transpose(3, 2, 0, 1))


def activation_gradient(model, layer, inputs: np.ndarray, channel: int) -> np.ndarray:
    """d mean_{h,w} A[n, channel] / d input for each image n, channels first (the forward stops at the layer)."""
    path, obj = resolve_layer(model, layer)
    x = _channels_last(inputs)
    kept = {}
    original = obj.call

    def call(*args, **kwargs):
        kept["out"] = original(*args, **kwargs)
        raise _Stop

    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(x)
        object.__setattr__(obj, "call", call)
        try:
            model(x, training=False)
        except _Stop:
            pass
        finally:
            object.__delattr__(obj, "call")
        out = kept.get("out")
        if out is None or out.shape.rank != 4:
            raise XcamError(f"layer {path!r} did not give a spatial output (N, h, w, C)")
        if not 0 <= channel < out.shape[-1]:
            raise XcamError(f"channel {channel} is out of range: layer {path!r} has {out.shape[-1]} channels")
        score = tf.reduce_sum(tf.reduce_mean(out[..., channel], axis=(1, 2)))
    return np.moveaxis(tape.gradient(score, x).numpy(), -1, 1)
