"""Filter visualization: kernel grids (golden pixels), kernel layouts on both frameworks, gradient ascent
(closed form on a linear layer, parity for one step, and the activation it maximizes goes up)."""

import numpy as np
import pytest

from xcam import XcamError
from xcam.filters import ascend, deprocess, kernel_grid


def test_rgb_kernel_grid_golden():
    w = np.zeros((2, 3, 1, 1), np.float32)
    w[0, :, 0, 0] = [0, 1, 2]      # jointly scaled: R=0, G=128, B=255
    w[1, :, 0, 0] = [5, 5, 5]      # constant -> black
    grid = kernel_grid(w, scale=2, pad=1)
    assert grid.shape == (1 * 3 + 1, 2 * 3 + 1, 3)
    np.testing.assert_array_equal(grid[1, 1], [0, 128, 255])
    np.testing.assert_array_equal(grid[1:3, 4:6], 0)
    np.testing.assert_array_equal(grid[0], 255)  # padding


def test_deep_kernel_grid_is_filters_by_input_channels():
    w = np.arange(2 * 4 * 2 * 2, dtype=np.float32).reshape(2, 4, 2, 2)
    grid = kernel_grid(w, max_inputs=3, scale=1, pad=1)
    assert grid.shape == (2 * 3 + 1, 3 * 3 + 1, 3)   # 2 filters x first 3 input channels
    np.testing.assert_array_equal(grid[1:3, 1:3, 0], [[0, 85], [170, 255]])  # each tile scaled on its own
    with pytest.raises(XcamError, match=r"kernels must be \(out, in, kh, kw\)"):
        kernel_grid(np.zeros((3, 3)))


def test_ascent_closed_form_for_a_linear_objective():
    # mean activation = <v, x>: the gradient is v everywhere, so x_T = x_0 + T * step * v / std(v)
    v = np.random.default_rng(1).standard_normal((1, 3, 4, 4)).astype(np.float32)
    x = ascend(lambda x: np.broadcast_to(v, x.shape), (1, 3, 4, 4), steps=3, step_size=0.5, seed=7)
    x0 = np.random.default_rng(7).uniform(-0.1, 0.1, size=(1, 3, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(x, x0 + 3 * 0.5 * v / (v.std() + 1e-8), rtol=1e-5, atol=1e-6)
    img = deprocess(x[0])
    assert img.dtype == np.uint8 and img.shape == (4, 4, 3)
    with pytest.raises(XcamError, match="steps must be"):
        ascend(lambda x: x, (1, 3, 2, 2), steps=0)


@pytest.mark.torch
@pytest.mark.tf
def test_kernels_and_one_ascent_step_agree_across_frameworks():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    pytest.importorskip("tensorflow")
    import xcam_tf
    import xcam_torch
    from xcam.app.models.porting_keras import build
    from xcam.app.models.porting_torch import describe

    torch.manual_seed(0)
    model = torchvision.models.alexnet(num_classes=2).eval()
    kmodel = build(describe(model, (3, 224, 224)), (224, 224, 3))
    np.testing.assert_array_equal(xcam_torch.kernels(model, "features.3"), xcam_tf.kernels(kmodel, "features_3"))
    a = xcam_torch.visualize_filters(model, "features.8", [0, 5], size=(224, 224), steps=1)
    b = xcam_tf.visualize_filters(kmodel, "features_8", [0, 5], steps=1)
    # one step: equal (more steps cross ReLU kinks where float rounding can pick different sides)
    np.testing.assert_allclose(a, b, atol=1e-4)
    with pytest.raises(XcamError, match="not a 2-D convolution"):
        xcam_torch.kernels(model, "features.1")
    with pytest.raises(XcamError, match=r"channel 999 is out of range: layer 'features.8' has 256 channels"):
        xcam_torch.visualize_filters(model, "features.8", [999], steps=1)


@pytest.mark.parametrize("name", ["torch", "tf"])
def test_ascent_raises_the_filters_activation(name):
    pytest.importorskip({"torch": "torch", "tf": "tensorflow"}[name])
    from kits import make_kit

    kit = make_kit(name)
    module = kit.module
    start = np.random.default_rng(0).uniform(-0.1, 0.1, size=(1, 3, 8, 8)).astype(np.float32)

    def mean_act(x):
        cap = module.capture(kit.model, x if name == "torch" else x.transpose(0, 2, 3, 1), "conv2", gradients=False)
        return cap.activations[0, 1].mean()

    out = module.visualize_filters(kit.model, "conv2", [1], size=(8, 8), steps=10, step_size=0.2)
    assert out.shape == (1, 3, 8, 8)
    assert mean_act(out) > mean_act(start) + 0.1
