"""Models with several inputs (#14): an image + table model and a two-image (siamese-style) model, given as a
tuple / list (positional) or a dict (keyword / Keras named inputs). Values against autograd written by hand
(the layer on either branch, SmoothGrad's noise on the image only), torch/Keras parity on ported weights, and
one-line errors for inputs that cannot be batched."""

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


class ImageTable(nn.Module):
    def __init__(self):
        super().__init__()
        self.image, self.table, self.head = Branch(), nn.Linear(5, 4), nn.Linear(7, 2)

    def forward(self, img, tab):
        return self.head(torch.cat([self.image(img), torch.relu(self.table(tab))], dim=1))


class TwoImages(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = Branch(), Branch(), nn.Linear(6, 2)

    def forward(self, left, right):
        return self.head(torch.cat([self.a(left), self.b(right)], dim=1))


def seeded(cls):
    torch.manual_seed(0)
    model = cls().eval()
    with torch.no_grad():
        model.head.weight.mul_(3)
    return model


RNG = np.random.default_rng(0)
IMG = RNG.normal(size=(2, 3, 8, 8)).astype(np.float32)
IMG2 = RNG.normal(size=(2, 3, 8, 8)).astype(np.float32)
TAB = RNG.normal(size=(2, 5)).astype(np.float32)


def hand_gradcam(model, module, args, cls=1):
    kept = {}
    h = module.register_forward_hook(lambda m, a, o: kept.setdefault("o", o))
    out = model(*[torch.from_numpy(a) for a in args])
    h.remove()
    (g,) = torch.autograd.grad(out[:, cls].sum(), kept["o"])
    raw = torch.relu((g.mean(dim=(2, 3), keepdim=True) * kept["o"]).sum(1)).detach().numpy()
    return xcam.normalize_minmax(xcam.resize(raw, (8, 8)))


def hand_input_gradient(model, args, index, cls=1):
    xs = [torch.from_numpy(a).requires_grad_(i == index) for i, a in enumerate(args)]
    (g,) = torch.autograd.grad(model(*xs)[:, cls].sum(), xs[index])
    return g.numpy()


def test_image_and_table_as_tuple_list_or_dict_give_the_hand_gradcam():
    model = seeded(ImageTable)
    for cls in (0, 1):
        expected = hand_gradcam(model, model.image.act2, (IMG, TAB), cls)
        for inputs in [(IMG, TAB), [IMG, TAB], {"img": IMG, "tab": TAB}, (torch.from_numpy(IMG), TAB)]:
            np.testing.assert_allclose(xcam_torch.cam(model, inputs, "image.act2", "gradcam", targets=cls),
                                       expected, atol=1e-6)
    assert expected.max() == 1 or hand_gradcam(model, model.image.act2, (IMG, TAB), 0).max() == 1


def test_saliency_gives_one_map_for_the_one_image_like_input():
    model = seeded(ImageTable)
    g = hand_input_gradient(model, (IMG, TAB), 0)
    out = xcam_torch.cam(model, (IMG, TAB), "image.act2", "saliency", targets=1)
    np.testing.assert_allclose(out, xcam.normalize_minmax(np.abs(g).max(1)), atol=1e-6)


def test_smoothgrad_adds_noise_only_to_the_image():
    model = seeded(ImageTable)
    samples, level = 3, 0.2
    rng = np.random.default_rng(5)
    flat = IMG.reshape(2, -1)
    sigma = (level * (flat.max(1) - flat.min(1))).reshape(-1, 1, 1, 1).astype(np.float32)
    total = 0
    for _ in range(samples):
        noisy = IMG + sigma * rng.standard_normal(IMG.shape).astype(np.float32)
        total = total + hand_input_gradient(model, (noisy, TAB), 0)  # the table exactly as given
    expected = xcam.normalize_minmax(np.abs(total / samples).max(1))
    out = xcam_torch.cam(model, (IMG, TAB), "image.act2", "smoothgrad", targets=1,
                         options={"samples": samples, "noise": level, "seed": 5})
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_two_images_a_layer_on_either_branch_and_one_pixel_map_per_image():
    model = seeded(TwoImages)
    for branch in ("a", "b"):
        expected = hand_gradcam(model, getattr(model, branch).act2, (IMG, IMG2))
        np.testing.assert_allclose(xcam_torch.cam(model, (IMG, IMG2), f"{branch}.act2", "gradcam", targets=1),
                                   expected, atol=1e-6)
    left, right = xcam_torch.cam(model, (IMG, IMG2), "b.act2", "saliency", targets=1)
    for i, out in enumerate((left, right)):
        g = hand_input_gradient(model, (IMG, IMG2), i)
        np.testing.assert_allclose(out, xcam.normalize_minmax(np.abs(g).max(1)), atol=1e-6)
    named = xcam_torch.cam(model, {"left": IMG, "right": IMG2}, "b.act2", "saliency", targets=1)
    assert list(named) == ["left", "right"]
    np.testing.assert_allclose(named["right"], right, atol=1e-6)


@pytest.mark.parametrize("method", ["ablationcam", "scorecam", "layercam"])
def test_perturbation_methods_on_a_branch_hold_the_other_input_fixed(method):
    # the same branch model fed one image: the other branch's input is a constant the probe must keep
    model = seeded(TwoImages)
    out = xcam_torch.cam(model, (IMG, IMG2), "b.act2", method, targets=1)
    assert out.shape == (2, 8, 8) and out.max() == 1

    class Fixed(nn.Module):  # the right image as the only input, the left one a constant
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, right):
            return self.inner(torch.from_numpy(IMG[:len(right)]).expand(len(right), -1, -1, -1)
                              if len(right) != len(IMG) else torch.from_numpy(IMG), right)

    if method == "layercam":
        np.testing.assert_allclose(out, xcam_torch.cam(Fixed(), IMG2, "inner.b.act2", method, targets=1),
                                   atol=1e-6)


