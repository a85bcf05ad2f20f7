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
    for method in ("gradcam", "layercam", "cam"):
        _check(xcam_tf.cam(model, x, "vgg16/block5_conv3", method, targets=[0, 1]), 2)
