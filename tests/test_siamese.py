"""A true siamese model: ONE encoder applied to two images (#14). Its layers run twice in one forward; ``call=``
picks which call is explained (0: the first image's branch, 1: the second's). Values: Grad-CAM, LayerCAM and
Grad-CAM++ of each call against autograd by hand; every layer method equal to the same method on an unshared
twin (two encoders with the same weights, whose branch layers run once and are checked elsewhere); Keras with
shared layers on ported weights equal to PyTorch; one-line errors without ``call`` or with a call out of range;
the model left without hooks or patched calls."""

import copy

import numpy as np
import pytest

import xcam
from xcam import XcamError

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import xcam_torch  # noqa: E402


class Branch(nn.Module):
    """conv(3->4) -> ReLU -> conv(4->3) ["conv2"] -> ReLU ["act2"] -> global average -> (N, 3)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.act1 = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()
        self.conv2, self.act2 = nn.Conv2d(4, 3, 3, padding=1), nn.ReLU()

    def forward(self, x):
        return self.act2(self.conv2(self.act1(self.conv1(x)))).mean(dim=(2, 3))


def set_weights(pairs):
    for klayer, tlayer in pairs:
        w, b = tlayer.weight.detach().numpy(), tlayer.bias.detach().numpy()
        klayer.set_weights([w.transpose(2, 3, 1, 0) if w.ndim == 4 else w.T, b])


def nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


class Siamese(nn.Module):
    """One encoder for both images; the head sees both embeddings and their absolute difference."""

    def __init__(self):
        super().__init__()
        self.enc, self.head = Branch(), nn.Linear(9, 2)

    def forward(self, left, right):
        fa, fb = self.enc(left), self.enc(right)
        return self.head(torch.cat([fa, fb, (fa - fb).abs()], dim=1))


class Twin(nn.Module):
    """The same network with two encoders holding the same weights: ``a`` sees the left image, ``b`` the right."""

    def __init__(self, siamese):
        super().__init__()
        self.a, self.b, self.head = copy.deepcopy(siamese.enc), copy.deepcopy(siamese.enc), siamese.head

    def forward(self, left, right):
        fa, fb = self.a(left), self.b(right)
        return self.head(torch.cat([fa, fb, (fa - fb).abs()], dim=1))


def siamese():
    torch.manual_seed(1)
    model = Siamese().eval()
    with torch.no_grad():
        model.head.weight.mul_(3)
    return model


RNG = np.random.default_rng(7)
LEFT = RNG.normal(size=(2, 3, 8, 8)).astype(np.float32)
RIGHT = RNG.normal(size=(2, 3, 8, 8)).astype(np.float32)
METHODS = ["gradcam", "layercam", "gradcampp", "xgradcam", "hirescam", "eigencam", "scorecam", "ablationcam"]


def by_hand(model, call, cls=1):
    """Each call's activations and d logit / d activations, with plain hooks and autograd."""
    outs = []
    h = model.enc.act2.register_forward_hook(lambda m, a, o: outs.append(o))
    y = model(torch.from_numpy(LEFT), torch.from_numpy(RIGHT))
    h.remove()
    (g,) = torch.autograd.grad(y[:, cls].sum(), outs[call])
    return outs[call].detach().numpy(), g.numpy()


def finish(raw):
    return xcam.normalize_minmax(xcam.resize(np.maximum(raw, 0), (8, 8)))


@pytest.mark.parametrize("call", [0, 1])
def test_each_call_gives_its_own_gradients_by_hand(call):
    model = siamese()
    a, g = by_hand(model, call)
    gradcam = finish((g.mean((2, 3), keepdims=True) * a).sum(1))
    layercam = finish((np.maximum(g, 0) * a).sum(1))
    g2, g3 = g ** 2, g ** 3
    alpha = g2 / np.where(2 * g2 + a.sum((2, 3), keepdims=True) * g3 != 0,
                          2 * g2 + a.sum((2, 3), keepdims=True) * g3, 1)
    gradcampp = finish(((alpha * np.maximum(g, 0)).sum((2, 3), keepdims=True) * a).sum(1))
    for method, expected in (("gradcam", gradcam), ("layercam", layercam), ("gradcampp", gradcampp)):
        got = xcam_torch.cam(model, (LEFT, RIGHT), "enc.act2", method, targets=1, call=call)
        np.testing.assert_allclose(got, expected, atol=1e-5)
    other, _ = by_hand(model, 1 - call)
    assert not np.allclose(a, other)                       # the two calls really differ
    assert not model.enc.act2._forward_hooks and all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("method", METHODS)
