"""Fetch activations, gradients and logits from a Keras 3 model. Mechanics only: every formula is in xcam/.

How: while a compiled (``tf.function``) step is traced, the target layer's ``call`` is wrapped so that its
output is kept and watched by a ``GradientTape(watch_accessed_variables=False)``: the tape records only what
follows the layer, and ``tape.gradient`` goes back to that output alone. This reaches layers inside
Sequential, functional and nested models alike. A final softmax is traced as the identity, so scores are
logits. The step is cached per model, layer and input shape, so repeated calls do not retrace; the wraps
are removed in ``finally`` and the model's layers are left as they were.
"""

import contextlib
from collections import OrderedDict

import keras
import numpy as np
import tensorflow as tf

from xcam.contract import BATCH_LAYOUTS, Capture, check_batch, warn_low_precision
from xcam.errors import XcamError
from xcam.inputs import SINGLE, batch_size, entries, image_like, name, rebuild
from xcam.layer_outputs import pick, put
from xcam.layers import LayerRecord, LayerRecorder, call_error, check_call, default_layer_name
from xcam.methods.activation import check_head_weights
from xcam.targets import as_target, is_tensor, select_output

from ._attention import block_arrays
from ._layouts import layout_of, model_facts
from ._model import OPS, param_tensors, resolve_layer, restore, walk

LAYOUT = "channels_last"
_STEPS: OrderedDict = OrderedDict()  # (id(model), layer, shape, rank, gradients) -> compiled step; LRU
_MAX_STEPS = 16  # a step holds its model: keep only the few most recent


def final_layer(model):
    """The layer that produces the model's output (descending into a nested last model)."""
    layers = getattr(model, "layers", [])
    if not layers:
        return None
    last = layers[-1]
    return final_layer(last) if hasattr(last, "layers") and last.layers else last


@contextlib.contextmanager
def wrapped(layers, keep: dict, tape_box: dict, final, replace=None, runs=None, counts=None, layer_output=None):
    """Wrap the target layers' calls (keep and watch their outputs at their run ``runs[i]``, default the first:
    a shared layer runs several times; or ``replace`` the first one's output there) and make a final softmax
    the identity; ``counts`` (a dict) receives how often each layer ran; ``layer_output``: which tensor of a
    structured layer output is kept or replaced (``xcam.layer_outputs.pick``). Everything is undone on exit."""
    saved = []
    counts = {} if counts is None else counts

    def wrap(index, layer):
        original = layer.call
        wanted = (runs[index] if runs is not None else None) or 0

        def call_(*args, **kwargs):
            seen = counts[index] = counts.get(index, 0) + 1
            if seen - 1 != wanted:
                return original(*args, **kwargs)            # another call of a shared layer: left as it is
            whole = original(*args, **kwargs)
            part, out = pick(whole, layer_output, getattr(layer, "name", "layer"))
            if replace is not None:
                out = replace
            if tape_box.get("tape") is not None:
                tape_box["tape"].watch(out)
            keep[index] = out
            return put(whole, part, out)
        return call_

    try:
        for index, layer in enumerate(layers):
            object.__setattr__(layer, "call", wrap(index, layer))
            saved.append((layer, "call", None))
        if final is not None and _is_softmax(getattr(final, "activation", None)):
            saved.append((final, "activation", final.activation))
            object.__setattr__(final, "activation", keras.activations.linear)
        elif final is not None and isinstance(final, keras.layers.Softmax):
            saved.append((final, "call", None))
            object.__setattr__(final, "call", lambda x, *a, **k: x)
        yield
    finally:
        restore(saved)