def test_inputs_that_cannot_be_batched_are_one_line_errors():
    model = seeded(ImageTable)
    for bad, message in [((IMG, "a table"), r"input 1 \(a str\) cannot be batched"),
                         ((IMG, 3.0), r"input 1 \(a float\) cannot be batched"),
                         ({"img": IMG, "tab": None}, r"input 'tab' \(a NoneType\) cannot be batched"),
                         ((IMG, TAB[:1]), r"different batch sizes \(input 0: 2, input 1: 1\)"),
                         ((), "inputs is empty")]:
        with pytest.raises(XcamError, match=message) as err:
            xcam_torch.cam(model, bad, "image.act2", targets=1)
        assert "\n" not in str(err.value)


# ---- Keras twins on ported weights ------------------------------------------------------------------------------

def port_branch(keras, prefix, branch, x):
    conv1 = keras.layers.Conv2D(4, 3, padding="same", name=f"{prefix}conv1")
    conv2 = keras.layers.Conv2D(3, 3, padding="same", name=f"{prefix}conv2")
    act2 = keras.layers.ReLU(name=f"{prefix}act2")
    y = keras.layers.GlobalAveragePooling2D()(act2(conv2(keras.layers.ReLU()(conv1(x)))))
    return y, [(conv1, branch.conv1), (conv2, branch.conv2)]


def set_weights(pairs):
    for klayer, tlayer in pairs:
        w, b = tlayer.weight.detach().numpy(), tlayer.bias.detach().numpy()
        klayer.set_weights([w.transpose(2, 3, 1, 0) if w.ndim == 4 else w.T, b])


def keras_image_table(tmodel):
    keras = pytest.importorskip("keras")
    img, tab = keras.Input((8, 8, 3), name="img"), keras.Input((5,), name="tab")
    fi, pairs = port_branch(keras, "image_", tmodel.image, img)
    table, head = keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)
    out = head(keras.layers.Concatenate()([fi, table(tab)]))
    model = keras.Model([img, tab], out)
    set_weights(pairs + [(table, tmodel.table), (head, tmodel.head)])
    return model


