"""PyTorch pitfalls from the lab: in-place ReLU after the layer, a softmax at the end, hooks, devices."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from kits import torch_tiny  # noqa: E402

import xcam_torch  # noqa: E402
from xcam import XcamError  # noqa: E402

pytestmark = pytest.mark.torch


def test_inplace_relu_after_layer_keeps_the_conv_output():
    model = torch_tiny(inplace=True)
    x = torch.randn(2, 3, 8, 8)
    cap = xcam_torch.capture(model, x, "conv2", 0)
    with torch.no_grad():
        expected = model.conv2(model.act1(model.conv1(x.clone())))
    assert (expected < 0).any()  # the conv output has negatives the in-place ReLU would have erased
    np.testing.assert_allclose(cap.activations, expected.numpy(), atol=1e-6)
    # gradient w.r.t. the conv output = W/(hw) masked by the ReLU that follows it
    w = model.fc.weight.detach().numpy()[0]
    np.testing.assert_allclose(cap.gradients, (expected.numpy() > 0) * w[None, :, None, None] / 64, atol=1e-7)


def test_final_softmax_module_is_skipped():
    base = torch_tiny()
    wrapped = nn.Sequential(base, nn.Softmax(dim=1)).eval()
    x = torch.randn(2, 3, 8, 8)
    np.testing.assert_allclose(xcam_torch.capture(wrapped, x, "0.conv2", 1).scores,
                               base(x).detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(xcam_torch.cam(wrapped, x, "0.conv2", targets=1),
                               xcam_torch.cam(base, x, "conv2", targets=1), atol=1e-6)


def test_softmax_inside_forward_is_reported():
    class Probs(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch_tiny()

        def forward(self, x):
            return torch.softmax(self.net(x), dim=1)

    with pytest.raises(XcamError, match="outputs are probabilities"):
        xcam_torch.cam(Probs().eval(), torch.randn(1, 3, 8, 8), "net.conv2")


def test_layer_given_as_module_and_numpy_inputs():
    model = torch_tiny()
    x = np.random.RandomState(0).randn(2, 3, 8, 8).astype(np.float32)
    np.testing.assert_allclose(xcam_torch.cam(model, x, model.conv2), xcam_torch.cam(model, x, "conv2"))
    with pytest.raises(XcamError, match="not part of the model"):
        xcam_torch.cam(model, x, nn.Conv2d(1, 1, 1))
    with pytest.raises(XcamError, match=r"inputs must be a batch \(N, C, H, W\)"):
        xcam_torch.cam(model, x[0], "conv2")


def test_layer_that_runs_twice_is_refused():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(self.conv(self.conv(x)).mean((2, 3)))

    model = Twice().eval()
    with pytest.raises(XcamError, match="runs 2 times in one forward pass"):
        xcam_torch.cam(model, torch.randn(1, 3, 4, 4), "conv")
    assert not model.conv._forward_hooks


def test_parameters_frozen_model_still_gets_gradients():
    model = torch_tiny()
    for p in model.parameters():
        p.requires_grad_(False)
    cap = xcam_torch.capture(model, torch.randn(1, 3, 8, 8), "conv2", 0)
    assert np.abs(cap.gradients).sum() > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_gpu_matches_cpu():
    model = torch_tiny()
    x = torch.randn(2, 3, 8, 8)
    cpu = xcam_torch.cam(model, x, "conv2", "layercam", [0, 1])
    gpu = xcam_torch.cam(model.cuda(), x.cuda(), "conv2", "layercam", [0, 1])
    np.testing.assert_allclose(cpu, gpu, atol=1e-4)


def test_class_count_is_read_from_a_convolution_head(tmp_path):
    """SqueezeNet's head is a 1x1 convolution, not a Linear: without --num-classes the count still comes from the
    weights (3 here), and the loaded model computes what the saved one does."""
    torchvision = pytest.importorskip("torchvision")
    from xcam.app.models.torch_models import load_model

    torch.manual_seed(0)
    saved = torchvision.models.squeezenet1_1(num_classes=3).eval()
    torch.save(saved.state_dict(), tmp_path / "sq.pth")
    loaded = load_model(tmp_path / "sq.pth", arch="squeezenet1_1")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.cpu()(x), saved(x))
    assert loaded.cpu()(x).shape == (2, 3)
    with pytest.raises(XcamError, match="do not fit squeezenet1_1 with 5 classes"):
        load_model(tmp_path / "sq.pth", arch="squeezenet1_1", num_classes=5)