def run_index(model, path: str, call: int) -> int:
    """Which run of a shared layer in one forward is its call ``call`` counted as the model was built (the order
    the code applied it: ``enc(left)`` before ``enc(right)``): a functional model runs its graph depth by depth,
    not in that order. The layer (or the nested model holding it, which it runs once per call) is looked up among
    the top-level graph's nodes; elsewhere (a subclassed model) the run order is the code's order already."""
    nodes_by_depth = getattr(model, "_nodes_by_depth", None)
    parts = path.split("/")
    layers = dict(walk(model))
    owner = layers.get(parts[0])
    if not nodes_by_depth or owner is None:
        return call
    if len(parts) > 1 and len(getattr(layers[path], "_inbound_nodes", [])) != 1:
        return call                                   # shared inside the nested model too: run order
    ran = [node for depth in sorted(nodes_by_depth, reverse=True) for node in nodes_by_depth[depth]
           if node.operation is owner and not node.is_input]
    built = [node for node in owner._inbound_nodes if any(node is r for r in ran)]
    if call >= len(built) or len(built) != len(ran):
        return call
    return next(i for i, node in enumerate(ran) if node is built[call])


def _is_softmax(fn) -> bool:
    return fn is not None and getattr(fn, "__name__", "") == "softmax"


def _has_softmax(final) -> bool:
    """Whether ``wrapped`` traces the final layer's softmax as the identity."""
    return final is not None and (_is_softmax(getattr(final, "activation", None))
                                  or isinstance(final, keras.layers.Softmax))


def _cached(key, model, build):
    if key in _STEPS and _STEPS[key][0] is model:
        _STEPS.move_to_end(key)
        return _STEPS[key][1]
    _STEPS[key] = (model, build())
    while len(_STEPS) > _MAX_STEPS:
        _STEPS.popitem(last=False)
    return _STEPS[key][1]


def output_names(model):
    """The Keras output names of a model with several outputs (None if it has no such list)."""
    names = getattr(model, "output_names", None)
    return list(names) if names else None


def canonical(output):
    """A selected output in xcam's layout: a rank-4 or rank-5 tensor (Keras class maps (N, H, W, K) or
    (N, D, H, W, K)) channels first."""
    if is_tensor(output) and output.shape.rank == 4:
        return tf.transpose(output, (0, 3, 1, 2))
    if is_tensor(output) and output.shape.rank == 5:
        return tf.transpose(output, (0, 4, 1, 2, 3))
    return output


def selected(model, raw, output, target):
    """The output the target sees (``xcam.targets.select_output`` with the model's output names), canonical."""
    return canonical(select_output(raw, output, names=output_names(model), whole=target.whole_output))


def param_specs(params: dict) -> dict:
    """TensorSpecs (batch axis free) for a target's NumPy parameters: floats float32, integers int32."""
    return {k: tf.TensorSpec((None, *v.shape[1:]), tf.float32 if v.dtype.kind == "f" else tf.int32)
            for k, v in params.items()}


def plain(fn):
    """``fn`` called as is inside a traced step: autograph does not convert it (targets need no conversion: their
    Python branches are on shapes and settings), which also keeps autograph's cache of converted functions, keyed
    by code objects that a long test session recycles, from handing back another function's conversion."""
    return tf.autograph.experimental.do_not_convert(fn)


def output_key(output):
    """A cache key for an ``output=`` selection."""
    return output if output is None or isinstance(output, (str, int)) else ("callable", id(output))