def keras_two_images(tmodel):
    keras = pytest.importorskip("keras")
    left, right = keras.Input((8, 8, 3), name="left"), keras.Input((8, 8, 3), name="right")
    fa, pa = port_branch(keras, "a_", tmodel.a, left)
    fb, pb = port_branch(keras, "b_", tmodel.b, right)
    head = keras.layers.Dense(2)
    model = keras.Model([left, right], head(keras.layers.Concatenate()([fa, fb])))
    set_weights(pa + pb + [(head, tmodel.head)])
    return model


def nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


@pytest.mark.tf
@pytest.mark.parametrize("method", ["gradcam", "layercam", "gradcampp", "scorecam", "ablationcam", "saliency",
                                    "guidedbackprop", "smoothgrad"])
def test_keras_image_and_table_parity(method):
    pytest.importorskip("tensorflow")
    import xcam_tf

    tmodel = seeded(ImageTable)
    kmodel = keras_image_table(tmodel)
    options = {"samples": 3} if method == "smoothgrad" else None
    mine = xcam_torch.cam(tmodel, (IMG, TAB), "image.act2", method, targets=[0, 1], options=options)
    theirs = xcam_tf.cam(kmodel, [nhwc(IMG), TAB], "image_act2", method, targets=[0, 1], options=options)
    named = xcam_tf.cam(kmodel, {"img": nhwc(IMG), "tab": TAB}, "image_act2", method, targets=[0, 1],
                        options=options)
    assert mine.max() == 1
    np.testing.assert_allclose(mine, theirs, atol=2e-5)
    np.testing.assert_allclose(named, theirs, atol=1e-6)


@pytest.mark.tf
@pytest.mark.parametrize("method", ["gradcam", "ablationcam", "saliency"])
def test_keras_two_images_parity(method):
    pytest.importorskip("tensorflow")
    import xcam_tf

    tmodel = seeded(TwoImages)
    kmodel = keras_two_images(tmodel)
    mine = xcam_torch.cam(tmodel, (IMG, IMG2), "a.act2", method, targets=1)
    theirs = xcam_tf.cam(kmodel, [nhwc(IMG), nhwc(IMG2)], "a_act2", method, targets=1)
    if method == "saliency":
        assert isinstance(theirs, tuple) and len(theirs) == 2
        for m, t in zip(mine, theirs):
            np.testing.assert_allclose(m, t, atol=2e-5)
    else:
        np.testing.assert_allclose(mine, theirs, atol=2e-5)


@pytest.mark.tf
def test_keras_inputs_that_cannot_be_batched_are_one_line_errors():
    pytest.importorskip("tensorflow")
    import xcam_tf

    kmodel = keras_image_table(seeded(ImageTable))
    with pytest.raises(XcamError, match=r"input 1 \(a str\) cannot be batched"):
        xcam_tf.cam(kmodel, [nhwc(IMG), "table"], "image_act2")
    with pytest.raises(XcamError, match="different batch sizes"):
        xcam_tf.cam(kmodel, {"img": nhwc(IMG), "tab": TAB[:1]}, "image_act2")


def test_integer_inputs_keep_their_dtype_and_are_held_fixed():
    class ImageWords(nn.Module):
        def __init__(self):
            super().__init__()
            self.image, self.words, self.head = Branch(), nn.Embedding(10, 4), nn.Linear(7, 2)

        def forward(self, img, ids):
            return self.head(torch.cat([self.image(img), self.words(ids).mean(1)], dim=1))

    model = seeded(ImageWords)
    ids = np.array([[1, 2, 3], [4, 5, 6]], np.int64)
    for cls in (0, 1):
        expected = hand_gradcam(model, model.image.act2, (IMG, ids), cls)
        np.testing.assert_allclose(xcam_torch.cam(model, {"img": IMG, "ids": ids}, "image.act2", targets=cls),
                                   expected, atol=1e-6)
    sal = xcam_torch.cam(model, (IMG, ids), "image.act2", "saliency", targets=1)    # only the image is image-like
    np.testing.assert_allclose(sal, xcam.normalize_minmax(np.abs(hand_input_gradient(model, (IMG, ids), 0)).max(1)),
                               atol=1e-6)
