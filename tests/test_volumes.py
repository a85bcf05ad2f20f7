"""Real 3-D and 1-D architectures with random weights (nothing downloaded): torchvision r3d_18 and r2plus1d_18 on
a tiny clip, a small 3-D U-Net-like segmentation network with the Segmentation target (and its Keras twin on
ported weights), a 1-D ECG-like classifier, and the anchors' 3-D Grad-CAM (captum, torchcam) on the same
volumes. Values against autograd and torch's trilinear interpolation written by hand."""

import numpy as np
import pytest

import xcam
from xcam.layers import default_layer
from xcam.targets import Segmentation

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
from torch import nn  # noqa: E402

import xcam_torch  # noqa: E402


def hand_gradcam(model, module, x, score_fn, size):
    """Grad-CAM by hand: hook, autograd, channel means over every spatial axis, ReLU, torch interpolation."""
    kept = {}
    h = module.register_forward_hook(lambda m, a, o: kept.setdefault("o", o))
    out = model(torch.from_numpy(x))
    h.remove()
    (g,) = torch.autograd.grad(score_fn(out).sum(), kept["o"])
    axes = tuple(range(2, g.ndim))
    raw = torch.relu((g.mean(dim=axes, keepdim=True) * kept["o"]).sum(1, keepdim=True))
    mode = {3: "linear", 4: "bilinear", 5: "trilinear"}[raw.ndim]
    up = torch.nn.functional.interpolate(raw, size=size, mode=mode, align_corners=False)[:, 0]
    return xcam.normalize_minmax(up.detach().numpy())


CLIP = np.random.default_rng(0).normal(size=(2, 3, 8, 32, 32)).astype(np.float32)


@pytest.mark.parametrize("arch", ["r3d_18", "r2plus1d_18"])
def test_video_networks_gradcam_equals_the_hand_computation(arch):
    torch.manual_seed(0)
    model = getattr(torchvision.models.video, arch)(weights=None, num_classes=5).eval()
    recs = xcam_torch.layer_records(model, (3, 8, 32, 32))
    assert default_layer(recs).name == "layer4"
    assert {r.name: r for r in recs}["layer4"].shape == (1, 512, 1, 2, 2)
    out = xcam_torch.cam(model, CLIP, "layer3", "gradcam", targets=[1, 3])
    assert out.shape == (2, 8, 32, 32) and out.max() == 1
    expected = hand_gradcam(model, model.layer3, CLIP, lambda o: o[:, [1, 3]].diagonal(), (8, 32, 32))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert xcam_torch.input_shape(model) == (3, None, None, None)


