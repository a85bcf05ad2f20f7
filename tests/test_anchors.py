"""Each method against an anchor implementation that defines it the same way, on a torchvision AlexNet and on
its Keras twin (random weights, the demo photos). Deliberate differences are written next to the tolerance.
``python tests/test_anchors.py`` prints the table of measured differences."""

import numpy as np
import pytest

import xcam

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import xcam_torch  # noqa: E402
from xcam.app.inputs.images import load_image, preprocess  # noqa: E402
from xcam.app.models.zoo import demo_images  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.slow]
LAYER = "features.11"  # post-ReLU conv5: activations >= 0, so Ablation-CAM's ablated value is 0 in every anchor


def renorm(maps):
    return xcam.normalize_minmax(np.asarray(maps, np.float32))


@pytest.fixture(scope="module")
def alex():
    torch.manual_seed(0)
    model = torchvision.models.alexnet(num_classes=2).eval()
    with torch.no_grad():  # larger logits than the default init, so every method has signal above rounding
        model.classifier[6].weight.mul_(100)
    x = torch.from_numpy(preprocess([load_image(p) for p in demo_images()[:2]], (224, 224))).permute(0, 3, 1, 2)
    return model, x


def ours(model, x, method, size=None, **kw):
    return xcam_torch.cam(model, x, LAYER, method, [0, 1], size=size, **kw)


# ------------------------------------------------------------------ pytorch-grad-cam (maps at the input size)

PGC = {  # method -> (pytorch-grad-cam class, tolerance, note)
    "gradcam": ("GradCAM", 1e-4, "same formula"),
    "gradcampp": ("GradCAMPlusPlus", 1e-3, "anchor adds eps 1e-7 in alpha's denominator; ours has none"),
    "xgradcam": ("XGradCAM", 1e-4, "anchor adds eps 1e-7 to the activation sum"),
    "hirescam": ("HiResCAM", 1e-4, "same formula"),
    "layercam": ("LayerCAM", 1e-4, "same formula"),
    "ablationcam": ("AblationCAM", 1e-3, "weights agree to 1.5e-6; the map sums them with cancellation. Same "
                                         "formula where y > 0 (anchor divides by y, so a negative logit inverts "
                                         "its map; ours divides by |y|): compared on class 1, y > 0"),
    "scorecam": ("ScoreCAM", 5e-3, "anchor: logit softmax over channels, masks upsampled with align_corners=True"),
}


def pgc_map(name, model, x, targets):
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = dict(model.named_modules())[LAYER]
    with getattr(pgc, name)(model=model, target_layers=[layer]) as cam:
        if name == "ScoreCAM":
            cam.batch_size = 64
        return renorm(cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets]))


@pytest.mark.parametrize("method", list(PGC))
def test_against_pytorch_grad_cam(alex, method):
    pytest.importorskip("pytorch_grad_cam")
    model, x = alex
    name, tol, _ = PGC[method]
    opts = {"weighting": "logit-softmax"} if method == "scorecam" else None
    targets = [1, 1] if method == "ablationcam" else [0, 1]
    a = xcam_torch.cam(model, x, LAYER, method, targets, options=opts)
    b = pgc_map(name, model, x, targets)
    assert a.max() == 1.0
    assert np.abs(a - b).max() <= tol


@pytest.mark.parametrize("method", ["eigencam", "eigengradcam"])
def test_eigen_against_pytorch_grad_cam_up_to_sign(alex, method):
    # the anchor's projection (pytorch_grad_cam.utils.svd_on_activations) leaves the SVD's sign to chance;
    # ours fixes it. Same captured arrays, so this compares the formula: equal to one of the two signs.
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    model, x = alex
    cap = xcam_torch.capture(model, x, LAYER, [0, 1])
    arr = cap.activations if method == "eigencam" else cap.activations * cap.gradients
    proj = get_2d_projection(arr)
    mine = xcam.compute_cam(cap, method)
    for n in range(len(mine)):  # the anchor's sign is arbitrary per image
        best = min(np.abs(mine[n] - renorm(np.maximum(s * proj[n:n + 1], 0))[0]).max() for s in (1, -1))
        assert best <= 1e-4


# --------------------------------------------------------------- torchcam (raw maps at the layer's size)

