"""Golden values, by hand, for the CAM family beyond Grad-CAM (no framework: fake probes where needed)."""

import math

import numpy as np
import pytest

import xcam
import xcam.contract
import xcam.targets
from xcam import Capture, XcamError, compute_cam
from xcam.maps import fuse

A = np.array([[[[1, 2], [3, 4]], [[0, 1], [1, 0]]]], np.float32)
G = np.array([[[[1, 1], [1, 1]], [[-2, 2], [0, -4]]]], np.float32)


def cap(acts=A, grads=G, targets=(0,), scores=None):
    scores = np.zeros((acts.shape[0], 2), np.float32) if scores is None else scores
    return Capture(activations=acts, gradients=grads, scores=scores, targets=np.array(targets))


def test_gradcampp_golden():
    # ch0: g=1, sum A0 = 10: alpha = 1/(2+10) everywhere, w0 = 4/12 = 1/3
    # ch1: g^2=[[4,4],[0,16]], denom = 2g^2 + 2g^3 = [[-8,24],[0,-96]] -> alpha=[[-.5,1/6],[0,-1/6]];
    #      relu(g) = [[0,2],[0,0]] -> w1 = 2/6 = 1/3.  Map = (A0 + A1)/3 = [[1,3],[4,4]]/3 -> (x-1)/3
    np.testing.assert_allclose(compute_cam(cap(), "gradcampp")[0], [[0, 2 / 3], [1, 1]], atol=1e-6)


def test_gradcampp_zero_denominator_gives_zero_alpha_not_nan():
    out = compute_cam(cap(grads=np.zeros_like(G)), "gradcampp")
    assert np.isfinite(out).all() and (out == 0).all()


def test_xgradcam_golden():
    # ch0: sum_ij (A0/10) * 1 = 1;  ch1: (A1/2) . G1 = 0.5*2 + 0.5*0 = 1;  map = A0 + A1 -> (x-1)/3
    np.testing.assert_allclose(compute_cam(cap(), "xgradcam")[0], [[0, 2 / 3], [1, 1]], atol=1e-6)
    zero = np.zeros_like(A)
    assert (compute_cam(cap(acts=zero), "xgradcam") == 0).all()  # sum A = 0: weight 0, no NaN


def test_hirescam_golden_differs_from_layercam():
    acts = np.array([[[[1, 1], [1, 1]], [[1, 2], [3, 4]]]], np.float32)
    grads = np.array([[[[-1, 0], [0, 0]], [[1, 1], [1, 1]]]], np.float32)
    # HiResCAM: -[[1,0],[0,0]] + A1 = [[0,2],[3,4]] -> x/4 ; LayerCAM ignores the negative gradient: A1 -> (x-1)/3
    np.testing.assert_allclose(compute_cam(cap(acts, grads), "hirescam")[0], [[0, .5], [.75, 1]], atol=1e-6)
    np.testing.assert_allclose(compute_cam(cap(acts, grads), "layercam")[0], [[0, 1 / 3], [2 / 3, 1]], atol=1e-6)


TWIN = np.array([[[[3, 1], [1, 1]], [[3, 1], [1, 1]]]], np.float32)  # two equal channels


def test_eigencam_golden():
    # rows (3,3),(1,1),(1,1),(1,1), centred (1.5,1.5),(-.5,-.5)x3, first direction (1,1)/sqrt2:
    # projections [2.12, -.71, -.71, -.71] -> ReLU -> [[1, 0], [0, 0]]
    free = Capture(activations=TWIN, gradients=None, scores=np.zeros((1, 2), np.float32), targets=np.array([0]))
    np.testing.assert_allclose(compute_cam(free, "eigencam")[0], [[1, 0], [0, 0]], atol=1e-6)


def test_eigencam_sign_follows_the_activations():
    # negated activations: the component is signed to correlate with sum_k A_k, so the strong (most
    # negative) corner now reads lowest and the other three positions are highest
    free = Capture(activations=-TWIN, gradients=None, scores=np.zeros((1, 2), np.float32), targets=np.array([0]))
    np.testing.assert_allclose(compute_cam(free, "eigencam")[0], [[0, 1], [1, 1]], atol=1e-6)


