"""Real-size models end to end: torchvision AlexNet and Keras VGG16 (random weights, no download)."""

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _check(maps, n):
    assert maps.shape == (n, 224, 224) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() == 0.0 and maps.max() == 1.0


@pytest.mark.torch
def test_torchvision_alexnet_lab_layer():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    import xcam_torch

    torch.manual_seed(0)
    model = torchvision.models.alexnet(num_classes=2)
    x = torch.randn(3, 3, 224, 224)
    for method in ("gradcam", "layercam"):
        _check(xcam_torch.cam(model, x, "features.10", method, targets=[0, 1, 1]), 3)
    # batch independence: each sample's map equals the map computed alone
    alone = xcam_torch.cam(model, x[1:2], "features.10", "gradcam", targets=1)
    np.testing.assert_allclose(xcam_torch.cam(model, x, "features.10", targets=[0, 1, 1])[1:2], alone, atol=1e-5)


@pytest.mark.tf
def test_keras_vgg16_block5_conv3_nested():
    pytest.importorskip("tensorflow")
    import keras

    import xcam_tf

    keras.utils.set_random_seed(0)
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(224, 224, 3))
    inp = keras.Input((224, 224, 3))
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(base(inp)))
    model = keras.Model(inp, out)
    x = np.random.RandomState(0).rand(2, 224, 224, 3).astype(np.float32) * 50
    got = {}
    for method in ("gradcam", "layercam", "cam"):
        got[method] = xcam_tf.cam(model, x, "vgg16/block5_conv3", method, targets=[0, 1])
        _check(got[method], 2)
    # values: the three maps straight from TensorFlow, no xcam involved: a tape on block5_conv3's output,
    # the rest of the network (block5_pool, GAP, Dense before its softmax) applied by hand
    import tensorflow as tf

    gap, dense = model.layers[2], model.layers[3]
    acts = keras.Model(base.input, base.get_layer("block5_conv3").output)(x)
    with tf.GradientTape() as tape:
        tape.watch(acts)
        logits = tf.matmul(gap(base.get_layer("block5_pool")(acts)), dense.kernel) + dense.bias
        score = tf.reduce_sum(logits * tf.one_hot([0, 1], 2))
    grads = tape.gradient(score, acts)
    np.testing.assert_allclose(xcam_tf.capture(model, x, "vgg16/block5_conv3", [0, 1]).scores, logits.numpy(),
                               rtol=1e-4, atol=1e-4)

    def finish(raw):
        up = tf.image.resize(raw[..., None], (224, 224), method="bilinear")[..., 0].numpy()
        lo, hi = up.min(axis=(1, 2), keepdims=True), up.max(axis=(1, 2), keepdims=True)
        return np.divide(up - lo, hi - lo, out=np.zeros_like(up), where=hi > lo)  # all zero where constant

    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    expected = {"gradcam": finish(tf.nn.relu(tf.reduce_sum(weights * acts, -1))),
                "layercam": finish(tf.nn.relu(tf.reduce_sum(tf.nn.relu(grads) * acts, -1))),
                "cam": finish(tf.einsum("nhwk,kn->nhw", acts, tf.gather(dense.kernel, [0, 1], axis=1)))}
    for method, want in expected.items():
        assert want.max() == 1.0  # not all zero (sample 0's Grad-CAM is: only negative evidence for class 0)
        np.testing.assert_allclose(got[method], want, atol=2e-4, err_msg=method)
