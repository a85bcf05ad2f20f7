"""Smoothing methods and modifiers of issue 18: smoothgradcampp (Smooth Grad-CAM++), sscam (SS-CAM) and the
aug_smooth modifier of every layer method. Golden values by hand on NumPy probes, agreement with torch-cam 0.5.0
(the same noise draws fed to it) and pytorch-grad-cam 1.5.7 on random torchvision models, torch-vs-Keras parity
on the ported TinyNet (tests/kits.py)."""

import numpy as np
import pytest

import xcam
from xcam import Capture, XcamError, compute_cam
from xcam.pipeline import augment, augmentations, deaugment

# ----------------------------------------------------------------------------- smoothgradcampp, by hand

A = np.array([[[[1, 2, 0]], [[0, 1, 3]]]], np.float32)                       # (1, C=2, 1, 3), clean input
G = [np.array([[[[1, 1, 1]], [[2, -2, 1]]]], np.float32),                    # layer gradient at copy 0
     np.array([[[[1, 3, -1]], [[0, -2, 1]]]], np.float32)]                   # ... at copy 1
A_LAST = np.array([[[[2, 0, 1]], [[1, 1, 1]]]], np.float32)                  # activations at copy 1


class CopyProbe:
    """A probe whose layer gradients at the m-th noisy copy are G[m] (whatever the noise) and whose activations
    there are A (copy 0) and A_LAST (copy 1); counts the rows and calls."""

    inputs = np.zeros((1, 1, 1, 3), np.float32)

    def __init__(self):
        self.rows, self.calls = 0, 0

    def layer_gradients(self, inputs, target, samples=None):
        self.calls += 1
        copies = range(self.rows, self.rows + len(inputs))
        self.rows += len(inputs)
        return (np.concatenate([(A, A_LAST)[m] for m in copies]), np.concatenate([G[m] for m in copies]))


def sgcpp(**options):
    probe = CopyProbe()
    cap = Capture(activations=A, gradients=None, scores=np.zeros((1, 2), np.float32), targets=np.array([0]))
    out = compute_cam(cap, "smoothgradcampp", model_inputs=probe.inputs, probe=probe,
                      options={"num_samples": 2, **options})
    return out[0, 0], probe


