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
def test_gradcamelementwise_against_pytorch_grad_cam():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    import xcam
    import xcam_torch

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    x = torch.randn(2, 3, 64, 64)
    targets = [0, 2]
    ours = xcam_torch.cam(model, x, "layer4", "gradcamelementwise", targets)
    with pgc.GradCAMElementWise(model=model, target_layers=[model.layer4]) as cam:
        theirs = xcam.normalize_minmax(cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets]))
    assert ours.max() == 1.0
    assert np.abs(ours - theirs).max() <= 1e-4
