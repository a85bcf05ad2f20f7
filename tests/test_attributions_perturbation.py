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
    assert probe.rows == 2 * (1 + 4) and probe.calls == 2 * (1 + 2)   # batches of 3 windows


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
    with pytest.raises(XcamError, match="larger than the input"):
        occ.occlusion_attribution(args("occlusion", x, [0], window=7)[0])
    with pytest.raises(XcamError, match="spatial shape"):
        occ.featureablation_attribution(args("featureablation", x, [0], mask=np.zeros((3, 3), int))[0])
