"""Golden values, by hand, for every spatial rank: signals (N, C, L) and volumes / clips (N, C, d, h, w) go
through the same formulas as images (no framework: fake probes where a method runs the model again)."""

import math

import numpy as np
import pytest

import xcam
from xcam import Capture, XcamError, compute_cam
from xcam.maps import fuse

# 1-D: two channels over L = 3
A1 = np.array([[[1, 2, 3], [0, 2, 1]]], np.float32)            # (1, C=2, L=3)
G1 = np.array([[[1, 1, 1], [-3, 0, 1]]], np.float32)           # channel means 1, -2/3
# 3-D: two channels over (d, h, w) = (2, 1, 2); positions in order p = 0..3
A3 = np.array([[[[[1, 2]], [[3, 4]]], [[[1, 0]], [[0, 1]]]]], np.float32)     # (1, 2, 2, 1, 2)
G3 = np.array([[[[[1, 1]], [[1, 1]]], [[[2, -2]], [[0, -4]]]]], np.float32)   # means 1, -1 (slices: 0, -2)


def cap(acts, grads, targets=(0,), scores=None):
    scores = np.zeros((acts.shape[0], 2), np.float32) if scores is None else scores
    return Capture(activations=acts, gradients=grads, scores=scores, targets=np.array(targets))


def test_gradcam_golden_1d():
    # w = (1, -2/3): [1,2,3] - 2/3 [0,2,1] = [1, 2/3, 7/3] -> min 2/3, span 5/3
    np.testing.assert_allclose(compute_cam(cap(A1, G1), "gradcam")[0], [0.2, 0, 1], atol=1e-6)


def test_layercam_golden_1d():
    # ReLU(G) * A summed: [1,2,3] + [0,0,1] = [1,2,4]
    np.testing.assert_allclose(compute_cam(cap(A1, G1), "layercam")[0], [0, 1 / 3, 1], atol=1e-6)


def test_gradcampp_golden_1d():
    # ch0: g=1, sum A0 = 6: alpha = 1/8, w0 = 3/8.  ch1: sum A1 = 3; g=-3: ReLU 0; g=0: denominator 0 -> 0;
    # g=1: alpha = 1/(2+3) -> w1 = 1/5.  L = 3/8 [1,2,3] + 1/5 [0,2,1] = [.375, 1.15, 1.325]
    np.testing.assert_allclose(compute_cam(cap(A1, G1), "gradcampp")[0], [0, 31 / 38, 1], atol=1e-6)


def test_gradcam_golden_3d_reduces_and_normalizes_over_the_whole_volume():
    # w = (1, -1) from all four positions (not per slice): A0 - A1 = [0, 2, 3, 3] -> /3
    out = compute_cam(cap(A3, G3), "gradcam")
    assert out.shape == (1, 2, 1, 2)
    np.testing.assert_allclose(out.reshape(-1), [0, 2 / 3, 1, 1], atol=1e-6)


def test_layercam_golden_3d():
    # [1,2,3,4] + ReLU([2,-2,0,-4]) * [1,0,0,1] = [3,2,3,4] -> (x-2)/2
    np.testing.assert_allclose(compute_cam(cap(A3, G3), "layercam").reshape(-1), [.5, 0, .5, 1], atol=1e-6)


def test_gradcampp_golden_3d():
    # ch0: alpha = 1/(2+10), w0 = 4/12.  ch1: sum A1 = 2; g=2: alpha = 4/(8+16) = 1/6, ReLU(g)=2 -> w1 = 1/3
    # L = (A0 + A1)/3 = [2,2,3,5]/3 -> (x-2)/3
    np.testing.assert_allclose(compute_cam(cap(A3, G3), "gradcampp").reshape(-1), [0, 0, 1 / 3, 1], atol=1e-6)


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "xgradcam", "hirescam", "layercam", "eigengradcam",
                                    "eigencam"])
def test_every_layer_method_agrees_across_ranks_on_the_same_numbers(method):
    # the same four positions laid out as (4,), (2, 2) and (2, 1, 2) give the same map: one formula per method
    flat = compute_cam(cap(A3.reshape(1, 2, 4), G3.reshape(1, 2, 4)), method).reshape(-1)
    for shape in [(2, 2), (2, 1, 2), (1, 4, 1)]:
        out = compute_cam(cap(A3.reshape(1, 2, *shape), G3.reshape(1, 2, *shape)), method)
        assert out.shape == (1, *shape)
        np.testing.assert_allclose(out.reshape(-1), flat, atol=1e-6)


