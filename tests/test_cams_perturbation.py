"""Perturbation methods of issue 18 (iscam, sscam): golden values by hand on a NumPy probe, then torchcam on a
random torchvision ResNet-18 at 32x32."""

import math

import numpy as np
import pytest

import xcam
from xcam import Capture, compute_cam


class SumProbe(xcam.contract.ScoresFromOutputs):
    """A 'model' whose logits are [s, 0] with s = the sum of the (masked) input; counts the forwards."""

    def __init__(self):
        self.rows = 0

    def predict(self, inputs):
        self.rows += len(inputs)
        s = inputs.reshape(len(inputs), -1).sum(1)
        return np.stack([s, np.zeros_like(s)], 1).astype(np.float32)


# masks (minmax at the input size = the layer's): ch0 sum 1, ch1 = ch3 sum 3, ch2 constant -> all-zero mask
ACTS = np.array([[[[0, 1], [0, 0]], [[1, 1], [1, 0]], [[5, 5], [5, 5]], [[2, 2], [2, 0]]]], np.float32)
SUMS = (1.0, 3.0, 0.0, 3.0)
X = np.ones((1, 1, 2, 2), np.float32)


def cap():
    return Capture(activations=ACTS, gradients=None, scores=np.zeros((1, 2), np.float32), targets=np.array([0]))


def expected(weights):
    raw = np.maximum(sum(w * a for w, a in zip(weights, ACTS[0])), 0)
    return (raw - raw.min()) / (raw.max() - raw.min())


def sigmoid(z):
    return 1 / (1 + math.exp(-z))


def test_iscam_golden_probability():
    # n = 2: c = [1/2, 1/2 + 2/2] = [.5, 1.5]; w_k = mean_i sigmoid(c_i S_k) (softmax([s, 0])[0] = sigmoid(s))
    probe = SumProbe()
    out = compute_cam(cap(), "iscam", model_inputs=X, probe=probe, options={"num_samples": 2})
    w = [(sigmoid(.5 * s) + sigmoid(1.5 * s)) / 2 for s in SUMS]
    np.testing.assert_allclose(out[0], expected(w), atol=1e-6)
    assert probe.rows == 2 * 2 + 1  # two distinct live masks x 2 coefficients, the all-zero mask once


def test_iscam_golden_logit_softmax_default_samples():
    # n = 10: c_i = i (i + 1) / 20, mean c = 5.5 * 11 / 10 ... mean_i c_i = sum_i i(i+1)/20 / 10 = 440/200 = 2.2
    out = compute_cam(cap(), "iscam", model_inputs=X, probe=SumProbe(), options={"weighting": "logit-softmax"})
    e = np.exp(2.2 * np.array(SUMS))
    np.testing.assert_allclose(out[0], expected(e / e.sum()), atol=1e-6)


def test_iscam_bad_samples_is_one_line():
    with pytest.raises(xcam.XcamError, match="num_samples=0 is not valid"):
        compute_cam(cap(), "iscam", model_inputs=X, probe=SumProbe(), options={"num_samples": 0})


torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
LAYER = "layer2"


@pytest.fixture(scope="module")
def resnet(seeded_resnet18):
    """The session's seeded ResNet-18 (2 classes) and two 32 px inputs (conftest.seeded_resnet18)."""
    return seeded_resnet18(2, 32)


def torchcam_raw(model, x, name, **kw):
    tcm = pytest.importorskip("torchcam.methods")
    with getattr(tcm, name)(model, LAYER, input_shape=(3, 32, 32), **kw) as extractor:
        scores = model(x)
        return extractor.compute_cams([0, 1], scores, normalized=False)[0].detach().numpy()


@pytest.mark.torch
def test_iscam_against_torchcam(resnet):
    import xcam_torch

    model, x = resnet
    theirs = xcam.normalize_minmax(np.maximum(torchcam_raw(model, x, "ISCAM"), 0))
    ours = xcam_torch.cam(model, x, LAYER, "iscam", [0, 1], size=(4, 4),
                          options={"weighting": "logit-softmax", "normalize": "layer"})
    assert ours.max() == 1.0
    assert np.abs(ours - theirs).max() <= 1e-4
