"""The probe: extra batched forwards and input gradients that perturbation and pixel methods ask for.
It runs the model (compiled, cached per shape); masks, ablations, noise and weights are made in xcam/."""

import contextlib
import functools

import keras
import numpy as np
import tensorflow as tf

from xcam.contract import warn_low_precision
from xcam.errors import XcamError
from xcam.inputs import KEYWORD, POSITIONAL, SINGLE, image_like, name
from xcam.layer_outputs import pick
from xcam.layers import check_call
from xcam.ops import aligned_empty
from xcam.targets import Target, as_target, batch_params, check_rows

from ._capture import (
    OPS,
    _cached,
    _has_softmax,
    as_inputs,
    compute_dtype,
    final_layer,
    output_key,
    param_specs,
    param_tensors,
    plain,
    resolve_layer,
    restore,
    run_index,
    selected,
    signature,
    signature_key,
    to_numpy,
    unstaged,
    walk,
    wrapped,
)
from ._host import host_tensor
from ._layouts import layout_of, model_facts


@tf.custom_gradient
def _positive_gradient(x):
    """Identity forward; backward passes only positive gradients (guided backprop)."""
    return tf.identity(x), lambda g: tf.nn.relu(g)


def _positive_output_gradient(x, fn):
    """``fn(x)`` forward; backward: the positive part of the output gradient handed straight to ``x`` (the
    ReLU's own backward is skipped: deconvnet)."""
    @tf.custom_gradient
    def through(t):
        return fn(t), lambda g: tf.nn.relu(g)
    return through(x)


def _is_relu(fn) -> bool:
    return getattr(fn, "__name__", "") in ("relu", "relu6")


@contextlib.contextmanager
def guided_relus(model, mode=True):
    """While tracing: every ReLU layer and every layer with a fused relu activation passes only positive
    gradients backward (``mode`` True or "guided": then through the ReLU's own backward; "deconvnet": straight
    to the ReLU's input). The layers' attributes are restored on exit."""
    saved = []
    deconv = mode == "deconvnet"
    try:
        for _, layer in walk(model):
            if isinstance(layer, keras.layers.ReLU):
                original = layer.call
                call = (lambda t, *a, _f=original, **k: _positive_output_gradient(t, lambda u: _f(u, *a, **k))) \
                    if deconv else (lambda *a, _f=original, **k: _positive_gradient(_f(*a, **k)))
                object.__setattr__(layer, "call", call)
                saved.append((layer, "call", None))
            elif _is_relu(getattr(layer, "activation", None)):
                act = layer.activation
                wrap = (lambda t, _f=act: _positive_output_gradient(t, _f)) if deconv else \
                    (lambda t, _f=act: _positive_gradient(_f(t)))
                object.__setattr__(layer, "activation", wrap)
                saved.append((layer, "activation", act))
        if not saved:
            what = "deconvnet" if deconv else "guided backprop"
            raise XcamError(f"{what} needs ReLU layers or relu activations; this model has none")
        yield
    finally:
        restore(saved)


def _last(inputs: np.ndarray) -> np.ndarray:
    """Channels-first rows (B, C, *S) as a contiguous channels-last float32 array (B, *S, C). Rows the core made
    in channels-last memory are already that (no copy); others are copied one channel at a time (C <= 8), which
    is 3 to 5 times faster than NumPy's strided copy with the channels innermost."""
    last = np.moveaxis(np.asarray(inputs, np.float32), 1, -1)
    if last.flags.c_contiguous:
        return last
    out = aligned_empty(last.shape)   # shared with TensorFlow, not copied again (``host_tensor``)
    if last.shape[-1] > 8:
        out[...] = last
        return out
    for c in range(last.shape[-1]):
        out[..., c] = last[..., c]
    return out