class UNet3d(nn.Module):
    """enc1 (conv 1->4) -> pool -> enc2 (conv 4->8, the bottleneck) -> upsample -> concat enc1 -> dec (conv
    12->4) -> head (1x1x1 conv -> 3 classes): class maps (N, 3, D, H, W)."""

    def __init__(self):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU())
        self.pool = nn.MaxPool3d(2)
        self.enc2 = nn.Sequential(nn.Conv3d(4, 8, 3, padding=1), nn.ReLU())
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec = nn.Sequential(nn.Conv3d(12, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Conv3d(4, 3, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        return self.head(self.dec(torch.cat([self.up(self.enc2(self.pool(e1))), e1], dim=1)))


VOL = np.random.default_rng(1).normal(size=(2, 1, 8, 8, 8)).astype(np.float32)


def unet():
    torch.manual_seed(0)
    model = UNet3d().eval()
    with torch.no_grad():  # class maps that disagree from voxel to voxel: every class is predicted somewhere
        model.head.weight.mul_(8)
        model.head.bias.zero_()
    return model


@pytest.mark.parametrize("mask", [None, "predicted"])
def test_3d_unet_segmentation_target_equals_the_hand_computation(mask):
    model = unet()
    with torch.no_grad():
        pred = model(torch.from_numpy(VOL)).argmax(1)

    def score(out):
        m = torch.ones_like(pred, dtype=out.dtype) if mask is None else (pred == 1).to(out.dtype)
        return (out[:, 1] * m).sum(dim=(1, 2, 3))

    out = xcam_torch.cam(model, VOL, "enc2", "gradcam", targets=Segmentation(1, mask=mask))
    np.testing.assert_allclose(out, hand_gradcam(model, model.enc2, VOL, score, (8, 8, 8)), atol=1e-5)
    assert out.max() == 1


def keras_unet(tmodel):
    keras = pytest.importorskip("keras")
    L = keras.layers
    inp = keras.Input((8, 8, 8, 1))
    e1 = L.Conv3D(4, 3, padding="same", activation="relu", name="enc1")(inp)
    e2 = L.Conv3D(8, 3, padding="same", activation="relu", name="enc2")(L.MaxPooling3D(2)(e1))
    d = L.Conv3D(4, 3, padding="same", activation="relu", name="dec")(L.Concatenate()([L.UpSampling3D(2)(e2), e1]))
    model = keras.Model(inp, L.Conv3D(3, 1, name="head")(d))
    for name, conv in [("enc1", tmodel.enc1[0]), ("enc2", tmodel.enc2[0]), ("dec", tmodel.dec[0]),
                       ("head", tmodel.head)]:
        model.get_layer(name).set_weights([conv.weight.detach().numpy().transpose(2, 3, 4, 1, 0),
                                           conv.bias.detach().numpy()])
    return model


@pytest.mark.tf
@pytest.mark.parametrize("method", ["gradcam", "layercam", "ablationcam"])
def test_3d_unet_segmentation_torch_keras_parity(method):
    pytest.importorskip("tensorflow")
    import xcam_tf

    tmodel = unet()
    kmodel = keras_unet(tmodel)
    target = Segmentation(1, mask="predicted")
    mine = xcam_torch.cam(tmodel, VOL, "enc2", method, targets=target)
    theirs = xcam_tf.cam(kmodel, np.moveaxis(VOL, 1, -1), "enc2", method, targets=target)
    assert mine.shape == (2, 8, 8, 8) and mine.max() == 1
    np.testing.assert_allclose(mine, theirs, atol=2e-5)


class ECG(nn.Module):
    """12 leads x 250 samples: three conv blocks (conv, batch norm, ReLU, pool), global average, 4 rhythms."""

    def __init__(self):
        super().__init__()
        blocks = []
        for cin, cout in [(12, 16), (16, 32), (32, 32)]:
            blocks += [nn.Conv1d(cin, cout, 7, padding=3), nn.BatchNorm1d(cout), nn.ReLU(), nn.MaxPool1d(2)]
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=2))


def test_ecg_classifier_gradcam_default_layer_and_signal_plot():
    torch.manual_seed(0)
    model = ECG().eval()
    with torch.no_grad():  # batch norm statistics that are not the identity
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
    t = np.linspace(0, 2, 250, dtype=np.float32)
    ecg = np.stack([np.sin(2 * np.pi * (1.2 + 0.1 * k) * t) for k in range(12)])[None].repeat(2, 0)
    ecg[1] += np.random.default_rng(0).normal(scale=0.3, size=ecg[1].shape).astype(np.float32)
    recs = xcam_torch.layer_records(model, (12, 250))
    layer = default_layer(recs).name
    assert layer == "features.10"  # the last ReLU (its pool and the head come after)
    out = xcam_torch.cam(model, ecg, layer, "gradcam", targets=[2, 2])
    expected = hand_gradcam(model, model.features[10], ecg, lambda o: o[:, 2], (250,))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    pic = xcam.signal_plot(ecg[0, :3], out[0], height=60, band=8)
    assert pic.shape == (68, 250, 3)


@pytest.mark.slow
def test_captum_and_torchcam_3d_gradcam_agree_on_the_same_volumes():
    """captum's LayerGradCam and torchcam's GradCAM on 3-D layers, compared at the layer's resolution (neither
    resizes the same way: captum leaves it to the caller, torchcam returns the layer-resolution map)."""
    captum_attr = pytest.importorskip("captum.attr")
    torchcam = pytest.importorskip("torchcam.methods")
    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18(weights=None, num_classes=5).eval()
    x = torch.from_numpy(CLIP)
    mine = xcam.compute_cam(xcam_torch.capture(model, CLIP, "layer3", targets=[1, 3]), "gradcam")  # (2, 2, 8, 8)
    captum = captum_attr.LayerGradCam(model, model.layer3).attribute(x, target=[1, 3], relu_attributions=True)
    np.testing.assert_allclose(mine, xcam.normalize_minmax(captum[:, 0].detach().numpy()), atol=1e-5)
    with torchcam.GradCAM(model, target_layer="layer3") as extractor:
        scores = model(x)
        theirs = extractor([1, 3], scores)[0].detach().numpy()       # min-max per sample after ReLU
    np.testing.assert_allclose(mine, theirs, atol=5e-5)  # torchcam divides by (max - min + 1e-7): measured 1.1e-5
