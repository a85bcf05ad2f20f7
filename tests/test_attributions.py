"""Signed input attributions (``xcam_torch.attribute`` / ``xcam_tf.attribute``) and the pixel contract: the
method's fn returns the signed attribution (N, C_in, *S); cam() reduces it with the method's ``reduce``."""

import numpy as np
import pytest
from kits import make_kit

import xcam
from xcam.errors import XcamError
from xcam.methods import reduce_channels

pytestmark = [pytest.mark.torch]
torch = pytest.importorskip("torch")


def _grad(kit, x_nchw, cls):
    """d logit_cls / d x straight from torch autograd, (N, C, H, W)."""
    x = torch.from_numpy(x_nchw).requires_grad_(True)
    out = kit.model(x)
    (g,) = torch.autograd.grad(out[torch.arange(len(x)), torch.as_tensor(cls)].sum(), x)
    return g.numpy()


def test_reduce_channels_golden():
    a = np.array([[[[1, -3]], [[-2, 2]]]], np.float32)   # (1, C=2, 1, 2)
    np.testing.assert_allclose(reduce_channels(a, "absmax", 2), [[[2, 3]]])
    np.testing.assert_allclose(reduce_channels(a, "sum", 2), [[[-1, -1]]])
    np.testing.assert_allclose(reduce_channels(a, "abssum", 2), [[[3, 5]]])
    with pytest.raises(XcamError, match="choose one of: absmax, sum, abssum"):
        reduce_channels(a, "max", 2)


def test_attribute_saliency_is_the_signed_input_gradient_and_cam_its_absmax():
    import xcam_torch

    kit = make_kit("torch")
    att = xcam_torch.attribute(kit.model, kit.x_nchw, "saliency", targets=[0, 1])
    expected = _grad(kit, kit.x_nchw, [0, 1])
    assert att.dtype == np.float32 and att.shape == kit.x_nchw.shape and (att < 0).any()
    np.testing.assert_allclose(att, expected, rtol=1e-5, atol=1e-7)
    m = np.abs(expected).max(axis=1)
    m = (m - m.min(axis=(1, 2), keepdims=True)) / np.ptp(m, axis=(1, 2), keepdims=True)
    free = xcam_torch.cam(kit.model, kit.x_nchw, None, "saliency", targets=[0, 1])   # layer-free
    np.testing.assert_allclose(free, m, atol=1e-5)
    np.testing.assert_allclose(kit.cam("conv2", "saliency", targets=[0, 1]), free, atol=1e-6)


def test_attribute_several_classes_and_batches():
    import xcam_torch

    kit = make_kit("torch")
    att = xcam_torch.attribute(kit.model, kit.x_nchw, "saliency", classes=[1, 0])
    assert att.shape == (2, 2, 3, 8, 8)
    np.testing.assert_allclose(att[:, 0], _grad(kit, kit.x_nchw, [1, 1]), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(att[:, 1], _grad(kit, kit.x_nchw, [0, 0]), rtol=1e-5, atol=1e-7)
    # SmoothGrad batched: batch_size changes the number of probe calls, not the values
    one = xcam_torch.attribute(kit.model, kit.x_nchw, "smoothgrad", targets=0, batch_size=7)
    many = xcam_torch.attribute(kit.model, kit.x_nchw, "smoothgrad", targets=0, batch_size=64)
    np.testing.assert_allclose(one, many, rtol=1e-5, atol=1e-7)
    rng = np.random.default_rng(0)   # the documented draws: 25 copies, sigma = 0.15 (max - min) per image
    noise = rng.standard_normal((25, *kit.x_nchw.shape)).astype(np.float32)
    sigma = 0.15 * np.ptp(kit.x_nchw.reshape(2, -1), axis=1).reshape(1, 2, 1, 1, 1).astype(np.float32)
    noisy = (kit.x_nchw[None] + sigma * noise).reshape(50, 3, 8, 8)
    expected = _grad(kit, noisy, [0] * 50).reshape(25, 2, 3, 8, 8).mean(axis=0)
    np.testing.assert_allclose(one, expected, rtol=1e-4, atol=1e-6)


def test_attribute_refuses_cam_methods_and_bad_batch_size():
    import xcam_torch

    kit = make_kit("torch")
    with pytest.raises(XcamError, match=r"'gradcam' is a CAM \(layer\) method.*cam\(model, inputs, layer"):
        xcam_torch.attribute(kit.model, kit.x_nchw, "gradcam")
    with pytest.raises(XcamError, match="batch_size=0 is not valid"):
        xcam_torch.attribute(kit.model, kit.x_nchw, "saliency", batch_size=0)


@pytest.mark.tf
def test_attribute_keras_layout_and_parity():
    pytest.importorskip("tensorflow")
    tkit, kkit = make_kit("torch"), make_kit("tf")
    fast = {"rise": {"n_masks": 64}, "sobol": {"grid_size": 4, "nb_design": 8}, "hsic": {"nb_design": 64}}
    for method in xcam.methods("pixel"):
        t = tkit.module.attribute(tkit.model, tkit.inputs, method, targets=[0, 1], options=fast.get(method))
        k = kkit.module.attribute(kkit.model, kkit.inputs, method, targets=[0, 1], options=fast.get(method))
        assert k.shape == kkit.inputs.shape and k.dtype == np.float32
        scale = np.abs(t).max()
        np.testing.assert_allclose(k.transpose(0, 3, 1, 2), t, atol=1e-4 * scale, err_msg=method)
