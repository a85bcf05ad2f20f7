"""Cross-framework parity: the same weights in PyTorch and Keras give the same maps, for every method."""

import numpy as np
import pytest

import xcam

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
pytest.importorskip("tensorflow")

import xcam_tf  # noqa: E402
import xcam_torch  # noqa: E402
from xcam_tf.porting import build  # noqa: E402
from xcam_torch.porting import describe  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.tf]


@pytest.fixture(scope="module")
def alexnets():
    torch.manual_seed(0)
    tmodel = torchvision.models.alexnet(num_classes=2).eval()
    kmodel = build(describe(tmodel, (3, 224, 224)), (224, 224, 3))
    x = torch.randn(2, 3, 224, 224)
    return tmodel, kmodel, x, x.permute(0, 2, 3, 1).numpy()


def test_ported_alexnet_gives_the_same_logits(alexnets):
    tmodel, kmodel, x, xk = alexnets
    with torch.no_grad():
        np.testing.assert_allclose(np.asarray(kmodel(xk)), tmodel(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("method", [m for m in xcam.methods() if not xcam.get_method(m).needs_head])
@pytest.mark.parametrize("layer", ["features.10", "features.8"])
def test_alexnet_maps_agree_across_frameworks(alexnets, method, layer):
    tmodel, kmodel, x, xk = alexnets
    tmaps = xcam_torch.cam(tmodel, x, layer, method, classes=[0, 1])
    kmaps = xcam_tf.cam(kmodel, xk, layer.replace(".", "_"), method, classes=[0, 1])
    assert tmaps.shape == kmaps.shape == (2, 2, 224, 224)
    assert tmaps.max() == 1.0  # not a trivial all-zero comparison
    np.testing.assert_allclose(tmaps, kmaps, atol=1e-4)


@pytest.mark.parametrize("method", [m for m in xcam.methods() if xcam.get_method(m).needs_head])
def test_head_methods_agree_on_a_gap_model(method):
    from kits import make_kit

    t, k = make_kit("torch"), make_kit("tf")
    np.testing.assert_allclose(t.cam("act2", method, [0, 1]), k.cam("act2", method, [0, 1]), atol=1e-5)
