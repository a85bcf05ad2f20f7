"""The same network in the shapes users hand it over: channels-last memory (PyTorch), a module or layer called
twice, frozen parameters, float64 weights, a call inside no_grad (PyTorch) or an outer GradientTape (Keras). Each
is checked on both frameworks where the framework has the case, against the plain float32 model's maps."""

import numpy as np
import pytest

from xcam import XcamError

METHODS = ["gradcam", "layercam", "scorecam", "guidedbackprop"]


def _maps(fw, model, inputs=None, method="gradcam"):
    return fw.module.cam(model, fw.inputs if inputs is None else inputs, fw.conv2, method, [1, 0])


@pytest.mark.torch
@pytest.mark.parametrize("method", METHODS)
def test_torch_channels_last_model_and_input(method):
    import torch
    from kits import make_kit

    fw = make_kit("torch")
    plain = _maps(fw, fw.model, method=method)
    model = fw.model.to(memory_format=torch.channels_last)
    x = torch.from_numpy(fw.x_nchw).contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(fw.module.cam(model, x, "conv2", method, [1, 0]), plain, atol=1e-5)
    assert model.conv2.weight.is_contiguous(memory_format=torch.channels_last)  # left as it was


def test_layer_called_twice_is_refused_in_one_line(fw):
    # the same conv applied twice in one forward: which call to explain is ambiguous, so it is refused
    if fw.name == "torch":
        from torch import nn

        class Twice(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 3, 3, padding=1)
                self.fc = nn.Linear(3, 2)

            def forward(self, x):
                return self.fc(self.conv(self.conv(x)).mean((2, 3)))

        model = Twice().eval()
    else:
        import keras

        conv = keras.layers.Conv2D(3, 3, padding="same", name="conv")
        inp = keras.Input((8, 8, 3))
        model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(conv(conv(inp)))))
    for method in ("gradcam", "eigencam"):
        with pytest.raises(XcamError) as err:
            fw.module.cam(model, fw.inputs, "conv", method)
        assert str(err.value) == ("layer 'conv' runs 2 times in one forward pass (a shared module, e.g. a siamese "
                                  "encoder); pick one call with call=0 ... call=1 (one map per call: one cam per "
                                  "call), or a layer that runs once")
    if fw.name == "torch":
        assert not model.conv._forward_hooks
    else:
        assert "call" not in vars(model.get_layer("conv"))


def test_shared_layer_elsewhere_does_not_disturb(fw):
    # a layer used twice elsewhere in the model: the explained layer runs once, and its maps are the formula's
    import xcam

    if fw.name == "torch":
        import torch
        from torch import nn

        torch.manual_seed(0)

        class Shared(nn.Module):
            def __init__(self):
                super().__init__()
                self.mix = nn.Conv2d(3, 3, 1)
                self.conv = nn.Conv2d(3, 4, 3, padding=1)
                self.fc = nn.Linear(4, 2)

            def forward(self, x):
                return self.fc(torch.relu(self.conv(self.mix(self.mix(x)))).mean((2, 3)))

        model = Shared().eval()
    else:
        import keras

        keras.utils.set_random_seed(0)
        mix = keras.layers.Conv2D(3, 1, name="mix")
        inp = keras.Input((8, 8, 3))
        h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(mix(mix(inp)))
        model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(h)))
    cap = fw.module.capture(model, fw.inputs, "conv", [0, 1])
    expected = xcam.normalize_minmax(np.maximum(np.einsum("nk,nkhw->nhw", cap.gradients.mean((2, 3)),
                                                          cap.activations), 0))
    np.testing.assert_allclose(fw.module.cam(model, fw.inputs, "conv", "gradcam", [0, 1]), expected, atol=1e-5)
    assert np.abs(cap.gradients).sum() > 0


@pytest.mark.parametrize("method", METHODS)
def test_frozen_parameters_give_the_same_maps(fw, method):
    plain = _maps(fw, fw.model, method=method)
    if fw.name == "torch":
        for p in fw.model.parameters():
            p.requires_grad_(False)
    else:
        fw.model.trainable = False
    np.testing.assert_allclose(_maps(fw, fw.model, method=method), plain, atol=1e-6)
    if fw.name == "torch":
        assert all(not p.requires_grad and p.grad is None for p in fw.model.parameters())
    else:
        assert not fw.model.trainable


@pytest.mark.parametrize("method", METHODS)
def test_float64_model(fw, method):
    plain = _maps(fw, fw.model, method=method)
    if fw.name == "torch":
        model = fw.model.double()
        got = _maps(fw, model, method=method)
        assert next(model.parameters()).dtype.is_floating_point and str(next(model.parameters()).dtype) == \
            "torch.float64"
    else:
        import keras
        from kits import torch_tiny

        from xcam.app.models.porting_keras import build
        from xcam.app.models.porting_torch import describe

        keras.config.set_dtype_policy("float64")
        try:
            model = build(describe(torch_tiny(0), (3, 8, 8)), (8, 8, 3))
        finally:
            keras.config.set_dtype_policy("float32")
        assert model.get_layer("conv2").kernel.dtype == "float64"
        got = _maps(fw, model, method=method)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, plain, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_call_inside_no_grad_or_an_outer_tape(fw, method):
    plain = _maps(fw, fw.model, method=method)
    if fw.name == "torch":
        import torch

        with torch.no_grad():
            got = _maps(fw, fw.model, method=method)
            assert not torch.is_grad_enabled()  # restored as it was inside the block
        with torch.inference_mode():
            inf = _maps(fw, fw.model, method=method)
        np.testing.assert_allclose(inf, plain, atol=1e-6)
    else:
        import tensorflow as tf

        with tf.GradientTape(persistent=True) as outer:
            got = _maps(fw, fw.model, method=method)
        assert outer.watched_variables() == () or all(v.trainable for v in outer.watched_variables())
    np.testing.assert_allclose(got, plain, atol=1e-6)
