"""Golden values, computed by hand, for every formula in the core (no framework needed)."""

import numpy as np
import pytest

import xcam
from xcam import Capture, XcamError, compute_cam

A = np.array([[[[1, 2], [3, 4]], [[0, 1], [1, 0]]]], np.float32)       # (1, 2, 2, 2)
G = np.array([[[[1, 1], [1, 1]], [[-2, 2], [0, -4]]]], np.float32)     # channel means: 1, -1
W = np.array([[0.5, -1.0], [2.0, 1.0]], np.float32)                     # head (K=2, C=2)


def cap(targets=(0,)):
    return Capture(activations=A, gradients=G, scores=np.zeros((1, 2), np.float32),
                   targets=np.array(targets), head_weights=W)


def test_gradcam_golden():
    # 1*A0 - 1*A1 = [[1,1],[2,4]] -> ReLU -> (x-1)/3
    np.testing.assert_allclose(compute_cam(cap(), "gradcam")[0], [[0, 0], [1 / 3, 1]], atol=1e-6)


def test_layercam_golden():
    # ReLU(G0)*A0 + ReLU(G1)*A1 = [[1,2],[3,4]] + [[0,2],[0,0]] = [[1,4],[3,4]] -> (x-1)/3
    np.testing.assert_allclose(compute_cam(cap(), "layercam")[0], [[0, 1], [2 / 3, 1]], atol=1e-6)


def test_layercam_gates_elementwise_not_channel_mean():
    # the seeds' mistake: LayerCAM written as channel-mean weights is Grad-CAM, which differs here
    assert not np.allclose(compute_cam(cap(), "layercam"), compute_cam(cap(), "gradcam"))


@pytest.mark.parametrize("target, expected", [(0, [[0.25, 0], [0.25, 1]]), (1, [[0, 0.5], [5 / 6, 1]])])
def test_cam_golden(target, expected):
    # class 0: 0.5*A0 - A1 = [[.5,0],[.5,2]] (no ReLU) -> x/2;  class 1: 2*A0 + A1 = [[2,5],[7,8]] -> (x-2)/6
    np.testing.assert_allclose(compute_cam(cap((target,)), "cam")[0], expected, atol=1e-6)


def test_several_classes_per_sample_match_single_class_maps():
    g2 = np.stack([G, -G], axis=1)  # (1, K=2, C, h, w)
    multi = Capture(activations=A, gradients=g2, scores=np.zeros((1, 2), np.float32), targets=np.array([[0, 1]]))
    neg = Capture(activations=A, gradients=-G, scores=np.zeros((1, 2), np.float32), targets=np.array([1]))
    out = compute_cam(multi, "gradcam")
    assert out.shape == (1, 2, 2, 2)
    np.testing.assert_allclose(out[:, 0], compute_cam(cap(), "gradcam"))
    np.testing.assert_allclose(out[:, 1], compute_cam(neg, "gradcam"))  # -A0 + A1 -> ReLU


def test_upsampling_is_half_pixel_bilinear():
    out = xcam.resize_bilinear(np.array([[[0, 1], [2, 3]]], np.float32), (4, 4))
    np.testing.assert_allclose(out[0], [[0, .25, .75, 1], [.5, .75, 1.25, 1.5],
                                        [1.5, 1.75, 2.25, 2.5], [2, 2.25, 2.75, 3]], atol=1e-6)


def test_size_resamples_then_normalizes():
    out = compute_cam(cap(), "gradcam", size=(4, 4))[0]
    # raw [[1,1],[2,4]] upsampled: corners keep 1 and 4, so min-max gives exactly 0 and 1
    assert out.shape == (4, 4) and out.min() == 0 and out.max() == 1
    np.testing.assert_allclose(out[0], [0, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(out[3], [1 / 3, 0.5, 5 / 6, 1], atol=1e-6)  # row of 2,2.5,3.5,4


def test_constant_and_zero_maps_give_zeros_not_nan():
    zero = Capture(activations=A, gradients=np.zeros_like(G), scores=np.zeros((1, 2), np.float32),
                   targets=np.array([0]))
    out = compute_cam(zero, "gradcam", size=(3, 3))
    assert np.isfinite(out).all() and (out == 0).all()
    np.testing.assert_array_equal(xcam.normalize_minmax(np.full((2, 3, 3), 5.0)), 0.0)


def test_normalization_is_per_sample():
    maps = np.stack([np.array([[0, 1], [2, 3]], np.float32), np.array([[0, 10], [20, 300]], np.float32)])
    out = xcam.normalize_minmax(maps)
    np.testing.assert_allclose(out[0], [[0, 1 / 3], [2 / 3, 1]], atol=1e-6)
    np.testing.assert_allclose(out[1], [[0, 1 / 30], [2 / 30, 1]], atol=1e-6)


def test_gradient_methods_refuse_a_capture_without_gradients():
    free = Capture(activations=A, gradients=None, scores=np.zeros((1, 2), np.float32), targets=np.array([0]))
    with pytest.raises(XcamError, match="needs gradients"):
        compute_cam(free, "gradcam")


def test_registry_lists_methods_and_suggests_names():
    assert {"gradcam", "layercam", "cam"} <= set(xcam.methods())
    with pytest.raises(XcamError, match=r"unknown method 'gradcm' \(did you mean gradcam"):
        xcam.get_method("gradcm")
    with pytest.raises(ValueError, match="already registered"):
        xcam.register("gradcam", title="x", paper="y")(lambda x: x)


@pytest.mark.parametrize("name", xcam.methods())
def test_every_method_documents_its_formula_and_paper(name):
    m = xcam.get_method(name)
    assert m.paper and m.title and m.fn.__doc__ and "=" in m.fn.__doc__
