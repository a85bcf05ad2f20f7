"""Gradient CAMs added for issue 18: golden values by hand, and agreement with pytorch-grad-cam on a torchvision
ResNet-18 with random weights (torch-vs-Keras parity: tests/test_parity.py iterates the registry)."""

import numpy as np
import pytest

from xcam import Capture, compute_cam

A = np.array([[[[1, 2], [3, 4]], [[0, 1], [1, 0]]]], np.float32)       # (1, 2, 2, 2)
G = np.array([[[[1, 1], [1, 1]], [[-2, 2], [0, -4]]]], np.float32)


def cap(a=A, g=G, targets=(0,)):
    return Capture(activations=a, gradients=g, scores=np.zeros((1, 2), np.float32), targets=np.array(targets))


def test_gradcamelementwise_golden():
    # ReLU(G0*A0) + ReLU(G1*A1) = [[1,2],[3,4]] + [[0,2],[0,0]] = [[1,4],[3,4]] -> (x-1)/3
    np.testing.assert_allclose(compute_cam(cap(), "gradcamelementwise")[0], [[0, 1], [2 / 3, 1]], atol=1e-6)


def test_gradcamelementwise_relu_inside_the_sum_differs_from_hirescam():
    # channel 1's negative evidence cancels channel 0's at the first position in HiResCAM, not here
    a = np.array([[[[1.0, 1.0]], [[1.0, 1.0]]]], np.float32)       # (1, 2, 1, 2)
    g = np.array([[[[2.0, 1.0]], [[-2.0, 0.0]]]], np.float32)
    # element-wise: [2, 1] + [0, 0] = [2, 1] -> [1, 0];  HiResCAM: [0, 1] -> [0, 1]
    np.testing.assert_allclose(compute_cam(cap(a, g), "gradcamelementwise")[0], [[1, 0]], atol=1e-6)
    np.testing.assert_allclose(compute_cam(cap(a, g), "hirescam")[0], [[0, 1]], atol=1e-6)


def test_gradcamelementwise_several_classes_and_1d():
    a = A.reshape(1, 2, 4)
    g1 = np.array([[[-1, -1, -1, -1], [1, 1, 1, 1]]], np.float32)
    g2 = np.stack([G.reshape(1, 2, 4), g1], axis=1)                     # (1, K=2, C, L)
    out = compute_cam(cap(a, g2, targets=[[0, 1]]), "gradcamelementwise")
    # class 0: [1,4,3,4] -> (x-1)/3;  class 1: ReLU(-A0) + ReLU(A1) = [0,1,1,0]
    np.testing.assert_allclose(out[0, 0], [0, 1, 2 / 3, 1], atol=1e-6)
    np.testing.assert_allclose(out[0, 1], [0, 1, 1, 0], atol=1e-6)


@pytest.mark.torch
@pytest.mark.slow
def test_gradcamelementwise_against_pytorch_grad_cam(seeded_resnet18):
    pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    import xcam
    import xcam_torch

    model, x = seeded_resnet18(3)
    targets = [0, 2]
    ours = xcam_torch.cam(model, x, "layer4", "gradcamelementwise", targets)
    with pgc.GradCAMElementWise(model=model, target_layers=[model.layer4]) as cam:
        theirs = xcam.normalize_minmax(cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets]))
    assert ours.max() == 1.0
    assert np.abs(ours - theirs).max() <= 1e-4


# ----------------------------------------------------------------------------- eigen_smooth (every layer method)

def test_eigen_smooth_golden_rank_one():
    # rank one: weighted channels A0 and 2 A0, so position p's row is a_p (1, 2); centred, its projection on
    # (1, 2)/sqrt5 is sqrt5 (a_p - 2.5) = sqrt5 [-1.5, -.5, .5, 1.5] -> ReLU -> min-max: [0, 0, 1/3, 1]
    a = np.array([[[[1, 2], [3, 4]], [[2, 4], [6, 8]]]], np.float32)
    g = np.ones_like(a)                                   # weights (1, 1): weighted = A0, 2 A0 -> rank one
    out = compute_cam(cap(a, g), "gradcam", options={"eigen_smooth": True})[0]
    # projection of the centred positions onto (1, 2)/sqrt5: proportional to [1,2,3,4] - 2.5, positive with sum
    np.testing.assert_allclose(out, [[0, 0], [0.5 / 1.5, 1]], atol=1e-6)