def unstaged(exc: BaseException) -> BaseException:
    """The one-line XcamError behind an error TensorFlow re-raised from inside a traced step (it adds the
    traceback to the message, or wraps it in a StagingError); the error itself when there is none."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, XcamError) and "\n" not in str(e):
            return e
        todo += [e.__cause__, e.__context__]
    return exc


def _step(model, paths, x, target, params: dict, output, gradients: bool, call=None, runs=None,
          layer_output=None):
    """The compiled capture step for this model, layers, input shape, target kind, output selection and call
    of shared layers (``call`` as the user gave it, ``runs`` the run index of each layer it means)."""
    count, columns = len(paths), target.columns
    specs = param_specs(params)

    def build():
        keep: dict = {}
        tape_box: dict = {}

        @tf.function(input_signature=[signature(x), specs])
        def step(x, p):
            keep.clear()
            counts = tape_box.setdefault("counts", {})
            counts.clear()
            with tf.GradientTape(watch_accessed_variables=False, persistent=columns > 0) as tape:
                tape_box["tape"] = tape if gradients else None
                out = selected(model, model(x, training=False), output, target)
                for i in range(count):  # traced once per shape: a wrong call fails here, never compiled
                    if (call is None and counts.get(i, 0) > 1) or (call is not None and counts.get(i, 0) <= runs[i]):
                        raise call_error(paths[i], counts.get(i, 0), call)
                acts = [keep[i] for i in range(count)]
                score = plain(target.score)(out, p, OPS)
                total = tf.reduce_sum(score)  # recorded by the tape
            tape_box.pop("tape", None)
            if not gradients:
                return acts, [tf.zeros((0,))] * count, out, score
            zero = tf.UnconnectedGradients.ZERO
            if not columns:
                return acts, tape.gradient(total, acts, unconnected_gradients=zero), out, score
            onehots = tf.eye(columns, dtype=score.dtype)
            per_class = [tape.gradient(score, acts, output_gradients=tf.ones_like(score) * onehots[j],
                                       unconnected_gradients=zero) for j in range(columns)]
            return acts, [tf.stack([pc[i] for pc in per_class], axis=1) for i in range(count)], out, score

        return step, keep, tape_box

    key = (id(model), tuple(paths), signature_key(x), target.key(),
           tuple((k, v.shape[1:], v.dtype.kind) for k, v in sorted(params.items())), output_key(output), gradients,
           call, None if runs is None else tuple(runs), layer_output)
    return _cached(key, model, build)


def to_numpy(tree):
    """Tensors of an output (nested in dicts, lists, tuples) as NumPy; floats as float32."""
    if isinstance(tree, (tf.Tensor, tf.Variable)) or (hasattr(tree, "numpy") and hasattr(tree, "dtype")):
        a = np.asarray(tree.numpy())
        return a.astype(np.float32) if a.dtype.kind == "f" else a
    if isinstance(tree, dict):
        return {k: to_numpy(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [to_numpy(v) for v in tree]
    return tree


def input_rank(model) -> int | None:
    """The spatial rank of the model's declared input ((N, *S, C) -> len(S)), None when it declares none."""
    try:
        return len(model.inputs[0].shape) - 2
    except (AttributeError, IndexError, TypeError, ValueError):
        return None


def signature(x):
    """TensorSpecs (batch axis free) for one input tensor or a list / dict of them."""
    return tf.nest.map_structure(lambda t: tf.TensorSpec((None, *t.shape[1:]), tf.as_dtype(t.dtype)), x)


def signature_key(x) -> tuple:
    """A cache key for the inputs' structure, shapes and dtypes."""
    keys = tuple(sorted(x)) if isinstance(x, dict) else len(x) if isinstance(x, (list, tuple)) else None
    return keys, tuple((tuple(t.shape[1:]), tf.as_dtype(t.dtype).name) for t in tf.nest.flatten(x))


def as_inputs(inputs, model=None):
    """One batch as ``as_batch``, or several inputs (a list or dict, ``xcam.inputs``) as a list / dict of
    tensors (floats as float32, integers kept)."""
    kind, items = entries(inputs)
    if kind == SINGLE:
        return as_batch(inputs, model)
    batch_size(items)
    out = []
    for key, value in items:
        try:
            t = tf.convert_to_tensor(value)
        except (TypeError, ValueError):
            raise XcamError(f"{name(key)} (a {type(value).__name__}) cannot be batched: give an array or tensor "
                            "with the batch on its first axis") from None
        out.append((key, tf.cast(t, tf.float32) if t.dtype.is_floating else t))
    return rebuild(kind, out)


def primary(x):
    """The first image-like input (3-D to 5-D float) of one batch or several inputs, or None."""
    for t in tf.nest.flatten(x):
        if image_like(t.shape) and t.dtype.is_floating:
            return t
    return None


