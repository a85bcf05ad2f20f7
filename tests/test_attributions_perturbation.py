"""Occlusion and Feature Ablation: closed forms on a linear NumPy model (the core functions, signed)."""

import numpy as np
import pytest

import xcam
from xcam.errors import XcamError
from xcam.methods import occlusion as occ
from xcam.methods.registry import MethodArgs, get_method, resolve_options
from xcam.targets import Class

RNG = np.random.default_rng(3)
W = RNG.standard_normal((2, 2, 6, 6)).astype(np.float32)   # 2 classes, C_in=2, 6x6


class Linear(xcam.contract.ScoresFromOutputs):
    """logits_k = <W_k, x>; counts the rows and the calls."""

    def __init__(self, inputs):
        self.inputs, self.rows, self.calls = inputs, 0, 0

    def predict(self, inputs):
        self.rows += len(inputs)
        self.calls += 1
        return np.einsum("bchw,kchw->bk", inputs, W).astype(np.float32)


def args(name, inputs, classes, **options):
    probe = Linear(inputs)
    opts = resolve_options(get_method(name), options)
    return MethodArgs(np.zeros((len(inputs), 1, 1, 1), np.float32), None, np.asarray(classes), model_inputs=inputs,
                      probe=probe, options=opts, target=Class(np.asarray(classes)), rank=2), probe


def test_occlusion_linear_closed_form():
    x = RNG.standard_normal((2, 2, 6, 6)).astype(np.float32)
    a, probe = args("occlusion", x, [0, 1], window=3, stride=2, baseline=0.5, batch_size=3)
    out = occ.occlusion_attribution(a)
    assert out.shape == (2, 2, 6, 6)
    starts = [0, 2]   # floor((6 - 3) / 2) + 1 = 2 windows per axis
    for n, k in enumerate([0, 1]):
        total, count = np.zeros((6, 6)), np.zeros((6, 6))
        for r in starts:
            for c in starts:
                d = ((x[n] - 0.5) * W[k])[:, r:r + 3, c:c + 3].sum()   # f(x) - f(occluded), linear
                total[r:r + 3, c:c + 3] += d
                count[r:r + 3, c:c + 3] += 1
        want = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
        np.testing.assert_allclose(out[n, 0], want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out[n, 1], want, rtol=1e-4, atol=1e-5)
    assert probe.rows == 2 * (1 + 4) and probe.calls == 1 + 3   # both inputs, then 8 copies in calls of 3


def test_featureablation_mask_and_grid_closed_form():
    x = RNG.standard_normal((1, 2, 6, 6)).astype(np.float32)
    labels = np.zeros((6, 6), int)
    labels[:, 3:] = 7
    labels[4:, :] = 2
    a, _ = args("featureablation", x, [1], mask=labels, baseline=-1.0)
    out = occ.featureablation_attribution(a)
    for lab in (0, 2, 7):
        sel = labels == lab
        d = ((x[0] + 1.0) * W[1])[:, sel].sum()
        np.testing.assert_allclose(out[0][:, sel], d, rtol=1e-4, atol=1e-5)
    a, probe = args("featureablation", x, [1], cells=2)
    out = occ.featureablation_attribution(a)
    d = (x[0] * W[1])[:, :3, :3].sum()
    np.testing.assert_allclose(out[0][:, :3, :3], d, rtol=1e-4, atol=1e-5)
    assert probe.rows == 1 + 4


def test_occlusion_registered_map_and_errors():
    x = RNG.standard_normal((1, 2, 6, 6)).astype(np.float32)
    a, _ = args("occlusion", x, [0], window=2, stride=2)
    m = get_method("occlusion")  # the registered method returns the signed attribution; cam() reduces it by absmax
    np.testing.assert_allclose(m.fn(a), occ.occlusion_attribution(a))
    assert m.reduce == "absmax"
    # a window larger than the input is clipped to it: one window, the whole input, f(x) - f(0) everywhere
    np.testing.assert_allclose(occ.occlusion_attribution(args("occlusion", x, [0], window=7)[0]),
                               occ.occlusion_attribution(args("occlusion", x, [0], window=6)[0]))
    with pytest.raises(XcamError, match="spatial shape"):
        occ.featureablation_attribution(args("featureablation", x, [0], mask=np.zeros((3, 3), int))[0])


def superpixel_weights(x, k, labels, baseline):
    """A linear model's exact per-superpixel effect: sum of W_k (x - b) over the superpixel, every channel."""
    want = np.zeros(x.shape, np.float64)
    for lab in np.unique(labels):
        sel = labels == lab
        want[:, sel] = ((x - baseline) * W[k])[:, sel].sum()
    return want


@pytest.mark.parametrize("name", ["lime", "kernelshap"])
def test_surrogates_recover_linear_superpixel_weights(name):
    fn = {"lime": occ.lime_attribution, "kernelshap": occ.kernelshap_attribution}[name]
    x = RNG.standard_normal((2, 2, 6, 6)).astype(np.float32)
    grid = np.repeat(np.repeat(np.arange(4).reshape(2, 2), 3, 0), 3, 1)
    a, probe = args(name, x, [0, 1], cells=2, baseline=0.5, batch_size=10)
    out = fn(a)
    assert out.shape == (2, 2, 6, 6)
    for n, k in enumerate([0, 1]):
        np.testing.assert_allclose(out[n], superpixel_weights(x[n], k, grid, 0.5), rtol=1e-4, atol=1e-4)
    assert probe.rows == 2 * 25 and probe.calls == 5          # captum's 25 samples each, 10 rows a call
    labels = np.zeros((6, 6), int)
    labels[:, 4:] = 5
    labels[3:, :2] = 9
    a, _ = args(name, x[:1], [1], mask=labels, n_samples=12, seed=4)
    np.testing.assert_allclose(fn(a)[0], superpixel_weights(x[0], 1, labels, 0.0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(get_method(name).fn(a), fn(a))   # the registered method: the signed attribution
    assert get_method(name).reduce == "absmax"


def test_lime_kernel_and_shapley_sampling():
    x = RNG.standard_normal((1, 2, 6, 6)).astype(np.float32)
    a, _ = args("lime", x, [0], kernel_width=0.5)
    half = x.copy()
    half[:, :, :3] = 0
    cos = (x * half).sum() / np.linalg.norm(x) / np.linalg.norm(half)
    got = occ._lime_weights(a, x, half, 0, None)
    np.testing.assert_allclose(got, np.exp(-(1 - cos) ** 2 / (2 * 0.5 ** 2)), rtol=1e-5)
    a, _ = args("lime", x, [0], distance="euclidean")
    np.testing.assert_allclose(occ._lime_weights(a, x, half, 0, None),
                               np.exp(-np.linalg.norm((x - half).astype(np.float64)) ** 2 / 2), rtol=1e-5)
    z = occ.shapley_samples(np.random.default_rng(0), 40000, 5)
    assert z[0].tolist() == [1] * 5 and z[1].tolist() == [0] * 5
    k = z[2:].sum(1)
    p = np.array([4 / (j * (5 - j)) for j in range(1, 5)])
    np.testing.assert_allclose(np.bincount(k.astype(int), minlength=5)[1:] / len(k), p / p.sum(), atol=0.01)
    assert np.allclose(z[2:].mean(0), 0.5, atol=0.01)        # each k-subset uniform: every superpixel alike
    with pytest.raises(XcamError, match="distance"):
        occ.lime_attribution(args("lime", x, [0], distance="l1")[0])
