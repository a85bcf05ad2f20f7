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
def resnet():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=2).eval()
    x = torch.randn(2, 3, 64, 64)
    return model, x


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