def test_several_classes_per_sample_in_3d():
    grads = np.stack([G3, -G3], axis=1)                                        # (1, K=2, C, d, h, w)
    multi = Capture(activations=A3, gradients=grads, scores=np.zeros((1, 2), np.float32),
                    targets=np.array([[0, 1]]))
    out = compute_cam(multi, "gradcam")
    assert out.shape == (1, 2, 2, 1, 2)
    np.testing.assert_allclose(out[:, 0], compute_cam(cap(A3, G3), "gradcam"))
    np.testing.assert_array_equal(out[:, 1], 0)  # -A0 + A1 = [0, -2, -3, -3]: ReLU leaves zeros, not NaN


def test_eigencam_golden_3d_rank_one_activations():
    # A_k(p) = v_k u(p): the first component is u - mean(u) (signed like sum_k A_k), ReLU, min-max
    u = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    acts = np.stack([2 * u, 1 * u, 3 * u])[None]                               # (1, 3, 2, 2, 2)
    out = compute_cam(Capture(activations=acts, gradients=None, scores=np.zeros((1, 2), np.float32),
                              targets=np.array([0])), "eigencam")
    np.testing.assert_allclose(out.reshape(-1), [0, 0, 0, 0, 1 / 7, 3 / 7, 5 / 7, 1], atol=1e-5)


def test_linear_resize_1d_half_pixel():
    # source x = (i + .5) / 2 - .5 = [-.25, .25, .75, 1.25], clamped to [0, 1]
    np.testing.assert_allclose(xcam.resize(np.array([[0, 1]], np.float32), (4,))[0], [0, .25, .75, 1], atol=1e-6)
    np.testing.assert_allclose(xcam.resize(np.array([[0, 4, 8, 12]], np.float32), (2,))[0], [2, 10], atol=1e-6)


def naive_trilinear(vol, size):
    """Trilinear interpolation written point by point (half-pixel centres, clamped), for comparison."""
    def coords(n, out):
        src = np.clip((np.arange(out) + 0.5) * n / out - 0.5, 0, n - 1)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n - 1), src - lo

    (z0, z1, fz), (y0, y1, fy), (x0, x1, fx) = (coords(n, o) for n, o in zip(vol.shape, size))
    out = np.zeros(size)
    for i in range(size[0]):
        for j in range(size[1]):
            for k in range(size[2]):
                acc = 0.0
                for zi, wz in ((z0[i], 1 - fz[i]), (z1[i], fz[i])):
                    for yi, wy in ((y0[j], 1 - fy[j]), (y1[j], fy[j])):
                        for xi, wx in ((x0[k], 1 - fx[k]), (x1[k], fx[k])):
                            acc += wz * wy * wx * vol[zi, yi, xi]
                out[i, j, k] = acc
    return out


@pytest.mark.parametrize("size", [(5, 7, 6), (4, 2, 3), (3, 3, 3)])
def test_trilinear_resize_matches_the_pointwise_definition(size):
    vol = np.random.default_rng(0).normal(size=(3, 2, 4)).astype(np.float32)
    np.testing.assert_allclose(xcam.resize(vol[None], size)[0], naive_trilinear(vol, size), atol=1e-5)


