"""Keras specifics: softmax heads, nested models, paths, compiled capture without retracing."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")
import keras  # noqa: E402

import xcam_tf  # noqa: E402
from xcam import XcamError  # noqa: E402

pytestmark = pytest.mark.tf


def tiny(activation=None, seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(3, 3, padding="same", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, keras.layers.Dense(2, activation=activation, name="fc")(x), name="tiny")


X = np.random.RandomState(0).randn(2, 8, 8, 3).astype(np.float32)


def test_softmax_head_is_explained_on_logits():
    soft = tiny("softmax")
    lin = tiny(None)
    lin.set_weights(soft.get_weights())
    cap = xcam_tf.capture(soft, X, "conv2", 1)
    np.testing.assert_allclose(cap.scores, np.asarray(lin(X)), atol=1e-5)
    np.testing.assert_allclose(xcam_tf.cam(soft, X, "conv2", targets=1), xcam_tf.cam(lin, X, "conv2", targets=1),
                               atol=1e-6)
    assert soft.get_layer("fc").activation.__name__ == "softmax"  # restored
    np.testing.assert_allclose(np.asarray(soft(X)).sum(1), 1.0, atol=1e-5)


def test_final_softmax_layer_is_skipped():
    base = tiny(None)
    model = keras.Sequential([keras.Input((8, 8, 3)), base, keras.layers.Softmax(name="probs")])
    np.testing.assert_allclose(xcam_tf.capture(model, X, "tiny/conv2", 0).scores, np.asarray(base(X)), atol=1e-5)


def test_nested_model_by_path_and_by_unique_name():
    inner = tiny(None)
    outer = keras.Sequential([keras.Input((8, 8, 3)), inner], name="outer")
    by_path = xcam_tf.cam(outer, X, "tiny/conv2", targets=[0, 1])
    np.testing.assert_allclose(by_path, xcam_tf.cam(outer, X, "conv2", targets=[0, 1]))
    np.testing.assert_allclose(by_path, xcam_tf.cam(inner, X, "conv2", targets=[0, 1]), atol=1e-6)
    np.testing.assert_allclose(by_path, xcam_tf.cam(outer, X, inner.get_layer("conv2"), targets=[0, 1]))


def test_sequential_model():
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(3, 3, name="c"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    assert xcam_tf.cam(model, X, "c").shape == (2, 8, 8)


def test_compiled_step_is_not_retraced_for_the_same_shape():
    model = tiny(None)
    xcam_tf.cam(model, X, "conv2", targets=[0, 1])
    from xcam_tf._capture import _STEPS
    (step, _, _), = [v[1] for k, v in _STEPS.items() if v[0] is model]
    before = step.experimental_get_tracing_count()
    for targets in (None, 1, [1, 0]):
        xcam_tf.cam(model, X + 1, "conv2", targets=targets)
    assert step.experimental_get_tracing_count() == before


def test_probabilities_without_a_softmax_layer_are_reported():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(3, 3, name="c")(inp))
    x = keras.layers.Dense(2)(x)
    model = keras.Model(inp, keras.layers.Lambda(lambda t: keras.ops.softmax(t))(x))
    with pytest.raises(XcamError, match="outputs are probabilities"):
        xcam_tf.cam(model, X, "c")


def test_rows_reach_tensorflow_channels_last_without_a_strided_copy():
    from xcam.methods.occlusion import masked_rows
    from xcam_tf._probe import _last
    rng = np.random.default_rng(3)
    plain = rng.standard_normal((4, 3, 5, 6)).astype(np.float32)             # channels-first memory
    np.testing.assert_array_equal(_last(plain), np.moveaxis(plain, 1, -1))     # copied one channel at a time
    assert _last(plain).flags.c_contiguous
    wide = rng.standard_normal((2, 16, 3, 3)).astype(np.float32)              # many channels: NumPy's copy
    np.testing.assert_array_equal(_last(wide), np.moveaxis(wide, 1, -1))
    rows = masked_rows(plain[0], rng.random((2, 5, 6)).astype(np.float32))
    assert np.shares_memory(_last(rows), rows)                                  # the core's rows: no copy
    np.testing.assert_array_equal(_last(rows), np.moveaxis(rows, 1, -1))
    np.testing.assert_array_equal(_last(plain.astype(np.float64)), np.moveaxis(plain, 1, -1))


def test_aligned_rows_reach_tensorflow_without_a_copy():
    from xcam.methods.occlusion import masked_rows
    from xcam.ops import ALIGNMENT, aligned_empty
    from xcam_tf._host import host_tensor
    from xcam_tf._probe import _last
    for shape, dtype in (((3, 5, 7, 2), np.float32), ((11,), np.float64), ((0, 4), np.float32), (9, np.uint8)):
        a = aligned_empty(shape, dtype)
        assert (a.ctypes.data % ALIGNMENT == 0 or not a.size) and a.flags.c_contiguous and a.dtype == dtype
        assert a.shape == (shape if isinstance(shape, tuple) else (shape,))
    rng = np.random.default_rng(4)
    rows = masked_rows(rng.standard_normal((3, 5, 6)).astype(np.float32), rng.random((2, 5, 6)).astype(np.float32))
    last = _last(rows)
    shared = host_tensor(last)
    last[0, 0, 0, 0] = 7.0                                   # the tensor is the rows' memory, not a copy of it
    assert float(shared[0, 0, 0, 0]) == 7.0
    odd = np.empty(last.size + 1, np.float32)[1:].reshape(last.shape)    # 4 bytes past a boundary: copied
    odd[...] = last
    copied = host_tensor(odd)
    odd[0, 0, 0, 0] = -1.0
    assert float(copied[0, 0, 0, 0]) == 7.0
    np.testing.assert_array_equal(copied.numpy(), shared.numpy())
    from xcam_tf._capture import as_batch
    users = aligned_empty((2, 8, 8, 3))
    users[...] = X
    batch = as_batch(users)                                  # a caller's array is copied, even when aligned
    users[...] = 0.0
    np.testing.assert_array_equal(batch.numpy(), X)
    plain = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)        # channels-first: copied once, aligned
    assert _last(plain).ctypes.data % ALIGNMENT == 0
    model = tiny(None)
    probe = xcam_tf.probe(model, X, "conv2")
    from xcam.targets import as_target
    scores = probe.score(np.moveaxis(X, -1, 1), as_target(1), np.arange(len(X)))   # X's own (unaligned) memory
    np.testing.assert_allclose(scores, np.asarray(model(X))[:, 1], rtol=1e-6, atol=1e-6)


def test_the_model_wide_layout_facts_are_read_once_per_listing_capture_and_probe(monkeypatch):
    from xcam_tf import _layouts
    reads = []
    real = _layouts.prefix_tokens
    monkeypatch.setattr(_layouts, "prefix_tokens", lambda model: reads.append(1) or real(model))
    model = tiny(None)
    records = xcam_tf.layer_records(model, (8, 8, 3))
    assert len(reads) == 1 and {"conv1", "conv2"} <= {r.name for r in records}
    reads.clear()
    caps = xcam_tf.capture(model, X, ["conv1", "conv2"], 1)
    assert len(reads) == 1 and [c.activations.shape[1] for c in caps] == [4, 3]   # one read for both layers
    reads.clear()
    xcam_tf.cam(model, X, "conv2", "ablationcam", targets=1)   # the capture's read, the probe's for both samples
    assert len(reads) == 2