def as_batch(inputs, model=None) -> tf.Tensor:
    """The inputs as a float32 tensor (N, *S, C), of the model's declared rank when ``model`` is given."""
    x = tf.convert_to_tensor(inputs, dtype=tf.float32)   # a copy: the caller's array may change after the call
    check_batch(tuple(x.shape), LAYOUT, None if model is None else input_rank(model))
    if model is not None:
        check_input_shape(model, tuple(x.shape))
    return x


def compute_dtype(model) -> str:
    """The lowest-precision float dtype any layer computes in ("float32" for a plain model)."""
    found = {str(getattr(layer, "compute_dtype", "float32")) for _, layer in walk(model)}
    return next((d for d in ("float16", "bfloat16") if d in found), "float32")


def check_input_shape(model, shape: tuple) -> None:
    """Refuse a batch that does not fit the model's declared input (*S, C) before anything is traced; a
    channels-first batch (N, C, *S) is named as such."""
    try:
        declared = tuple(model.inputs[0].shape[1:])
    except (AttributeError, IndexError, TypeError, ValueError):
        return
    got = tuple(int(d) for d in shape[1:])
    if len(declared) != len(got) or all(d is None or d == g for d, g in zip(declared, got)):
        return
    want = "(N, " + ", ".join("?" if d is None else str(d) for d in declared) + ")"
    layout = BATCH_LAYOUTS["channels_last"].get(len(got) - 1, "(N, ..., C)")
    hint = ""
    if declared[-1] is not None and got[0] == declared[-1] and got[-1] != declared[-1]:
        first = BATCH_LAYOUTS["channels_first"].get(len(got) - 1, "(N, C, ...)")
        hint = f": this batch looks channels first {first}; give np.moveaxis(inputs, 1, -1)"
    raise XcamError(f"the model takes inputs {want}, channels last {layout}, got shape {(shape[0], *got)}{hint}")


_POOLS = (keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.MaxPooling3D,
          keras.layers.AveragePooling1D, keras.layers.AveragePooling2D, keras.layers.AveragePooling3D,
          keras.layers.GlobalAveragePooling1D, keras.layers.GlobalAveragePooling2D, keras.layers.GlobalAveragePooling3D,
          keras.layers.GlobalMaxPooling1D, keras.layers.GlobalMaxPooling2D, keras.layers.GlobalMaxPooling3D,
          keras.layers.Dropout, keras.layers.Flatten, keras.layers.Identity)


def layer_records(model, input_shape: tuple) -> list[LayerRecord]:
    """One record per layer (nested paths), in the order layers finish, from a forward on zeros (1, *S, C).

    Shapes are reported channels first, (N, C, *s), after each layer's layout (tokens on their grid).
    """
    recorder = LayerRecorder()
    paths = list(walk(model))
    rank = len(input_shape) - 1
    facts = model_facts(model)   # read once for every layer's layout

    def wrap(path, layer):
        original = layer.call

        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            if not tf.is_tensor(out):
                try:
                    out = pick(out)[1]
                except XcamError:
                    pass
            if tf.is_tensor(out):
                recorder.saw(path, tuple(out.shape), out,
                             lambda shape: layout_of(model, layer, shape, rank, spatial=tuple(input_shape[:-1]),
                                                     facts=facts))
            else:
                recorder.saw(path, None)
            return out
        return call

    with contextlib.ExitStack() as stack:
        for path, layer in paths:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            object.__setattr__(layer, "call", wrap(path, layer))
            stack.callback(object.__delattr__, layer, "call")
        model(tf.zeros((1, *input_shape), tf.float32), training=False)
    return recorder.records({p: type(obj).__name__ for p, obj in paths},
                            {p for p, obj in paths if isinstance(obj, _POOLS)})


def _last_dense_weight(model):
    dense = [obj for _, obj in walk(model) if isinstance(obj, keras.layers.Dense)]
    return np.asarray(dense[-1].kernel.numpy()).T if dense else None