def test_smoothgradcampp_golden_paper():
    # D1 = [1,2,0 | 1,-2,1], D2 = [1,5,1 | 2,4,1], D3 = [1,14,0 | 4,-8,1]; sum A = 3 | 4
    # ch0: denominators 2 D2 + 3 D3 = [5, 52, 2], alpha = [1/5, 5/52, 1/2], ReLU(D1) = [1, 2, 0]
    # ch1: 2 D2 + 4 D3 = [20, -24, 6], alpha = [1/10, -1/6, 1/6], ReLU(D1) = [1, 0, 1]
    w0, w1 = 1 / 5 + 10 / 52, 1 / 10 + 1 / 6
    raw = w0 * A[0, 0, 0] + w1 * A[0, 1, 0]
    out, probe = sgcpp()
    np.testing.assert_allclose(out, (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)
    assert probe.calls == 1 and probe.rows == 2          # both copies in one batched call


def test_smoothgradcampp_golden_torchcam_variant():
    # sum_ab D3 A: ch0 1 + 28 = 29, ch1 -8 + 3 = -5; alpha = D2 / (2 D2 + that): ch0 [1/31, 5/39, 1/31],
    # ch1 [-2, 4/3, -1/3]; ReLU of the LAST copy's gradient: ch0 [1, 3, 0], ch1 [0, 0, 1]; map on A_LAST
    w0, w1 = 1 / 31 + 15 / 39, -1 / 3
    raw = np.maximum(w0 * A_LAST[0, 0, 0] + w1 * A_LAST[0, 1, 0], 0)
    out, _ = sgcpp(variant="torchcam")
    np.testing.assert_allclose(out, (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)


def test_smoothgradcampp_batches_and_bad_options():
    probe = CopyProbe()
    cap = Capture(activations=A, gradients=None, scores=np.zeros((1, 2), np.float32), targets=np.array([0]))
    one_row = compute_cam(cap, "smoothgradcampp", model_inputs=probe.inputs, probe=probe,
                          options={"num_samples": 2}, batch_size=1)
    assert probe.calls == 2
    np.testing.assert_allclose(one_row[0, 0], sgcpp()[0], atol=1e-7)
    for bad, match in (({"num_samples": 0}, "num_samples=0"), ({"std": -1.0}, "std=-1.0"),
                       ({"variant": "x"}, "paper, torchcam")):
        with pytest.raises(XcamError, match=match):
            sgcpp(**bad)


# ----------------------------------------------------------------------------- sscam, by hand

class SumProbe(xcam.contract.ScoresFromOutputs):
    """Logits [s, 0] with s = the sum of the (masked, noisy) input; counts the forwards."""

    def __init__(self):
        self.rows = 0

    def predict(self, inputs):
        self.rows += len(inputs)
        s = inputs.reshape(len(inputs), -1).astype(np.float64).sum(1)
        return np.stack([s, np.zeros_like(s)], 1)


# masks (min-max at the input size = the layer's): sums 1, 3, 0 (constant channel: all-zero mask)
ACTS = np.array([[[[0, 1], [0, 0]], [[1, 1], [1, 0]], [[5, 5], [5, 5]]]], np.float32)
SUMS = np.array([1.0, 3.0, 0.0])
X = np.ones((1, 1, 2, 2), np.float32)


def sscam_map(**options):
    probe = SumProbe()
    cap = Capture(activations=ACTS, gradients=None, scores=np.zeros((1, 2), np.float32), targets=np.array([0]))
    return compute_cam(cap, "sscam", model_inputs=X, probe=probe, options=options)[0], probe


def expected(weights):
    raw = np.maximum(np.tensordot(weights, ACTS[0], 1), 0)
    return (raw - raw.min()) / (raw.max() - raw.min())


def test_sscam_golden_mask_noise_logit_softmax():
    # X = 1: the score of X (M_k + d) is S_k + sum(d); d drawn input by input, copy by copy, channel by channel
    n, std = 3, 0.5
    d = std * np.random.default_rng(7).standard_normal((1, n, 3, 2, 2), dtype=np.float32)
    mean = SUMS + d[0].sum(axis=(2, 3)).mean(axis=0)
    out, probe = sscam_map(num_samples=n, std=std, seed=7, weighting="logit-softmax")
    e = np.exp(mean - mean.max())
    np.testing.assert_allclose(out, expected(e / e.sum()), atol=1e-5)
    assert probe.rows == n * 3                            # every noisy copy is a distinct input


def test_sscam_golden_input_noise_probability_and_std_zero():
    n, std = 2, 0.25
    d = std * np.random.default_rng(0).standard_normal((1, n, 3, 1, 2, 2), dtype=np.float32)
    s = SUMS[None] + d[0].sum(axis=(2, 3, 4))                                 # (n, C)
    w = (1 / (1 + np.exp(-s))).mean(axis=0)                # softmax([s, 0])[0] = sigmoid(s), averaged
    out, _ = sscam_map(num_samples=n, std=std, perturb="input")
    np.testing.assert_allclose(out, expected(w), atol=1e-5)
    # without noise SS-CAM is Score-CAM
    cap = Capture(activations=ACTS, gradients=None, scores=np.zeros((1, 2), np.float32), targets=np.array([0]))
    score = compute_cam(cap, "scorecam", model_inputs=X, probe=SumProbe())[0]
    np.testing.assert_allclose(sscam_map(num_samples=2, std=0.0)[0], score, atol=1e-6)


def test_sscam_bad_options():
    for bad, match in (({"num_samples": 0}, "num_samples=0"), ({"std": -2}, "std=-2"),
                       ({"perturb": "x"}, "mask, input"), ({"batch_size": 0}, "batch_size=0")):
        with pytest.raises(XcamError, match=match):
            sscam_map(**bad)


# ----------------------------------------------------------------------------- aug_smooth, by hand

def test_augmentations_are_ttach_order_and_augment_by_hand():
    assert augmentations() == [(False, 0.9, 1.0), (False, 1.0, 1.0), (False, 1.1, 1.0),
                               (True, 0.9, 1.0), (True, 1.0, 1.0), (True, 1.1, 1.0)]
    assert len(augmentations((1.0, 1.1))) == 12
    x = np.array([[[[1, 2, 3]]]], np.float32)                                 # (1, 1, 1, 3)
    np.testing.assert_allclose(augment(x, True, 0.5, 1.0), [[[[1.5, 1, 0.5]]]])
    np.testing.assert_allclose(augment(x, False, 1.0, 1.0), x)
    # half-pixel bilinear 2 -> 3 along the width: source x = (i + .5) 2/3 - .5 = -1/6, 1/2, 7/6 (clamped)
    np.testing.assert_allclose(augment(np.array([[[[0, 3]]]], np.float32), False, 1.0, 1.5), [[[[0, 1.5, 3]]]])
    np.testing.assert_allclose(deaugment(np.array([[[1, 2, 3]]]), True), [[[3, 2, 1]]])


def test_aug_smooth_refusals():
    cap = Capture(activations=A, gradients=A, scores=np.zeros((1, 2), np.float32), targets=np.array([0]))
    with pytest.raises(XcamError, match="through xcam_torch.cam"):
        compute_cam(cap, "gradcam", options={"aug_smooth": True})
    with pytest.raises(XcamError, match="True, False"):
        compute_cam(cap, "gradcam", options={"aug_smooth": "yes"})
    with pytest.raises(XcamError, match="modifier of layer methods"):
        xcam.methods.resolve_options(xcam.get_method("saliency"), {"aug_smooth": True})
    assert all(xcam.methods.resolve_options(xcam.get_method(m), {"aug_smooth": True})["aug_smooth"]
               for m in xcam.methods() if xcam.get_method(m).kind != "pixel")


def test_aug_smooth_is_the_mean_of_the_flipped_and_scaled_maps(fw):
    # the definition, against independent calls on the augmented inputs (both frameworks)
    width = 2 if fw.name == "tf" else 3                                        # NHWC / NCHW width axis
    for method in ("gradcam", "scorecam") if fw.name == "torch" else ("gradcam",):
        maps = []
        for flip, factor, _ in augmentations():
            x = (np.flip(fw.inputs, width) if flip else fw.inputs) * np.float32(factor)
            one = fw.module.cam(fw.model, np.ascontiguousarray(x), fw.conv2, method, [1, 0])
            maps.append(one[..., ::-1] if flip else one)
        want = xcam.normalize_minmax(np.mean(maps, axis=0))
        got = fw.cam(fw.conv2, method, [1, 0], options={"aug_smooth": True})
        np.testing.assert_allclose(got, want, atol=1e-6)
        assert np.abs(got - fw.cam(fw.conv2, method, [1, 0])).max() > 0.01
    with pytest.raises(XcamError, match="aug_scales"):
        fw.cam(fw.conv2, "gradcam", [1, 0], options={"aug_smooth": True, "aug_scales": (0,)})
    if fw.name == "tf":  # the Keras kit declares its input size 8 x 8: a 12 x 12 copy is refused in one line
        with pytest.raises(XcamError, match="takes inputs"):
            fw.cam(fw.conv2, "gradcam", [1, 0], options={"aug_smooth": True, "aug_scales": (1.0, 1.5)})
        return
    # targets=None: the top-1 class of the original inputs, in every copy
    top = fw.predict(fw.x_nchw).argmax(1).tolist()
    np.testing.assert_array_equal(fw.cam(fw.conv2, "gradcam", options={"aug_smooth": True}),
                                  fw.cam(fw.conv2, "gradcam", top, options={"aug_smooth": True}))
    # geometric scales: the input resized by 1.5 (8 -> 12), its map resampled back to 8 x 8
    scaled = fw.cam(fw.conv2, "gradcam", [1, 0], options={"aug_smooth": True, "aug_scales": (1.0, 1.5)})
    assert scaled.shape == (2, 8, 8) and scaled.max() == 1.0
    assert np.abs(scaled - fw.cam(fw.conv2, "gradcam", [1, 0], options={"aug_smooth": True})).max() > 1e-3


# ----------------------------------------------------------------------------- torch vs Keras, ported weights

@pytest.mark.torch
@pytest.mark.tf
@pytest.mark.parametrize("method, options", [
    ("smoothgradcampp", {}), ("smoothgradcampp", {"variant": "torchcam", "std": 1.0}),
    ("sscam", {"num_samples": 4}), ("sscam", {"perturb": "input", "num_samples": 4, "weighting": "logit-softmax"}),
    ("gradcampp", {"aug_smooth": True, "eigen_smooth": True})])
def test_parity_on_the_ported_tiny_net(method, options):
    from kits import make_kit

    t, k = make_kit("torch"), make_kit("tf")
    for which in ({"targets": [1, 0]}, {"classes": [0, 1]})[1 if options.get("aug_smooth") else 0:]:
        tm = t.cam(t.conv2, method, options=options, **which)
        km = k.cam(k.conv2, method, options=options, **which)
        assert tm.max() == 1.0
        np.testing.assert_allclose(tm, km, atol=1e-4)


# ----------------------------------------------------------------------------- the anchors

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


class Feed:
    """Stands in for torch-cam's noise distribution: returns the given draws in order."""

    def __init__(self, draws):
        self.draws = list(draws)

    def sample(self, size):
        draw = self.draws.pop(0)
        assert tuple(draw.shape) == tuple(size)
        return torch.from_numpy(draw)


SSCAM_N, SSCAM_STD = 2, 2.0
SSCAM_OPTIONS = {"num_samples": SSCAM_N, "weighting": "logit-softmax", "normalize": "layer"}  # torchcam's settings


@pytest.fixture(scope="module")
def anchors(seeded_resnet18):
    """Every anchor comparison, computed once: {name: (ours, theirs)}."""
    tcm = pytest.importorskip("torchcam.methods")
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    import xcam_torch

    out = {}
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32)
    # Smooth Grad-CAM++: torch-cam draws (N, C, H, W) per copy; ours are (n, N, C, H, W) from default_rng(0)
    n, std = 2, 0.3
    noise = std * np.random.default_rng(0).standard_normal((n, 2, 3, 32, 32), dtype=np.float32)
    with tcm.SmoothGradCAMpp(resnet, "layer3", num_samples=n, std=std, input_shape=(3, 32, 32)) as ext:
        ext._distrib = Feed(noise)
        resnet(x)
        raw = ext.compute_cams([0, 2], normalized=False)[0].detach().numpy()
    out["smoothgradcampp"] = (xcam_torch.cam(resnet, x, "layer3", "smoothgradcampp", [0, 2], size=(2, 2),
                                             options={"num_samples": n, "variant": "torchcam"}),
                              xcam.normalize_minmax(np.maximum(raw, 0)))
    # SS-CAM on the seeded ResNet-18 (its logits depend on the input, so the channel weights differ): torch-cam
    # draws (N, C, H, W) per copy, ours are (N, n, C, H, W) from default_rng(seed)
    model, xs = seeded_resnet18(2, 32)
    for seed in (0, 1):
        noise = SSCAM_STD * np.random.default_rng(seed).standard_normal((2, SSCAM_N, 128, 32, 32), dtype=np.float32)
        with tcm.SSCAM(model, "layer2", num_samples=SSCAM_N, std=SSCAM_STD, input_shape=(3, 32, 32)) as ext:
            ext._distrib = Feed([noise[:, i] for i in range(SSCAM_N)])
            raw = ext.compute_cams([0, 1], model(xs), normalized=False)[0].detach().numpy()
        out[f"sscam{seed or ''}"] = (xcam_torch.cam(model, xs, "layer2", "sscam", [0, 1], size=raw.shape[1:],
                                                    options=dict(SSCAM_OPTIONS, seed=seed)),
                                     xcam.normalize_minmax(np.maximum(raw, 0)))
    # aug_smooth: pytorch-grad-cam's mean of six normalized maps (not renormalized): min-max it as ours
    with pgc.GradCAM(model=resnet, target_layers=[resnet.layer3]) as cam:
        theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in (0, 2)], aug_smooth=True)
    out["aug_smooth"] = (xcam_torch.cam(resnet, x, "layer3", "gradcam", [0, 2], options={"aug_smooth": True}),
                         xcam.normalize_minmax(theirs))
    out["plain"] = xcam_torch.cam(resnet, x, "layer3", "gradcam", [0, 2])
    return out


