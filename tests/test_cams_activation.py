"""Activation methods of issue 18 (fem, randomcam): golden values by hand, then pytorch-grad-cam on a random
torchvision ResNet-18 at 64x64."""

import numpy as np
import pytest

import xcam
from xcam import Capture, compute_cam

A = np.array([[[[1, 2], [3, 4]], [[0, 1], [1, 0]]]], np.float32)       # (1, 2, 2, 2)


def cap(targets=(0,)):
    return Capture(activations=A, gradients=None, scores=np.zeros((1, 2), np.float32), targets=np.array(targets))


def test_fem_golden():
    # k=0.5: A0 mean 2.5 std sqrt(1.25) -> t=3.059, only 4 above: w0=1/4; A1 mean .5 std .5 -> t=.75: w1=2/4
    # .25*A0 + .5*A1 = [[.25, 1], [1.25, 1]] -> (x - .25) / 1
    np.testing.assert_allclose(compute_cam(cap(), "fem", options={"k": 0.5})[0], [[0, .75], [1, .75]], atol=1e-6)


def test_fem_default_k2_keeps_no_position_of_a_four_value_channel():
    # with k=2 no value of a 4-position channel can exceed mean + 2 std (it would need > 4/5 of the mass):
    # all weights 0, the map is all zero
    assert not compute_cam(cap(), "fem").any()


def test_randomcam_golden_and_seeded():
    w = np.random.RandomState(3).uniform(-1, 1, (1, 2))[0]
    raw = np.maximum(w[0] * A[0, 0] + w[1] * A[0, 1], 0)
    np.testing.assert_allclose(compute_cam(cap(), "randomcam", options={"seed": 3})[0],
                               xcam.normalize_minmax(raw[None])[0], atol=1e-6)
    assert not np.allclose(compute_cam(cap(), "randomcam", options={"seed": 3}),
                           compute_cam(cap(), "randomcam", options={"seed": 4}))


def test_bad_option_is_one_line():
    with pytest.raises(xcam.XcamError, match="no option"):
        compute_cam(cap(), "fem", options={"sigma": 1})


torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
LAYER = "layer3"


@pytest.fixture(scope="module")
def resnet(seeded_resnet18):
    """The session's seeded ResNet-18 (2 classes) and two 64 px inputs (conftest.seeded_resnet18)."""
    return seeded_resnet18(2, 64)


@pytest.mark.torch
@pytest.mark.parametrize("method, name", [("fem", "FEM"), ("randomcam", "RandomCAM")])
def test_against_pytorch_grad_cam(resnet, method, name):
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    import xcam_torch

    model, x = resnet
    ours = xcam_torch.cam(model, x, LAYER, method, [0, 1], options={"seed": 7} if method == "randomcam" else None)
    with getattr(pgc, name)(model=model, target_layers=[dict(model.named_modules())[LAYER]]) as cam:
        np.random.seed(7)
        theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in (0, 1)])
    theirs = xcam.normalize_minmax(np.asarray(theirs, np.float32))
    assert ours.max() == 1.0
    assert np.abs(ours - theirs).max() <= 1e-4


def test_segeigencam_golden_sign_rules():
    # |G| (.) A with G = 1 is A; two positions (columns) differ only along one direction
    a = np.array([[[[0., 1., 3.]], [[0., 0., 0.]]]], np.float32)              # (1, C=2, 1, 3)
    c = Capture(activations=a, gradients=np.ones_like(a), scores=np.zeros((1, 2), np.float32),
                targets=np.array([0]))
    # centred channel 0: [-4/3, -1/3, 5/3]; |min| < |max| keeps it -> ReLU -> [0, 0, 5/3] -> [0, 0, 1]
    np.testing.assert_allclose(compute_cam(c, "segeigencam")[0], [[0, 0, 1]], atol=1e-6)
    b = -a + 3  # [3, 2, 0]: centred [4/3, 1/3, -5/3]; |min| > |max| flips -> [-4/3, -1/3, 5/3] -> [0, 0, 1]
    c2 = Capture(activations=b, gradients=np.ones_like(b), scores=np.zeros((1, 2), np.float32),
                 targets=np.array([0]))
    np.testing.assert_allclose(compute_cam(c2, "segeigencam")[0], [[0, 0, 1]], atol=1e-6)
    # the correlation rule signs along the channel sum [3, 2, 0]: [4/3, 1/3, -5/3] -> ReLU -> [1, 1/4, 0]
    np.testing.assert_allclose(compute_cam(c2, "segeigencam", options={"sign": "correlation"})[0],
                               [[1, 0.25, 0]], atol=1e-6)


def test_kpcacam_linear_kernel_is_eigencam():
    # a linear kernel's leading component is PCA's first principal coordinate
    rng = np.random.default_rng(0)
    a = rng.random((1, 4, 3, 3)).astype(np.float32)
    c = Capture(activations=a, gradients=None, scores=np.zeros((1, 2), np.float32), targets=np.array([0]))
    np.testing.assert_allclose(compute_cam(c, "kpcacam", options={"kernel": "linear"}),
                               compute_cam(c, "eigencam"), atol=1e-5)


def test_kpcacam_sigmoid_golden_two_positions():
    # two positions x_1 = -x_2 = d/2: K = [[t_a, t_b], [t_b, t_a]], double-centring leaves (t_a - t_b)/2 *
    # [[1, -1], [-1, 1]]: the component is +-[1, -1]/sqrt(2) * sqrt(t_a - t_b), signed along the channel sum
    a = np.array([[[[2., 0.]], [[0., 0.]]]], np.float32)            # C=2, positions: (2,0) and (0,0)
    c = Capture(activations=a, gradients=None, scores=np.zeros((1, 2), np.float32), targets=np.array([0]))
    np.testing.assert_allclose(compute_cam(c, "kpcacam")[0], [[1, 0]], atol=1e-6)
    from xcam.maps import kernel_principal_map
    raw = kernel_principal_map(a, 2)[0, 0]
    ta, tb = np.tanh(0.5 * 1 + 1), np.tanh(-0.5 * 1 + 1)            # gamma = 1/C = .5, <x,x> = 1, <x,-x> = -1
    np.testing.assert_allclose(raw, np.sqrt(ta - tb) * np.array([1, -1]) / np.sqrt(2), atol=1e-6)


@pytest.mark.torch
def test_segeigencam_against_pytorch_grad_cam(resnet):
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    import xcam_torch

    model, x = resnet
    ours = xcam_torch.cam(model, x, LAYER, "segeigencam", [0, 1])
    with pgc.SegEigenCAM(model=model, target_layers=[dict(model.named_modules())[LAYER]]) as cam:
        theirs = xcam.normalize_minmax(np.asarray(
            cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in (0, 1)]), np.float32))
    assert np.abs(ours - theirs).max() <= 1e-4


@pytest.mark.torch
def test_kpcacam_against_pytorch_grad_cam_up_to_sign(resnet):
    pytest.importorskip("sklearn")
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_kernel

    import xcam_torch

    model, x = resnet
    cap = xcam_torch.capture(model, x, LAYER, [0, 1])
    proj = get_2d_projection_kernel(cap.activations)   # KPCA_CAM's defaults: sigmoid kernel, gamma None
    mine = xcam.compute_cam(cap, "kpcacam")
    for n in range(len(mine)):  # the anchor's sign is sklearn's choice per image; ours follows the channel sum
        best = min(np.abs(mine[n] - xcam.normalize_minmax(np.maximum(s * proj[n:n + 1], 0))[0]).max()
                   for s in (1, -1))
        assert best <= 1e-4