def capture(model, inputs, layer, targets=None, *, classes=None, gradients: bool = True, head: bool = False,
            labels=None, output=None, reshape=None, call=None, layer_output=None, hvp: bool = False,
            attention: dict | None = None):
    """Activations and gradients as (N, C, *s) NumPy arrays (channels first), and the selected output.

    layer: a name, path or layer, or a list of them (then a list of Captures from one forward/backward); None:
    the CLI's default layer (``xcam.layers.default_layer``), named in the Capture's ``layer``.
    targets, classes, output: as in ``xcam_torch.capture`` (a Target, ints, a spec or a callable; the model
    output the target sees, by dict key, Keras output name, index or callable). The layer's layout (channels
    last, tokens) is detected (``xcam.layouts``) or given by ``reshape`` (a callable on NumPy arrays
    (N, ...) -> (N, C, *s), a Layout or a layout name). call: which call of a layer that runs several times in
    one forward (a siamese encoder) is captured, from 0. layer_output: which tensor of a layer that returns a
    tuple, dict or dataclass is explained, by index or name; default the first of a spatial rank
    (``xcam.layer_outputs``). hvp: also H A per layer (``_hessian_product``; (N, K, C, *s) with ``classes``).
    attention: {"head": ..., "attention": ...} (LeGrad's options): also each layer's LeGrad arrays
    (``Capture.attention``, ``xcam_tf._attention.block_arrays``: one eager forward for all the layers, after
    this one has resolved the target); one class per sample only (else None).
    """
    x = as_inputs(inputs, model)
    gradients = gradients or hvp
    if layer is None:
        layer = default_layer_name(layer_records, model, tuple(x.shape[1:]) if tf.is_tensor(x) else None)
    layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    if not layers:
        raise XcamError("no layer given")
    resolved = [resolve_layer(model, one) for one in layers]
    target = as_target(targets, classes)
    warn_low_precision(compute_dtype(model))
    n = int(tf.nest.flatten(x)[0].shape[0])
    params = target.params(n)
    paths = [p for p, _ in resolved]
    call = check_call(call)
    runs = None if call is None else [run_index(model, path, call) for path in paths]
    final = final_layer(model)
    if target.resolved_first:  # the target's params depend on the output (finercam): one pass to fix them
        first, _, _ = _run(model, resolved, paths, x, target, params, output, False, call, runs, layer_output)
        target = target.resolve(to_numpy(first[2]))
        params = target.params(n)
    (acts, grads, out, score), _, _ = _run(model, resolved, paths, x, target, params, output,
                                           gradients, call, runs, layer_output)
    out_np = to_numpy(out)
    target.check(out_np, labels, softmax_skipped=_has_softmax(final))
    chosen = target.resolve(out_np)
    scores = out_np if is_tensor(out_np) and out_np.ndim >= 1 else np.zeros((n, 0), np.float32)
    arrays = [None] * len(resolved)
    if attention is not None and not chosen.columns:
        arrays = block_arrays(model, x, [obj for _, obj in resolved], chosen, **attention)
    caps, facts = [], model_facts(model)
    for (path, obj), act, grad, att in zip(resolved, acts, grads, arrays):
        if not 3 <= act.shape.rank <= 5:
            raise XcamError(f"layer {path!r} outputs shape {tuple(act.shape)}, not a spatial map (N, L, C), "
                            "(N, h, w, C), (N, d, h, w, C) or tokens (N, T, C)")
        first = primary(x)
        layout = layout_of(model, obj, tuple(act.shape), 2 if first is None else first.shape.rank - 2, reshape,
                           None if first is None else tuple(first.shape[1:-1]), facts)
        a = layout.to_canonical(act.numpy())
        g = layout.to_canonical(grad.numpy(), lead=grad.shape.rank - act.shape.rank + 1) if gradients else None
        head_w = check_head_weights(_last_dense_weight(model), a.shape[1], scores.shape[1]) if head else None
        hv = None
        if hvp:
            hv = _hessian_product(model, obj, x, act, call or 0, layer_output, output, chosen, chosen.params(n))
            hv = layout.to_canonical(hv, lead=hv.ndim - act.shape.rank + 1)
        caps.append(Capture(activations=a, gradients=g, scores=scores, targets=chosen.class_indices(n), layer=path,
                            head_weights=head_w, target=chosen, target_scores=score.numpy(), layout=layout, hvp=hv,
                            attention=att))
    return caps if isinstance(layer, (list, tuple)) else caps[0]