def _channels_last(inputs: np.ndarray) -> tf.Tensor:
    return host_tensor(_last(inputs))


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
    channels first). With several inputs (a list or dict), ``key`` is the image-like input the probe's
    ``inputs`` are; the others are held fixed (their rows follow ``samples``)."""

    def __init__(self, model, layer, batch, output=None, reshape=None, key=None, call=None, layer_output=None):
        self.model, self.layer, self.output, self.reshape = model, layer, output, reshape
        self.layer_output = layer_output   # which tensor of a structured layer output (``xcam.layer_outputs``)
        self.call = call or 0   # which call of a shared layer is replaced
        self.full = tf.nest.map_structure(lambda t: np.asarray(t.numpy()), batch)   # framework layout
        self.kind = SINGLE if not isinstance(batch, (list, dict)) else POSITIONAL if isinstance(batch, list) \
            else KEYWORD
        images = [k for k, v in (enumerate(self.full) if self.kind == POSITIONAL else self.full.items())
                  if image_like(v.shape) and v.dtype.kind == "f"] if self.kind != SINGLE else [None]
        if key is not None and key not in images:
            raise XcamError(f"{name(key)} is not an image-like input; image-like inputs: "
                            f"{', '.join(name(k) for k in images) or 'none'}")
        self.key = key if key is not None else (images or [None])[0]
        explained = self._get(self.full)
        self.batch = explained                                                        # (N, *S, C) or None
        self.inputs = None if explained is None else np.ascontiguousarray(np.moveaxis(explained, -1, 1))
        self.final = final_layer(model)
        self._native = None

    def _get(self, structure):
        if self.kind == SINGLE:
            return structure
        return None if self.key is None and self.kind != SINGLE else structure[self.key]

    def _assemble(self, x_last, samples=None):
        """Every input as tensors, the explained one replaced by ``x_last`` (framework layout); the others
        take rows ``samples`` (default: all)."""
        if self.kind == SINGLE:
            return host_tensor(x_last)

        def one(key, value):
            if key == self.key:
                return host_tensor(x_last)
            return tf.constant(value if samples is None else value[np.asarray(samples)])

        if self.kind == POSITIONAL:
            return [one(k, v) for k, v in enumerate(self.full)]
        return {k: one(k, v) for k, v in self.full.items()}

    def _rows(self, sample: int, count: int = 1):
        """Input ``sample`` of every input, ``count`` times."""
        return tf.nest.map_structure(lambda v: tf.constant(np.repeat(v[sample:sample + 1], count, axis=0)),
                                     self.full)

    @functools.cached_property
    def facts(self) -> tuple:
        """``model_facts`` of the model, read once for every layout this probe works out."""
        return model_facts(self.model)

    def native_output(self, sample: int) -> np.ndarray:
        """The layer's own output (1, ...) for input ``sample``, in its own layout (one eager forward for the
        batch, stopped at the layer)."""
        if self._native is None:
            batch = tf.nest.map_structure(tf.constant, self.full)
            self._native = layer_output(self.model, self.layer, batch, self.call, self.layer_output).numpy()
        return self._native[sample:sample + 1]

    def _forward(self, inputs: np.ndarray, target: Target | None, params: dict | None, samples=None):
        """The selected output (target None) or the target's scores for inputs (B, C, *S), compiled."""
        x = self._assemble(_last(inputs), samples)
        model, output, final = self.model, self.output, self.final
        specs = param_specs(params or {})
        pick = target or _CLASS_LOGITS
        checks = target is not None and self.layer is None  # no capture checked the target: the output too

        def build():
            @tf.function(input_signature=[signature(x), specs])
            def forward(batch, p):
                with wrapped([], {}, {}, final):
                    out = selected(model, model(batch, training=False), output, pick)
                if target is None:
                    return out
                score = plain(target.score)(out, p, OPS)
                return (score, out) if checks else score
            forward.direct = forward.get_concrete_function()   # traced once; called without per-batch matching
            return forward

        key = (id(model), "predict", signature_key(x), None if target is None else target.key(),
               tuple((k, v.shape[1:], v.dtype.kind) for k, v in sorted((params or {}).items())), output_key(output),
               checks)
        fn = _unstaged_call(_cached, key, model, build)
        got = _unstaged_call(fn.direct, x, param_tensors(params or {}))
        if not checks:
            return to_numpy(got)
        check_rows(target, to_numpy(got[1]), len(self.inputs), samples, _has_softmax(final))
        return to_numpy(got[0])

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """The selected output (logits (B, K) for a classifier) for a batch of inputs (B, C, *S)."""
        return self._forward(inputs, None, None)

    def score(self, inputs: np.ndarray, target, samples: np.ndarray) -> np.ndarray:
        """The target's scores (B,) or (B, K) for inputs whose row b belongs to sample ``samples[b]``."""
        return self._forward(inputs, target, batch_params(target, len(self.inputs), samples), samples)

    def _from_layer(self, sample: int, activations: np.ndarray, target: Target | None):
        original = self.native_output(sample)
        first = next((v for v in tf.nest.flatten(self.full) if image_like(v.shape) and v.dtype.kind == "f"), None)
        rank = 2 if first is None else first.ndim - 2
        layout = layout_of(self.model, self.layer, original.shape, rank, self.reshape,
                           None if first is None else tuple(first.shape[1:-1]), self.facts)
        acts = tf.constant(layout.from_canonical(activations, original), tf.float32)
        one = self._rows(sample)
        model, layer, output, call, part = self.model, self.layer, self.output, self.call, self.layer_output
        n = len(tf.nest.flatten(self.full)[0])
        params = {} if target is None else batch_params(target, n, np.full(len(activations), sample))
        specs = param_specs(params)
        pick = target or _CLASS_LOGITS

        def build():
            @tf.function(input_signature=[signature(one), tf.TensorSpec((None, *acts.shape[1:]), tf.float32),
                                          specs])
            def forward(x, replacement, p):
                with wrapped([layer], {}, {}, final_layer(model), replace=replacement, runs=[call],
                             layer_output=part):
                    out = selected(model, model(x, training=False), output, pick)
                return out if target is None else plain(target.score)(out, p, OPS)
            return forward

        key = (id(model), "from_layer", layer.name, call, part, signature_key(one), tuple(acts.shape[1:]),
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
        return to_numpy(_unstaged_call(fn, self._rows(sample, acts.shape[0]), acts, p))

    def predict_from_layer(self, sample: int, activations: np.ndarray) -> np.ndarray:
        """The selected output (B, K) when the layer's output for input ``sample`` is replaced by
        ``activations`` (B, C, *s), brought back to the layer's own layout (tokens keep their prefix tokens);
        the layers before it run once on that input (or on B copies if the network cannot broadcast a batch
        of one)."""
        return self._from_layer(sample, activations, None)

    def score_from_layer(self, sample: int, activations: np.ndarray, target) -> np.ndarray:
        """The target's scores for input ``sample`` with the layer's output replaced by ``activations``."""
        return self._from_layer(sample, activations, target)

    def input_gradients(self, inputs: np.ndarray, targets, guided: bool = False, samples=None) -> np.ndarray:
        """d score / d input for a Target or class indices, returned channels first (B, C, *S); ``guided`` (True
        or "guided"): through ReLUs that pass only positive gradients, "deconvnet": ReLUs pass their positive
        output gradients to their inputs. Only the explained input is differentiated."""
        target = as_target(targets)
        x = self._assemble(_last(inputs), samples)
        params = target.params(len(inputs)) if samples is None else batch_params(target, len(self.inputs), samples)
        use_guided = "deconvnet" if guided == "deconvnet" else bool(guided)
        model, output, key = self.model, self.output, self.key

        def build():
            @tf.function(input_signature=[signature(x), param_specs(params)])
            def grads(batch, p):
                explained = batch if key is None else batch[key]
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(explained)
                    with contextlib.ExitStack() as stack:
                        stack.enter_context(wrapped([], {}, {}, final_layer(model)))
                        if use_guided:
                            stack.enter_context(guided_relus(model, use_guided))
                        out = selected(model, model(batch, training=False), output, target)
                    score = tf.reduce_sum(plain(target.score)(out, p, OPS))  # inside the tape
                return tape.gradient(score, explained, unconnected_gradients=tf.UnconnectedGradients.ZERO), out
            return grads

        cache = (id(model), "input_grad", use_guided, signature_key(x), key, target.key(),
                 tuple((k, v.shape[1:], v.dtype.kind) for k, v in sorted(params.items())), output_key(output))
        fn = _cached(cache, model, build)
        g, out = _unstaged_call(fn, x, param_tensors(params))
        if self.layer is None:  # no capture checked the target: range, logits (a final softmax skipped)
            check_rows(target, to_numpy(out), len(self.inputs), samples, _has_softmax(self.final))
        return np.moveaxis(g.numpy(), -1, 1)

    def layer_gradients(self, inputs: np.ndarray, target, samples=None) -> tuple:
        """The layer's activations and d score / d activations, both (B, C, *s) canonical, for inputs
        (B, C_in, *S) whose row b belongs to input ``samples[b]`` (default: the batch itself); one compiled
        forward and backward, cached per shape."""
        target = as_target(target)
        x = self._assemble(_last(inputs), samples)
        n = len(tf.nest.flatten(self.full)[0])
        params = target.params(len(inputs)) if samples is None else batch_params(target, n, samples)
        model, layer, output, call = self.model, self.layer, self.output, self.call

        def build():
            @tf.function(input_signature=[signature(x), param_specs(params)])
            def grads(batch, p):
                keep, box = {}, {}
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    box["tape"] = tape
                    with wrapped([layer], keep, box, final_layer(model), runs=[call]):
                        out = selected(model, model(batch, training=False), output, target)
                    score = tf.reduce_sum(plain(target.score)(out, p, OPS))
                if 0 not in keep:
                    raise XcamError(f"layer {layer.name!r} did not run in the forward pass")
                return keep[0], tape.gradient(score, keep[0], unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return grads

        cache = (id(model), "layer_grad", layer.name, call, signature_key(x), target.key(),
                 tuple((k, v.shape[1:], v.dtype.kind) for k, v in sorted(params.items())), output_key(output))
        fn = _cached(cache, model, build)
        a, g = (t.numpy() for t in _unstaged_call(fn, x, param_tensors(params)))
        first = next((v for v in tf.nest.flatten(self.full) if image_like(v.shape) and v.dtype.kind == "f"), None)
        rank = 2 if first is None else first.ndim - 2
        layout = layout_of(self.model, self.layer, a.shape, rank, self.reshape,
                           None if first is None else tuple(first.shape[1:-1]), self.facts)
        return layout.to_canonical(a), layout.to_canonical(g)


def probe(model, inputs, layer, output=None, reshape=None, key=None, call=None, layer_output=None) -> Probe:
    """A ``Probe`` for methods that run the model again on these inputs (a batch (N, *S, C), or a list / dict
    of inputs: ``key`` names the image-like one the probe's ``inputs`` are, default the first), layer (its
    layout detected, or given by ``reshape`` as in ``capture``; None: input gradients only, each output checked
    against the target as a capture would), output, and ``call`` (which call of a layer that runs several times
    is replaced; default the first), and ``layer_output`` (which tensor of a tuple or dict layer output, as in
    ``capture``)."""
    if layer is None:  # a pixel method without a capture: the probe checks the target and the model's dtype
        warn_low_precision(compute_dtype(model))
        return Probe(model, None, as_inputs(inputs, model), output, reshape, key, None, layer_output)
    path, obj = resolve_layer(model, layer)
    runs = None if call is None else run_index(model, path, check_call(call))
    return Probe(model, obj, as_inputs(inputs, model), output, reshape, key, runs, layer_output)


class _Stop(Exception):
    """Raised by a wrapped call once the layer's output exists: the rest of the forward is not needed."""


def layer_output(model, layer, x: tf.Tensor, call: int = 0, part=None) -> tf.Tensor:
    """The layer's output for inputs ``x`` (its own layout) at its call ``call`` (0: the first), from an eager
    forward stopped there (its tensor ``part`` when it returns a structure, ``xcam.layer_outputs.pick``); None if
    the forward never reaches that call."""
    kept = {"calls": 0}
    original = layer.call

    def call_(*args, **kwargs):
        out = original(*args, **kwargs)
        kept["calls"] += 1
        if kept["calls"] - 1 == call:
            kept["out"] = pick(out, part, getattr(layer, "name", "layer"))[1]
            raise _Stop
        return out

    object.__setattr__(layer, "call", call_)
    try:
        model(x, training=False)
    except _Stop:
        pass
    finally:
        object.__delattr__(layer, "call")
    return kept.get("out")


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
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(x)
        out = layer_output(model, obj, x)
        if out is None or out.shape.rank != 4:
            raise XcamError(f"layer {path!r} did not give a spatial output (N, h, w, C)")
        if not 0 <= channel < out.shape[-1]:
            raise XcamError(f"channel {channel} is out of range: layer {path!r} has {out.shape[-1]} channels")
        score = tf.reduce_sum(tf.reduce_mean(out[..., channel], axis=(1, 2)))
    return np.moveaxis(tape.gradient(score, x).numpy(), -1, 1)


_CONVS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.Conv1DTranspose,
          keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose, keras.layers.DepthwiseConv1D,
          keras.layers.DepthwiseConv2D, keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)


def _biased_layers(model) -> list:
    """(path, layer) of every convolution with a bias and every batch normalization."""
    return [(p, layer) for p, layer in walk(model)
            if (isinstance(layer, _CONVS) and layer.use_bias) or isinstance(layer, keras.layers.BatchNormalization)]


def _layer_arrays(layer) -> dict:
    """A convolution's ``bias``, or a batch norm's gamma, beta, moving mean and variance and epsilon, as NumPy."""
    def arr(v):
        return None if v is None else np.asarray(v.numpy(), np.float32)

    if isinstance(layer, _CONVS):
        return {"bias": arr(layer.bias)}
    return {"gamma": arr(layer.gamma), "beta": arr(layer.beta), "mean": arr(layer.moving_mean),
            "var": arr(layer.moving_variance), "eps": float(layer.epsilon)}


def _channel_axis(layer, ndim: int) -> int:
    """Where the layer's output keeps its channels."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return layer.axis % ndim
    return 1 if getattr(layer, "data_format", "channels_last") == "channels_first" else ndim - 1


def bias_gradients(self, inputs: np.ndarray, targets, samples=None) -> tuple:
    """FullGrad's arrays (``xcam.contract.Probe.bias_gradients``) from one compiled forward and backward: d score /
    d input (B, C, *S), and for every run of a convolution with a bias or a batch norm whose output has the
    input's rank, {"layer", "gradient" d score / d output (B, C, *s) channels first, its parameters as arrays}.
    A convolution's output is taken before its activation (where the bias is added)."""
    target = as_target(targets)
    x = self._assemble(_last(inputs), samples)
    params = target.params(len(inputs)) if samples is None else batch_params(target, len(self.inputs), samples)
    model, output, key = self.model, self.output, self.key
    biased = _biased_layers(model)
    ndim = np.ndim(inputs)

    def build():
        order = []

        @tf.function(input_signature=[signature(x), param_specs(params)])
        def grads(batch, p):
            order.clear()
            explained = batch if key is None else batch[key]
            kept, saved = [], []
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(explained)

                def watch(path, layer, t):
                    if t.shape.rank == ndim:
                        tape.watch(t)
                        kept.append(t)
                        order.append((path, layer))
                    return t

                try:
                    for path, layer in biased:
                        if isinstance(layer, _CONVS):
                            act = layer.activation
                            object.__setattr__(layer, "activation",
                                               lambda t, _f=act, _p=path, _l=layer: _f(watch(_p, _l, t)))
                            saved.append((layer, "activation", act))
                        else:
                            original = layer.call
                            object.__setattr__(layer, "call", lambda *a, _f=original, _p=path, _l=layer, **k:
                                               watch(_p, _l, _f(*a, **k)))
                            saved.append((layer, "call", None))
                    with wrapped([], {}, {}, final_layer(model)):
                        out = selected(model, model(batch, training=False), output, target)
                finally:
                    restore(saved)
                score = tf.reduce_sum(plain(target.score)(out, p, OPS))
            zero = tf.UnconnectedGradients.ZERO
            return tape.gradient(score, [explained] + kept, unconnected_gradients=zero), out
        return grads, order

    cache = (id(model), "bias_grad", signature_key(x), key, target.key(),
             tuple((k, v.shape[1:], v.dtype.kind) for k, v in sorted(params.items())), output_key(output))
    fn, order = _cached(cache, model, build)
    grads, out = _unstaged_call(fn, x, param_tensors(params))
    if self.layer is None:  # no capture checked the target: range, logits (a final softmax skipped)
        check_rows(target, to_numpy(out), len(self.inputs), samples, _has_softmax(self.final))
    g = [t.numpy() for t in grads]
    layers = [{"layer": path, "gradient": np.moveaxis(grad, _channel_axis(layer, grad.ndim), 1), **_layer_arrays(layer)}
              for (path, layer), grad in zip(order, g[1:])]
    return np.moveaxis(g[0], -1, 1), layers


Probe.bias_gradients = bias_gradients
