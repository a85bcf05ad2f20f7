"""Occlusion and Feature Ablation against captum 0.9.0 on a random-weight resnet18 (32 px), signed."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
captum_attr = pytest.importorskip("captum.attr")

import xcam_torch  # noqa: E402
from xcam.methods import occlusion as occ  # noqa: E402
from xcam.methods.registry import MethodArgs, get_method, resolve_options  # noqa: E402
from xcam.targets import Class  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.slow]


def test_occlusion_and_featureablation_match_captum():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    t = np.array([1, 3])
    probe = xcam_torch.probe(model, x.numpy(), "layer4")

    def args(name):
        return MethodArgs(np.zeros((2, 1, 1, 1), np.float32), None, t, model_inputs=x.numpy(), probe=probe,
                          options=resolve_options(get_method(name), {}), target=Class(t))

    ours = occ.occlusion_attribution(args("occlusion"))
    ref = captum_attr.Occlusion(model).attribute(x, sliding_window_shapes=(3, 8, 8), strides=(3, 4, 4),
                                                 baselines=0.0, target=torch.tensor(t)).numpy()
    scale = np.abs(ref).max()
    assert np.abs(ours - ref).max() <= 1e-4 * scale
    fa = args("featureablation")
    labels = occ.segment_masks(fa).argmax(0)
    ours = occ.featureablation_attribution(fa)
    ref = captum_attr.FeatureAblation(model).attribute(x, feature_mask=torch.tensor(labels)[None, None],
                                                       baselines=0.0, target=torch.tensor(t)).numpy()
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()
    assert xcam_torch.cam(model, x, "layer4", "occlusion").shape == (2, 32, 32)