def test_every_layer_method_equals_the_unshared_twin(method):
    model = siamese()
    twin = Twin(model).eval()
    for call, branch in ((0, "a.act2"), (1, "b.act2")):
        got = xcam_torch.cam(model, (LEFT, RIGHT), "enc.act2", method, targets=[0, 1], call=call)
        expected = xcam_torch.cam(twin, (LEFT, RIGHT), branch, method, targets=[0, 1])
        assert expected.max() == 1
        np.testing.assert_allclose(got, expected, atol=2e-5)
    # a layer inside the encoder and a list of layers take the same call
    np.testing.assert_allclose(xcam_torch.cam(model, (LEFT, RIGHT), ["enc.conv1", "enc.act2"], "layercam",
                                              targets=1, call=1),
                               xcam_torch.cam(twin, (LEFT, RIGHT), ["b.conv1", "b.act2"], "layercam", targets=1),
                               atol=2e-5)


def test_without_call_or_out_of_range_is_one_line():
    model = siamese()
    with pytest.raises(XcamError) as err:
        xcam_torch.cam(model, (LEFT, RIGHT), "enc.act2")
    assert str(err.value) == ("layer 'enc.act2' runs 2 times in one forward pass (a shared module, e.g. a siamese "
                              "encoder); pick one call with call=0 ... call=1 (one map per call: one cam per call), "
                              "or a layer that runs once")
    with pytest.raises(XcamError, match=r"^call=2 but layer 'enc.act2' runs 2 times in one forward pass; "
                                        r"give call=0 \.\.\. call=1$"):
        xcam_torch.cam(model, (LEFT, RIGHT), "enc.act2", "scorecam", call=2)
    for bad in (-1, "1", 1.0, True):
        with pytest.raises(XcamError, match="is not a call index"):
            xcam_torch.cam(model, (LEFT, RIGHT), "enc.act2", call=bad)
    # a layer that runs once takes call=0 and refuses call=1
    twin = Twin(model).eval()
    np.testing.assert_array_equal(xcam_torch.cam(twin, (LEFT, RIGHT), "a.act2", call=0),
                                  xcam_torch.cam(twin, (LEFT, RIGHT), "a.act2"))
    with pytest.raises(XcamError, match="call=1 but layer 'a.act2' runs 1 time in"):
        xcam_torch.cam(twin, (LEFT, RIGHT), "a.act2", call=1)
    assert not model.enc.act2._forward_hooks


# ---- Keras: one set of layers called on both inputs, weights ported --------------------------------------------

def keras_siamese(tmodel):
    keras = pytest.importorskip("keras")
    left, right = keras.Input((8, 8, 3), name="left"), keras.Input((8, 8, 3), name="right")
    conv1 = keras.layers.Conv2D(4, 3, padding="same", name="enc_conv1")
    act1 = keras.layers.ReLU(name="enc_act1")
    conv2 = keras.layers.Conv2D(3, 3, padding="same", name="enc_conv2")
    act2 = keras.layers.ReLU(name="enc_act2")
    pool = keras.layers.GlobalAveragePooling2D(name="enc_pool")

    def enc(x):
        return pool(act2(conv2(act1(conv1(x)))))

    fa, fb = enc(left), enc(right)
    diff = keras.layers.Lambda(lambda t: keras.ops.abs(t[0] - t[1]), name="absdiff")([fa, fb])
    head = keras.layers.Dense(2, name="head")
    model = keras.Model([left, right], head(keras.layers.Concatenate()([fa, fb, diff])))
    set_weights([(conv1, tmodel.enc.conv1), (conv2, tmodel.enc.conv2), (head, tmodel.head)])
    return model


