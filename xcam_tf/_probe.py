"""The probe: extra batched forwards and input gradients that perturbation and pixel methods ask for.
It runs the model (compiled, cached per shape); masks, ablations, noise and weights are made in xcam/."""

import contextlib

import keras
import numpy as np
import tensorflow as tf

from xcam.errors import XcamError

from ._capture import _cached, as_batch, final_layer, resolve_layer, restore, traced_errors, walk, wrapped


@tf.custom_gradient
def _positive_gradient(x):
    """Identity forward; backward passes only positive gradients (guided backprop)."""
    return tf.identity(x), lambda g: tf.nn.relu(g)


def _is_relu(fn) -> bool:
    return getattr(fn, "__name__", "") in ("relu", "relu6")


def relu_layers(model) -> list:
    """Every ReLU layer and every layer with a fused relu activation (what guided backprop changes)."""
    return [layer for _, layer in walk(model)
            if isinstance(layer, keras.layers.ReLU) or _is_relu(getattr(layer, "activation", None))]


def check_guided(model) -> None:
    """Guided backprop needs ReLUs; refused before anything is traced."""
    if not relu_layers(model):
        raise XcamError("guided backprop needs ReLU layers or relu activations; this model has none")


@contextlib.contextmanager
def guided_relus(model):
    """While tracing: every ReLU layer and every layer with a fused relu activation passes only positive
    gradients backward. The layers' attributes are restored on exit."""
    check_guided(model)
    saved = []
    try:
        for layer in relu_layers(model):
            if isinstance(layer, keras.layers.ReLU):
                original = layer.call
                object.__setattr__(layer, "call", lambda *a, _f=original, **k: _positive_gradient(_f(*a, **k)))
                saved.append((layer, "call", None))
            else:
                act = layer.activation
                object.__setattr__(layer, "activation", lambda t, _f=act: _positive_gradient(_f(t)))
                saved.append((layer, "activation", act))
        yield
    finally:
        restore(saved)


def _channels_last(inputs: np.ndarray) -> tf.Tensor:
    return tf.constant(np.ascontiguousarray(np.moveaxis(inputs, 1, -1)), tf.float32)


class Probe:
    """``xcam.contract.Probe`` for a Keras model, one layer and one batch (arrays channels first)."""

    def __init__(self, model, layer, batch_nhwc: np.ndarray):
        self.model, self.layer, self.batch = model, layer, batch_nhwc
        self.inputs = np.ascontiguousarray(np.moveaxis(batch_nhwc, -1, 1))
        self.final = final_layer(model)

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Logits (B, K) for a batch of inputs (B, C, H, W)."""
        x = _channels_last(inputs)
        model = self.model

        def build():
            @tf.function(input_signature=[tf.TensorSpec((None, *x.shape[1:]), tf.float32)])
            def forward(batch):
                return model(batch, training=False)
            return forward

        fn = _cached((id(model), "predict", tuple(x.shape[1:])), model, build)
        with wrapped([], {}, {}, self.final), traced_errors():
            return fn(x).numpy()

    def predict_from_layer(self, sample: int, activations: np.ndarray) -> np.ndarray:
        """Logits (B, K) when the layer's output for input ``sample`` is replaced by ``activations``
        (B, C, h, w); the layers before it run once on that input (or on B copies if the network cannot
        broadcast a batch of one)."""
        acts = tf.constant(np.ascontiguousarray(np.moveaxis(activations, 1, -1)), tf.float32)
        one = tf.constant(self.batch[sample:sample + 1], tf.float32)
        model, layer = self.model, self.layer

        def build():
            box = {}

            @tf.function(input_signature=[tf.TensorSpec((None, *one.shape[1:]), tf.float32),
                                          tf.TensorSpec((None, *acts.shape[1:]), tf.float32)])
            def forward(x, replacement):
                box["replacement"] = replacement
                with wrapped([layer], {}, {}, final_layer(model), replace=replacement):
                    return model(x, training=False)
            return forward

        fn = _cached((id(model), "from_layer", layer.name, tuple(one.shape[1:]), tuple(acts.shape[1:])),
                     model, build)
        try:
            out = fn(one, acts)
            if out.shape[0] == acts.shape[0]:
                return out.numpy()
        except (tf.errors.InvalidArgumentError, ValueError):
            pass
        return fn(tf.repeat(one, acts.shape[0], axis=0), acts).numpy()

    def input_gradients(self, inputs: np.ndarray, targets: np.ndarray, guided: bool = False) -> np.ndarray:
        """d logit[n, targets[n]] / d input, returned channels first (B, C, H, W); ``guided``: through ReLUs
        that pass only positive gradients."""
        x = _channels_last(inputs)
        use_guided = bool(guided)
        model = self.model
        if use_guided:
            check_guided(model)

        def build():
            @tf.function(input_signature=[tf.TensorSpec((None, *x.shape[1:]), tf.float32),
                                          tf.TensorSpec((None,), tf.int32)])
            def grads(batch, t):
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(batch)
                    with contextlib.ExitStack() as stack:
                        stack.enter_context(wrapped([], {}, {}, final_layer(model)))
                        if use_guided:
                            stack.enter_context(guided_relus(model))
                        logits = model(batch, training=False)
                    score = tf.reduce_sum(logits * tf.one_hot(t, tf.shape(logits)[1], dtype=logits.dtype))
                return tape.gradient(score, batch)
            return grads

        fn = _cached((id(model), "input_grad", bool(use_guided), tuple(x.shape[1:])), model, build)
        with traced_errors():
            g = fn(x, tf.constant(np.asarray(targets), tf.int32)).numpy()
        return np.moveaxis(g, -1, 1)


def probe(model, inputs, layer) -> Probe:
    """A ``Probe`` for methods that run the model again on this batch (N, H, W, C) and layer."""
    return Probe(model, resolve_layer(model, layer)[1], as_batch(inputs, model).numpy())


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