TORCHCAM = {
    "gradcam": ("GradCAM", 1e-5, "same formula"),
    "layercam": ("LayerCAM", 1e-5, "same formula"),
    "xgradcam": ("XGradCAM", 1e-4, "anchor adds eps 1e-7 to the activation sum"),
    "scorecam": ("ScoreCAM", 1e-3, "anchor: logit(masked) - logit(input) softmax over channels; masks normalized "
                                  "before upsampling"),
}


@pytest.mark.parametrize("method", list(TORCHCAM))
def test_against_torchcam(alex, method):
    tcm = pytest.importorskip("torchcam.methods")
    model, x = alex
    name, tol, _ = TORCHCAM[method]
    with getattr(tcm, name)(model, LAYER, input_shape=(3, 224, 224)) as extractor:
        scores = model(x)
        raw = extractor.compute_cams([0, 1], scores, normalized=False)[0].detach().numpy()
    opts = {"weighting": "logit-softmax"} if method == "scorecam" else None
    a = ours(model, x, method, size=(13, 13), options=opts)
    assert a.max() == 1.0
    assert np.abs(a - renorm(np.maximum(raw, 0))).max() <= tol


def test_layercam_fusion_against_torchcam(alex):
    # torchcam scales min-max normalized maps, tanh(2 (L - min) / (max - min)); xcam follows the paper's Eq. 9,
    # tanh(2 L / max L). Given torchcam's normalization, xcam's fusion (scale at the layer's size, upsample,
    # element-wise max) gives torchcam's map; with the paper's, they differ where a layer's map stays above 0.
    tcm = pytest.importorskip("torchcam.methods")
    model, x = alex
    layers = ["features.4", LAYER]
    with tcm.LayerCAM(model, layers, input_shape=(3, 224, 224)) as extractor:
        cams = extractor.compute_cams([0, 1], model(x))
        theirs = renorm(tcm.LayerCAM.fuse_cams(cams, (224, 224)).detach().numpy())
    raws = [xcam.raw_maps(c, "layercam") for c in xcam_torch.capture(model, x, layers, [0, 1])]
    np.testing.assert_allclose(xcam.fuse([renorm(r) for r in raws], (224, 224)), theirs, atol=1e-5)
    mine = xcam_torch.cam(model, x, layers, "layercam", [0, 1])
    np.testing.assert_allclose(mine, xcam.fuse(raws, (224, 224)), atol=1e-6)
    assert np.abs(mine - theirs).max() < 0.05  # measured 0.027: conv5's LayerCAM minimum is 1.4e-3, not 0


def test_torchcam_gradcampp_carries_the_known_alpha_bug(alex):
    # torchcam divides a boolean-indexed copy of alpha, so alpha stays g^2 and w_k = sum relu(g)^3
    # (anchors study, section 4). Its map equals that formula, and differs from the paper's (ours, which
    # matches pytorch-grad-cam above).
    tcm = pytest.importorskip("torchcam.methods")
    model, x = alex
    with tcm.GradCAMpp(model, LAYER, input_shape=(3, 224, 224)) as extractor:
        raw = extractor.compute_cams([0, 1], model(x), normalized=False)[0].detach().numpy()
    cap = xcam_torch.capture(model, x, LAYER, [0, 1])
    bugged = np.einsum("nk,nkhw->nhw", (np.maximum(cap.gradients, 0) ** 3).sum((2, 3)), cap.activations)
    np.testing.assert_allclose(renorm(np.maximum(raw, 0)), renorm(np.maximum(bugged, 0)), atol=1e-4)
    assert np.abs(xcam.compute_cam(cap, "gradcampp") - renorm(np.maximum(raw, 0))).max() > 0.05


def test_cam_against_torchcam_on_a_gap_model():
    tcm = pytest.importorskip("torchcam.methods")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3).eval()
    x = torch.randn(2, 3, 64, 64)
    with tcm.CAM(model, "layer4", fc_layer="fc", input_shape=(3, 64, 64)) as extractor:
        raw = extractor.compute_cams([2, 0], model(x), normalized=False)[0].detach().numpy()
    a = xcam_torch.cam(model, x, "layer4", "cam", [2, 0], size=(2, 2))
    np.testing.assert_allclose(a, renorm(raw), atol=1e-5)


# ------------------------------------------------------------------------------------------------ captum


def test_gradcam_against_captum(alex):
    captum = pytest.importorskip("captum.attr")
    model, x = alex
    layer = dict(model.named_modules())[LAYER]
    attr = captum.LayerGradCam(model, layer).attribute(x, target=[0, 1], relu_attributions=True)
    np.testing.assert_allclose(ours(model, x, "gradcam", size=(13, 13)), renorm(attr.detach().numpy()[:, 0]),
                               atol=1e-5)