@pytest.mark.parametrize("planes, size", [(9, (5, 7)), (3, (40, 17)), (200, (14, 14)), (2, (3, 2))])
def test_bilinear_resize_of_many_planes_matches_the_pointwise_definition(planes, size):
    # each plane alone: the trilinear definition with one depth slice is the bilinear one
    maps = np.random.default_rng(1).normal(size=(planes, 3, 4)).astype(np.float32)
    out = xcam.resize(maps, size)
    assert out.shape == (planes, *size) and out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    for i in (0, planes // 2, planes - 1):
        np.testing.assert_allclose(out[i], naive_trilinear(maps[i][None], (1, *size))[0], atol=1e-6)


def test_upsampled_3d_map_is_normalized_over_the_volume():
    out = compute_cam(cap(A3, G3), "gradcam", size=(4, 2, 4))
    assert out.shape == (1, 4, 2, 4) and out.min() == 0 and out.max() == 1
    raw = np.array([0, 2, 3, 3], np.float32).reshape(1, 2, 1, 2)
    np.testing.assert_allclose(out, xcam.normalize_minmax(xcam.resize(raw, (4, 2, 4))), atol=1e-6)


@pytest.mark.parametrize("capture, size, message", [
    (lambda: cap(A3[..., 0, :], G3[..., 0, :]), (5, 5, 5), "has 3 numbers but the maps are 2-D (h, w): give 2"),
    (lambda: cap(A3[..., 0, :], G3[..., 0, :]), (0, 5), "every size must be a positive int"),
    (lambda: cap(A1, G1), (4, 4), "has 2 numbers but the maps are 1-D (L): give 1"),
    (lambda: cap(A3, G3), (8, 8), "has 2 numbers but the maps are 3-D (d, h, w): give 3"),
    (lambda: cap(A1, G1), (-3,), "every size must be a positive int"),
    (lambda: cap(A1, G1), (2.5,), "every size must be a positive int"),
])
def test_size_must_have_one_positive_number_per_axis(capture, size, message):
    with pytest.raises(XcamError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        compute_cam(capture(), "gradcam", size=size)
    assert "\n" not in str(err.value)


def test_fuse_golden_1d():
    # shallow [0, 1]: tanh(2 [0, 1]) = [0, t], upsampled to 4: [0, t/4, 3t/4, t]; deep [1, 2, 4, 2] at size 4
    t = math.tanh(2)
    deep = np.tanh(2 * np.array([.25, .5, 1, .5]))
    expected = np.maximum([0, t / 4, 3 * t / 4, t], deep)
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    out = fuse([np.array([[0, 1]], np.float32), np.array([[1, 2, 4, 2]], np.float32)], (4,))
    np.testing.assert_allclose(out[0], expected, atol=1e-6)


def test_fuse_3d_equals_fuse_of_the_same_numbers_in_1d():
    rng = np.random.default_rng(1)
    shallow, deep = rng.random((2, 2, 1, 1)).astype(np.float32), rng.random((2, 1, 1, 1)).astype(np.float32)
    # no resize along h, w (size 1): trilinear along d is the 1-D linear resize
    np.testing.assert_allclose(fuse([shallow, deep], (4, 1, 1)).reshape(2, 4),
                               fuse([shallow.reshape(2, 2), deep.reshape(2, 1)], (4,)), atol=1e-6)


class LinearModel(xcam.contract.ScoresFromOutputs):
    """A fake probe: logits = [sum X, -sum X] of the input; after the layer, logits = [sum_k c_k sum A_k, 0]."""

    def __init__(self, inputs, c=(1.0, 1.0)):
        self.inputs, self.c = inputs, np.asarray(c, np.float32)

    def predict(self, x):
        s = x.reshape(len(x), -1).sum(axis=1)
        return np.stack([s, -s], axis=1).astype(np.float32)

    def predict_from_layer(self, sample, acts):
        per_channel = acts.reshape(*acts.shape[:2], -1).sum(axis=2)
        return np.stack([per_channel @ self.c, np.zeros(len(acts))], axis=1).astype(np.float32)



def indicator_acts(spatial):
    """Channel 0: the first position; channel 1: the first four positions (masks sum to 1 and 4)."""
    size = math.prod(spatial)
    a = np.zeros((1, 2, size), np.float32)
    a[0, 0, 0] = 1
    a[0, 1, :4] = 1
    return a.reshape(1, 2, *spatial)


@pytest.mark.parametrize("spatial", [(8,), (2, 2, 2)])
def test_scorecam_golden_1d_and_3d(spatial):
    # input of ones, masks = the channels (same size: no resize); logits [m, -m] with m = mask sum 1 and 4:
    # w = (sigmoid(2), sigmoid(8)); position 0: both, positions 1..3: sigmoid(8), the rest 0
    acts = indicator_acts(spatial)
    probe = LinearModel(np.ones((1, 1, *spatial), np.float32))
    c = Capture(activations=acts, gradients=None, scores=probe.predict(probe.inputs), targets=np.array([0]))
    out = compute_cam(c, "scorecam", model_inputs=probe.inputs, probe=probe).reshape(-1)
    s2, s8 = 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(-8))
    np.testing.assert_allclose(out, [1, *[s8 / (s2 + s8)] * 3, 0, 0, 0, 0], atol=1e-6)


@pytest.mark.parametrize("spatial", [(8,), (2, 2, 2)])
def test_ablationcam_golden_1d_and_3d(spatial):
    # base = 1 + 4 = 5; ablating channel 0 drops 1, channel 1 drops 4: w = (1/5, 4/5)
    acts = indicator_acts(spatial)
    probe = LinearModel(np.ones((1, 1, *spatial), np.float32))
    c = Capture(activations=acts, gradients=None, scores=np.zeros((1, 2), np.float32), targets=np.array([0]))
    out = compute_cam(c, "ablationcam", model_inputs=probe.inputs, probe=probe).reshape(-1)
    np.testing.assert_allclose(out, [1, .8, .8, .8, 0, 0, 0, 0], atol=1e-6)


def test_scorecam_refuses_a_layer_of_another_rank_than_the_input():
    probe = LinearModel(np.ones((1, 1, 4, 4), np.float32))
    c = Capture(activations=indicator_acts((8,)), gradients=None, scores=np.zeros((1, 2), np.float32),
                targets=np.array([0]))
    with pytest.raises(XcamError, match="layer's maps are 1-D and the input is 2-D"):
        compute_cam(c, "scorecam", model_inputs=probe.inputs, probe=probe)


class GradProbe:
    """Input gradients of a linear model: d logit_t / d x = W[t] (C_in, *S)."""

    def __init__(self, w):
        self.w = np.asarray(w, np.float32)

    def input_gradients(self, inputs, targets, guided=False, samples=None):
        rows = np.arange(len(inputs)) if samples is None else np.asarray(samples)  # row b is input samples[b]
        return np.stack([self.w[t] for t in xcam.targets.as_target(targets).class_indices(int(rows.max()) + 1)[rows]])


def test_pixel_methods_golden_1d():
    w = np.array([[[1, -4, 2], [0, 1, -3]], [[0, 0, 0], [0, 0, 0]]])          # class 0: (C_in=2, L=3)
    probe, inputs = GradProbe(w), np.zeros((1, 2, 3), np.float32)
    c = cap(A1, G1)
    for method in ("saliency", "smoothgrad"):  # linear model: noise does not change the gradient
        out = compute_cam(c, method, model_inputs=inputs, probe=probe, options={"samples": 3} if method ==
                          "smoothgrad" else None)
        np.testing.assert_allclose(out[0], [0, 1, 2 / 3], atol=1e-6)           # max_c |W| = [1, 4, 3]
    # Guided Grad-CAM: W * Grad-CAM [0.2, 0, 1] -> ch0 [.2, 0, 2], ch1 [0, 0, -3] -> max |.| [.2, 0, 3]
    out = compute_cam(c, "guidedgradcam", model_inputs=inputs, probe=probe)
    np.testing.assert_allclose(out[0], [0.2 / 3, 0, 1], atol=1e-6)


def test_pixel_methods_golden_3d_volume_input():
    w = np.zeros((2, 1, 2, 1, 2), np.float32)
    w[0, 0] = [[[1, -3]], [[0, 2]]]
    probe, inputs = GradProbe(w), np.zeros((1, 1, 2, 1, 2), np.float32)
    out = compute_cam(cap(A3, G3), "saliency", model_inputs=inputs, probe=probe)
    np.testing.assert_allclose(out.reshape(-1), [1 / 3, 1, 0, 2 / 3], atol=1e-6)
    # Guided Grad-CAM: |W| * Grad-CAM map [0, 2/3, 1, 1] = [0, 2, 0, 2] -> [0, 1, 0, 1]
    out = compute_cam(cap(A3, G3), "guidedgradcam", model_inputs=inputs, probe=probe)
    np.testing.assert_allclose(out.reshape(-1), [0, 1, 0, 1], atol=1e-6)


def test_capture_checks_shapes_of_any_rank():
    with pytest.raises(ValueError, match=r"\(N, C, L\), \(N, C, h, w\) or \(N, C, d, h, w\)"):
        Capture(activations=np.zeros((1, 2), np.float32), gradients=None, scores=np.zeros((1, 2), np.float32),
                targets=np.array([0]))
    with pytest.raises(ValueError, match="do not match"):
        Capture(activations=A3, gradients=G3[..., :1], scores=np.zeros((1, 2), np.float32), targets=np.array([0]))
    assert cap(A1, G1).rank == 1 and cap(A3, G3).rank == 3