def _hessian_product(model, obj, x, act, call: int, layer_output, output, target, params) -> np.ndarray:
    """H A = d<g, A>/dA with A held, g = d sum(score)/dA: the layer's output ``act`` (native layout) replaced by
    itself and watched by two nested GradientTapes, one eager forward from it (ShapleyCAM); for K scores per
    sample one of each per class, stacked (N, K, ...)."""
    a = tf.constant(act)
    unconnected = tf.UnconnectedGradients.ZERO
    with tf.GradientTape(watch_accessed_variables=False, persistent=True) as outer:
        outer.watch(a)
        with tf.GradientTape(watch_accessed_variables=False, persistent=True) as inner:
            inner.watch(a)
            with wrapped([obj], {}, {}, final_layer(model), replace=a, runs=[call], layer_output=layer_output):
                out = selected(model, model(x, training=False), output, target)
            score = plain(target.score)(out, param_tensors(params), OPS)
            sums = [tf.reduce_sum(score)] if not target.columns else \
                [tf.reduce_sum(score[:, j]) for j in range(target.columns)]
        firsts = [inner.gradient(s, a, unconnected_gradients=unconnected) for s in sums]
    hvps = [outer.gradient(g, a, output_gradients=tf.stop_gradient(a), unconnected_gradients=unconnected).numpy()
            for g in firsts]
    return hvps[0] if not target.columns else np.stack(hvps, 1)


def _run(model, resolved, paths, x, target, params, output, gradients, call, runs, layer_output=None):
    """One compiled step: (acts, grads, out, score), and the step's keep and tape_box."""
    step, keep, tape_box = _step(model, paths, x, target, params, output, gradients, call, runs, layer_output)
    final = final_layer(model)
    try:
        with wrapped([obj for _, obj in resolved], keep, tape_box, final, runs=runs,
                     counts=tape_box.setdefault("counts", {}), layer_output=layer_output):
            acts, grads, out, score = step(x, param_tensors(params))
    except tf.errors.InvalidArgumentError as exc:
        shapes = ", ".join(str(tuple(t.shape)) for t in tf.nest.flatten(x))
        raise XcamError(f"the model could not run on inputs of shape {shapes}: "
                        f"{exc.message.splitlines()[0]}") from None
    except Exception as exc:  # an XcamError raised while tracing comes back wrapped by TensorFlow
        found = unstaged(exc)
        if found is exc:
            raise
        raise found.with_traceback(None) from None
    finally:
        keep.clear()
    return (acts, grads, out, score), keep, tape_box


def linear_head(model, head=None) -> tuple:
    """(weight (K, C), bias (K,) or None) of a dense layer as float32 NumPy, in xcam's (out, in) layout:
    ``head`` (a name, path or layer) or, by default, the model's last ``Dense`` (the classifier
    ``xcam.concepts`` scores concepts with; its activation, a softmax included, is left out: logits)."""
    if head is None:
        dense = [obj for _, obj in walk(model) if isinstance(obj, keras.layers.Dense)]
        if not dense:
            raise XcamError("the model has no Dense layer to score the concepts with; give head= a dense layer, "
                            "or head=False")
        obj = dense[-1]
    else:
        path, obj = resolve_layer(model, head)
        if not isinstance(obj, keras.layers.Dense):
            raise XcamError(f"head {path!r} is a {type(obj).__name__}, not a Dense layer")
    bias = np.asarray(obj.bias.numpy(), np.float32) if obj.use_bias else None
    return np.ascontiguousarray(np.asarray(obj.kernel.numpy(), np.float32).T), bias