@pytest.mark.parametrize("method, anchor", [("saliency", "Saliency"), ("guidedbackprop", "GuidedBackprop")])
def test_input_gradients_against_captum(alex, method, anchor):
    captum = pytest.importorskip("captum.attr")
    model, x = alex
    g = getattr(captum, anchor)(model).attribute(x.clone().requires_grad_(True), target=[0, 1])
    np.testing.assert_allclose(ours(model, x, method), renorm(np.abs(g.detach().numpy()).max(1)), atol=1e-5)


def test_guided_gradcam_against_captum(alex):
    captum = pytest.importorskip("captum.attr")
    model, x = alex
    layer = dict(model.named_modules())[LAYER]
    g = captum.GuidedGradCam(model, layer).attribute(x.clone().requires_grad_(True), target=[0, 1],
                                                     interpolate_mode="bilinear")
    # captum upsamples the un-normalized Grad-CAM; a positive scale per image changes nothing after min-max
    np.testing.assert_allclose(ours(model, x, "guidedgradcam"), renorm(np.abs(g.detach().numpy()).max(1)),
                               atol=1e-4)


def test_smoothgrad_against_captum_saliency_on_the_same_noise(alex):
    # captum's NoiseTunnel draws its own noise, so pixels cannot match; the same noisy inputs (xcam's seeded
    # draws, sigma = 0.15 (max - min)) through captum's Saliency must give the same average exactly. The noise is
    # cast to float32 before scaling, as xcam does: the float64 product moves the inputs by ~1e-7, enough to flip
    # ReLUs of AlexNet and the map by ~1e-3 (the stop-17 failure)
    captum = pytest.importorskip("captum.attr")
    model, x = alex
    rng = np.random.default_rng(0)
    xs = x.numpy()
    sigma = (0.15 * (xs.reshape(2, -1).max(1) - xs.reshape(2, -1).min(1))).reshape(-1, 1, 1, 1)
    total = 0
    for _ in range(5):
        noisy = torch.from_numpy(xs + sigma.astype(np.float32) * rng.standard_normal(xs.shape).astype(np.float32))
        total = total + captum.Saliency(model).attribute(noisy.requires_grad_(True), target=[0, 1],
                                                           abs=False).detach().numpy()
    expected = renorm(np.abs(total / 5).max(1))
    np.testing.assert_allclose(ours(model, x, "smoothgrad", options={"samples": 5}), expected, atol=1e-5)


# ------------------------------------------------------------------------------------------ tf-keras-vis


TKV = {
    "gradcam": ("tf_keras_vis.gradcam", "Gradcam", 1e-4, "same formula"),
    "layercam": ("tf_keras_vis.layercam", "Layercam", 1e-4, "same formula"),
    "saliency": ("tf_keras_vis.saliency", "Saliency", 1e-4, "same formula"),
}


@pytest.mark.tf
@pytest.mark.parametrize("method", list(TKV))
def test_against_tf_keras_vis(alex, method):
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf_keras_vis")
    import importlib

    from tf_keras_vis.utils.scores import CategoricalScore

    import xcam_tf
    from xcam.app.models.porting_keras import build
    from xcam.app.models.porting_torch import describe

    model, x = alex
    kmodel = build(describe(model, (3, 224, 224)), (224, 224, 3))
    xk = x.permute(0, 2, 3, 1).numpy()
    module, cls, tol, _ = TKV[method]
    tool = getattr(importlib.import_module(module), cls)(kmodel, clone=True)
    if method == "saliency":
        theirs = renorm(tool(CategoricalScore([0, 1]), xk, normalize_map=False))
        mine = xcam_tf.cam(kmodel, xk, "features_11", method, [0, 1])
    else:  # at the layer's size: the anchor upsamples with corner-aligned scipy zoom, xcam with half-pixel
        theirs = renorm(np.maximum(tool(CategoricalScore([0, 1]), xk, penultimate_layer="features_11",
                                        seek_penultimate_conv_layer=False,  # else it moves to features_10
                                        normalize_cam=False, expand_cam=False), 0))
        mine = xcam_tf.cam(kmodel, xk, "features_11", method, [0, 1], size=(13, 13))
    assert np.abs(mine - theirs).max() <= tol


if __name__ == "__main__":  # print the measured table for the closing note
    import sys
    sys.exit(pytest.main([__file__, "-q", "-p", "no:warnings"]))