@pytest.mark.tf
@pytest.mark.parametrize("method", ["gradcam", "layercam", "gradcampp", "eigencam", "scorecam", "ablationcam"])
def test_keras_shared_layers_match_torch_per_call(method):
    pytest.importorskip("tensorflow")
    import xcam_tf

    tmodel = siamese()
    kmodel = keras_siamese(tmodel)
    x = [nhwc(LEFT), nhwc(RIGHT)]
    from xcam_tf._capture import run_index
    assert [run_index(kmodel, "enc_act2", c) for c in (0, 1)] == [1, 0]          # the graph runs right first
    for call in (0, 1):
        mine = xcam_torch.cam(tmodel, (LEFT, RIGHT), "enc.act2", method, targets=[0, 1], call=call)
        theirs = xcam_tf.cam(kmodel, x, "enc_act2", method, targets=[0, 1], call=call)
        assert mine.max() == 1
        np.testing.assert_allclose(theirs, mine, atol=2e-5)
    assert "call" not in vars(kmodel.get_layer("enc_act2"))


@pytest.mark.tf
def test_keras_without_call_or_out_of_range_is_one_line():
    pytest.importorskip("tensorflow")
    import xcam_tf

    kmodel = keras_siamese(siamese())
    x = [nhwc(LEFT), nhwc(RIGHT)]
    for method in ("gradcam", "scorecam"):
        with pytest.raises(XcamError, match=r"^layer 'enc_act2' runs 2 times in one forward pass .* call=0 \.\.\. "
                                            r"call=1 .*runs once$"):
            xcam_tf.cam(kmodel, x, "enc_act2", method)
        with pytest.raises(XcamError, match=r"^call=3 but layer 'enc_act2' runs 2 times"):
            xcam_tf.cam(kmodel, x, "enc_act2", method, call=3)
    assert "call" not in vars(kmodel.get_layer("enc_act2"))


def keras_siamese_nested(tmodel):
    """The usual Keras siamese: an encoder ``keras.Model`` called on both inputs."""
    keras = pytest.importorskip("keras")
    inp = keras.Input((8, 8, 3))
    conv1 = keras.layers.Conv2D(4, 3, padding="same", name="conv1")
    conv2 = keras.layers.Conv2D(3, 3, padding="same", name="conv2")
    y = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU(name="act2")(conv2(keras.layers.ReLU()(conv1(inp)))))
    encoder = keras.Model(inp, y, name="encoder")
    left, right = keras.Input((8, 8, 3), name="left"), keras.Input((8, 8, 3), name="right")
    fa, fb = encoder(left), encoder(right)
    diff = keras.layers.Lambda(lambda t: keras.ops.abs(t[0] - t[1]))([fa, fb])
    head = keras.layers.Dense(2)
    model = keras.Model([left, right], head(keras.layers.Concatenate()([fa, fb, diff])))
    set_weights([(conv1, tmodel.enc.conv1), (conv2, tmodel.enc.conv2), (head, tmodel.head)])
    return model


@pytest.mark.tf
@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_keras_nested_encoder_calls_in_build_order(method):
    """A layer inside a nested encoder model: ``call`` counts the encoder's calls as the model was built (Keras
    runs a functional graph depth by depth, in an order of its own), so call=0 is the left image on both
    frameworks."""
    pytest.importorskip("tensorflow")
    import xcam_tf

    tmodel = siamese()
    kmodel = keras_siamese_nested(tmodel)
    x = [nhwc(LEFT), nhwc(RIGHT)]
    for call in (0, 1):
        mine = xcam_torch.cam(tmodel, (LEFT, RIGHT), "enc.act2", method, targets=1, call=call)
        np.testing.assert_allclose(xcam_tf.cam(kmodel, x, "encoder/act2", method, targets=1, call=call), mine,
                                   atol=2e-5)