def test_eigengradcam_uses_gradient_times_activation():
    np.testing.assert_allclose(compute_cam(cap(TWIN, np.ones_like(TWIN)), "eigengradcam")[0], [[1, 0], [0, 0]],
                               atol=1e-6)
    # gradient 2 on channel 0 only: rows (6,3),(2,1)x3 still vary along one direction -> same map
    g = np.ones_like(TWIN)
    g[:, 0] = 2
    np.testing.assert_allclose(compute_cam(cap(TWIN, g), "eigengradcam")[0], [[1, 0], [0, 0]], atol=1e-6)


class FakeProbe(xcam.contract.ScoresFromOutputs):
    """A 'model' whose logits are [s, 0] with s = the sum of the (masked) input; counts the forwards."""

    def __init__(self, head=None):
        self.rows, self.head = 0, head

    def predict(self, inputs):
        self.rows += len(inputs)
        s = inputs.reshape(len(inputs), -1).sum(1)
        return np.stack([s, np.zeros_like(s)], 1).astype(np.float32)

    def predict_from_layer(self, sample, acts):
        self.rows += len(acts)
        y = (acts.mean(axis=(2, 3)) * self.head).sum(1)   # logit 0 = sum_k v_k mean(A_k); logit 1 = 0
        return np.stack([y, np.zeros_like(y)], 1).astype(np.float32)


SC_ACTS = np.array([[[[0, 1], [0, 0]], [[1, 1], [1, 0]], [[5, 5], [5, 5]], [[2, 2], [2, 0]]]], np.float32)


def test_scorecam_golden_probability_weighting():
    probe = FakeProbe()
    x = np.ones((1, 1, 2, 2), np.float32)
    out = compute_cam(cap(SC_ACTS, None), "scorecam", model_inputs=x, probe=probe)
    # masks: ch0 [[0,1],[0,0]] (sum 1), ch1 = ch3 [[1,1],[1,0]] (sum 3), ch2 constant -> zeros (sum 0)
    p = [1 / (1 + math.exp(-s)) for s in (1, 3, 0, 3)]       # softmax([s, 0])[0] = sigmoid(s)
    raw = sum(w * a for w, a in zip(p, SC_ACTS[0]))
    expected = (raw - raw.min()) / (raw.max() - raw.min())
    np.testing.assert_allclose(out[0], expected, atol=1e-6)
    assert probe.rows == 3  # the duplicate mask (ch3) and the constant channel cost no extra forward