@pytest.mark.torch
@pytest.mark.parametrize("name", ["smoothgradcampp", "sscam", "aug_smooth"])
def test_agrees_with_the_anchor(anchors, name):
    ours, theirs = anchors[name]
    assert ours.max() == 1.0 and ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 1e-4


@pytest.mark.torch
def test_sscam_comparison_depends_on_the_noise(anchors):
    """Another seed (fed to both) moves the map far past the tolerance: the agreement is not the channel mean's."""
    assert np.abs(anchors["sscam1"][0] - anchors["sscam1"][1]).max() <= 1e-4
    assert np.abs(anchors["sscam1"][0] - anchors["sscam"][0]).max() > 0.02


@pytest.mark.torch
def test_aug_smooth_changes_the_map(anchors):
    assert np.abs(anchors["aug_smooth"][0] - anchors["plain"]).max() > 0.05


@pytest.mark.torch
def test_aug_smooth_leaves_the_model_as_it_was():
    from kits import make_kit
    from test_leaks import torch_state

    kit = make_kit("torch")
    before = torch_state(kit.model)
    for method in ("gradcam", "scorecam", "smoothgradcampp"):
        kit.cam(kit.conv2, method, [1, 0], options={"aug_smooth": True})
    assert torch_state(kit.model) == before and before["hooks"] == 0 and before["grads"] == 0