def test_eigen_smooth_is_generic_and_refused_for_pixel_methods():
    import xcam
    from xcam import XcamError
    from xcam.methods import resolve_options

    for name in xcam.methods():
        m = xcam.get_method(name)
        if m.kind == "pixel":
            with pytest.raises(XcamError, match="eigen_smooth"):
                resolve_options(m, {"eigen_smooth": True})
        else:
            assert resolve_options(m, {"eigen_smooth": True})["eigen_smooth"] is True
    with pytest.raises(XcamError, match="True, False"):
        resolve_options(xcam.get_method("gradcam"), {"eigen_smooth": "yes"})


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "gradcamelementwise"])
def test_eigen_smooth_matches_the_projection_of_the_weighted_activations(method):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    g = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    weighted = {"gradcam": g.mean(axis=(2, 3), keepdims=True) * a, "hirescam": g * a,
                "gradcamelementwise": np.maximum(g * a, 0)}[method]
    out = compute_cam(Capture(activations=a, gradients=g, scores=np.zeros((2, 2), np.float32),
                              targets=np.array([0, 1])), method, options={"eigen_smooth": True})
    for n in range(2):
        rows = weighted[n].reshape(4, 9).T
        rows = rows - rows.mean(axis=0)
        proj = rows @ np.linalg.svd(rows)[2][0]
        ref = weighted[n].sum(axis=0).ravel()
        proj = proj * np.sign(((proj) * (ref - ref.mean())).sum())
        proj = np.maximum(proj, 0)
        np.testing.assert_allclose(out[n].ravel(), (proj - proj.min()) / (proj.max() - proj.min()), atol=1e-5)


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("method, name", [("gradcam", "GradCAM"), ("gradcamelementwise", "GradCAMElementWise")])
def test_eigen_smooth_against_pytorch_grad_cam_up_to_sign(method, name, seeded_resnet18):
    # the anchor's SVD sign is arbitrary per image; ours is fixed: equal to one of the two signs
    pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    pgc = pytest.importorskip("pytorch_grad_cam")
    import xcam
    import xcam_torch

    model, x = seeded_resnet18(3)
    cap = xcam_torch.capture(model, x, "layer4", [0, 2])
    mine = xcam.compute_cam(cap, method, options={"eigen_smooth": True})
    with pgc.__dict__[name](model=model, target_layers=[model.layer4]) as cam:
        raw = cam.get_cam_image(x, model.layer4, None, cap.activations,
                                cap.gradients, eigen_smooth=True)
    for n in range(2):
        best = min(np.abs(mine[n] - xcam.normalize_minmax(np.maximum(s * raw[n:n + 1], 0))[0]).max()
                   for s in (1, -1))
        assert best <= 1e-4


# ----------------------------------------------------------------------------- finercam

def test_finer_score_golden():
    from xcam.targets import Finer, evaluate

    y = np.array([[3.0, 2.5, 0.0, 2.9], [0.0, 1.0, 5.0, 1.2]], np.float32)
    t = Finer().resolve(y)
    # sample 0: c = 0, |y - 3| = [0, .5, 3, .1] -> J = [3, 1, 2]
    # sample 1: c = 2, |y - 5| = [5, 4, 0, 3.8] -> J = [3, 1, 0]
    np.testing.assert_array_equal(t.main, [0, 2])
    np.testing.assert_array_equal(t.others, [[3, 1, 2], [3, 1, 0]])
    e = np.exp
    p0 = e(np.array([2.9, 2.5, 0.0]))                          # softmax numerators; the denominator cancels
    p1 = e(np.array([1.2, 1.0, 0.0]))
    want = [(p0 * [0.1, 0.5, 3.0]).sum() / p0.sum(), (p1 * [3.8, 4.0, 5.0]).sum() / p1.sum()]
    np.testing.assert_allclose(evaluate(t, y), want, rtol=1e-5)
    # one compared class: the weights cancel, y_c - alpha y_j
    t2 = Finer(alpha=2.0, compare=(1,)).resolve(y)
    np.testing.assert_allclose(evaluate(t2, y), [3 - 2 * 2.9, 5 - 2 * 1.2], rtol=1e-5)
    # a given class; ranks beyond the classes are dropped (three classes: ranks 1, 2)
    t3 = Finer(1).resolve(y[:, :3])
    np.testing.assert_array_equal(t3.main, [1, 1])
    np.testing.assert_array_equal(t3.others, [[0, 2], [0, 2]])


def test_finer_bad_input():
    from xcam import XcamError
    from xcam.methods.gradient import _finer_target
    from xcam.targets import Finer, Regression

    with pytest.raises(XcamError, match="alpha"):
        Finer(alpha="x")
    with pytest.raises(XcamError, match="compare"):
        Finer(compare=(0,))
    with pytest.raises(XcamError, match="class of a classifier"):
        _finer_target(Regression(), {"alpha": 1.0, "compare": (1,)})
    with pytest.raises(XcamError, match="only one class"):
        Finer().check(np.zeros((1, 1), np.float32))


@pytest.mark.torch
@pytest.mark.slow
def test_finercam_against_pytorch_grad_cam(seeded_resnet18):
    pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    pgc = pytest.importorskip("pytorch_grad_cam")
    import xcam
    import xcam_torch

    model, x = seeded_resnet18(10)
    for target, kwargs in ((None, {}), (3, {"target_idx": 3})):
        ours = xcam_torch.cam(model, x, "layer4", "finercam", target)
        with pgc.FinerCAM(model=model, target_layers=[model.layer4]) as cam:
            theirs = xcam.normalize_minmax(cam(input_tensor=x, **kwargs))
        assert ours.max() == 1.0
        assert np.abs(ours - theirs).max() <= 1e-4
    # and it is not Grad-CAM of the class alone
    assert np.abs(ours - xcam_torch.cam(model, x, "layer4", "gradcam", 3)).max() > 0.05