def test_scorecam_logit_softmax_variant():
    x = np.ones((1, 1, 2, 2), np.float32)
    out = compute_cam(cap(SC_ACTS, None), "scorecam", model_inputs=x, probe=FakeProbe(),
                      options={"weighting": "logit-softmax"})
    e = np.exp([1.0, 3.0, 0.0, 3.0])
    raw = sum(w * a for w, a in zip(e / e.sum(), SC_ACTS[0]))
    np.testing.assert_allclose(out[0], (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)


def test_method_options_are_checked():
    x = np.ones((1, 1, 2, 2), np.float32)
    with pytest.raises(XcamError, match="option weighting='bogus' is not valid; choose one of: probability"):
        compute_cam(cap(SC_ACTS, None), "scorecam", model_inputs=x, probe=FakeProbe(), options={"weighting": "bogus"})
    with pytest.raises(XcamError, match="method 'gradcam' has no option 'gamma'"):
        compute_cam(cap(), "gradcam", options={"gamma": 2})
    with pytest.raises(XcamError, match="runs the model again"):
        compute_cam(cap(SC_ACTS, None), "scorecam")


def test_ablationcam_golden():
    acts = np.array([[[[1, 1], [1, 1]], [[0, 0], [0, 0]], [[4, 0], [0, 0]]]], np.float32)  # means 1, 0, 1
    v = np.array([1.0, 5.0, -3.0], np.float32)
    probe = FakeProbe(head=v)
    out = compute_cam(cap(acts, None), "ablationcam", model_inputs=np.zeros((1, 1, 2, 2), np.float32), probe=probe)
    # y = 1*1 + 5*0 - 3*1 = -2;  w_k = (y - y_k)/|y| = v_k mean(A_k)/2 = [0.5, 0, -1.5]
    raw = np.maximum(0.5 * acts[0, 0] - 1.5 * acts[0, 2], 0)    # [[0, .5],[.5, .5]] -> max .5
    np.testing.assert_allclose(out[0], raw / raw.max(), atol=1e-6)
    assert probe.rows == 1 + 2  # the baseline, and the two live channels (the all-zero one needs none)


class GradProbe:
    """input_gradients of a linear model y_c = sum(W_c * x): the gradient is W_c whatever the input."""

    def __init__(self, w):
        self.w, self.calls = w, 0

    def input_gradients(self, inputs, targets, guided=False, samples=None):
        self.calls += 1
        rows = np.arange(len(inputs)) if samples is None else np.asarray(samples)
        classes = xcam.targets.as_target(targets).class_indices(int(rows.max()) + 1)[rows]  # a Class target
        return np.stack([self.w[t] for t in classes]).astype(np.float32)


W_IN = np.array([[[[1, -2], [0, 4]], [[-3, 1], [1, 0]]], [[[0, 1], [1, 0]], [[0, 0], [2, 0]]]], np.float32)


def test_saliency_and_smoothgrad_golden():
    x = np.zeros((1, 2, 2, 2), np.float32)
    free = cap(A, G)
    # max over input channels of |W_0| = [[3, 2], [1, 4]] -> (x - 1)/3
    sal = compute_cam(free, "saliency", model_inputs=x, probe=GradProbe(W_IN))
    np.testing.assert_allclose(sal[0], [[2 / 3, 1 / 3], [0, 1]], atol=1e-6)
    probe = GradProbe(W_IN)
    smooth = compute_cam(free, "smoothgrad", model_inputs=x, probe=probe, options={"samples": 4})
    np.testing.assert_allclose(smooth[0], sal[0], atol=1e-6)   # constant gradient: noise changes nothing
    assert probe.calls == 1   # the 4 noisy copies go to the probe in one batch
    probe = GradProbe(W_IN)
    compute_cam(free, "smoothgrad", model_inputs=x, probe=probe, options={"samples": 4}, batch_size=3)
    assert probe.calls == 2   # 3 rows, then 1


def test_guided_gradcam_is_guided_backprop_times_gradcam():
    x = np.zeros((1, 2, 2, 2), np.float32)
    # Grad-CAM map at 2x2 is [[0,0],[1/3,1]]; |W_0| max over channels [[3,2],[1,4]] times it: [[0,0],[1/3,4]]
    out = compute_cam(cap(), "guidedgradcam", model_inputs=x, probe=GradProbe(W_IN))
    np.testing.assert_allclose(out[0], np.array([[0, 0], [1 / 3, 4]]) / 4, atol=1e-6)


def test_fuse_golden():
    shallow = np.array([[[0, 1], [2, 4]]], np.float32)    # tanh(2 * L / 4), at its own 2x2
    deep = np.array([[[1]]], np.float32)                  # tanh(2 * 1 / 1) everywhere once upsampled
    out = fuse([shallow, deep], (2, 2))
    fused = np.maximum(np.tanh(2 * shallow / 4), np.tanh(2.0))[0]
    np.testing.assert_allclose(out[0], 0.0, atol=1e-6)     # max(tanh(.), tanh(2)) is tanh(2): a constant map
    out = fuse([shallow, 0.5 * deep], (2, 2))              # the deep map is its own max too: tanh(2) again
    np.testing.assert_allclose(out[0], 0.0, atol=1e-6)
    low = np.array([[[0, 0], [0, 1]]], np.float32)         # tanh(2 L): [[0,0],[0,tanh 2]]
    out = fuse([shallow, low], (2, 2))
    fused = np.maximum(np.tanh(2 * shallow / 4), np.tanh(2 * low))[0]
    np.testing.assert_allclose(out[0], (fused - fused.min()) / (fused.max() - fused.min()), atol=1e-6)
    assert (fuse([np.zeros((1, 2, 2), np.float32)], (4, 4)) == 0).all()


@pytest.mark.parametrize("name", xcam.methods())
def test_each_method_is_in_one_registry_with_kind_and_needs(name):
    m = xcam.get_method(name)
    assert m.kind in ("weights", "map", "pixel")
    assert m.needs_probe == (m.needs_forwards or m.kind == "pixel")   # legrad's arrays come with the capture
