"""Cross-framework parity on the demo model (EfficientNet-Lite0, bundled weights, the three demo photos): the
ported Keras twin gives the same maps as PyTorch for every method that runs at its size (a file of its own so
that pytest -n 2 runs it beside the AlexNet parity in tests/test_parity.py)."""

import pytest

import xcam

torch = pytest.importorskip("torch")
pytest.importorskip("tensorflow")

from test_parity import FAST_OPTIONS, assert_maps_agree  # noqa: E402

import xcam_tf  # noqa: E402
import xcam_torch  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.tf]


@pytest.fixture(scope="module")
def demo_models():
    from xcam.app.inputs.images import load_image, preprocess
    from xcam.app.models.zoo import demo_images
    from xcam.app.models.zoo.keras_lite0 import cat_dog_model as keras_model
    from xcam.app.models.zoo.torch_lite0 import cat_dog_model as torch_model

    x = preprocess([load_image(p) for p in demo_images()], (224, 224))
    return torch_model(), keras_model(), torch.from_numpy(x).permute(0, 3, 1, 2), x




@pytest.mark.slow
# shapleycam takes one class per call (its own parity test: tests/test_cams_adapters.py); the noisy-copy
# methods sscam and smoothgradcampp are compared on AlexNet / the ported TinyNet (tests/test_cams_smoothing.py);
# the mask methods (thousands of forwards at their defaults) and IS-CAM (channels x samples forwards: 1,280 x 10
# per image here) on AlexNet with fewer masks / samples above
# the head methods (cam, dff) need a GAP + one linear head, which the demo model's ImageNet-to-cat/dog head is not:
# test_head_methods_agree_on_a_gap_model below
@pytest.mark.parametrize("method", [m for m in xcam.methods() if not xcam.get_method(m).needs_attention
                                    and not xcam.get_method(m).needs_head
                                    and m not in ("scorecam", "smoothgrad", "shapleycam", "sscam", "iscam",
                                                  "smoothgradcampp", "rise", "sobol", "hsic")])
def test_demo_model_maps_agree_across_frameworks(demo_models, method):
    tmodel, kmodel, x, xk = demo_models
    which = {"targets": None} if xcam.get_method(method).explains else {"classes": [0, 1]}  # as above
    opts = {k: v for k, v in (FAST_OPTIONS.get(method) or {}).items() if method != "fem"} or None
    tmaps = xcam_torch.cam(tmodel, x, "backbone.head_act", method, options=opts, **which)
    kmaps = xcam_tf.cam(kmodel, xk, "head_act", method, options=opts, **which)
    assert tmaps.max() == 1.0
    assert_maps_agree(method, tmaps, kmaps)
