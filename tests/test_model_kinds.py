"""Real architectures beyond the one-logits classifier, random weights (nothing downloaded): a torchvision
segmentation model with its dict output (anchored on pytorch-grad-cam's SemanticSegmentationTarget), a
torchvision Faster R-CNN with Boxes (anchored on FasterRCNNBoxScoreTarget), a Hugging Face-style model
returning an object with .logits, a Keras model with two named outputs (and its PyTorch twin), and an embedding
model with Similarity (against plain autograd)."""

import numpy as np
import pytest

import xcam
from xcam import XcamError
from xcam.targets import Boxes, Class, Regression, Segmentation, Similarity

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from torch import nn  # noqa: E402

import xcam_torch  # noqa: E402

pytestmark = pytest.mark.torch


def renorm(maps):
    return xcam.normalize_minmax(np.asarray(maps, np.float32))


def untouched(model):
    """What a call must leave as it was: hooks, modes, .grad."""
    return [(len(m._forward_hooks), len(m._backward_hooks), m.training) for m in model.modules()] + \
        [p.grad is None for p in model.parameters()]


# ------------------------------------------------------------------ segmentation: DeepLabV3, dict output

@pytest.fixture(scope="module")
def deeplab():
    torch.manual_seed(0)
    model = torchvision.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=3,
                                                               aux_loss=True).eval()
    x = torch.randn(2, 3, 64, 64)
    return model, x


@pytest.mark.slow
def test_deeplab_dict_output_needs_a_choice_and_matches_pytorch_grad_cam(deeplab):
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    model, x = deeplab
    with pytest.raises(XcamError, match=r"returns a dict with outputs 'out' \(2, 3, 64, 64\), 'aux' "
                                        r"\(2, 3, 64, 64\); choose the one to explain with output="):
        xcam_torch.cam(model, x, "backbone.layer4", "gradcam", Segmentation(1))
    with torch.no_grad():
        out = model(x)["out"].numpy()
    cls = 1
    before = untouched(model)
    cap = xcam_torch.capture(model, x, "backbone.layer4", Segmentation(cls, "predicted"), output="out")
    mask = out.argmax(1) == cls
    assert mask.any()
    np.testing.assert_array_equal(cap.target.mask, mask)
    np.testing.assert_allclose(cap.target_scores, (out[:, cls] * mask).sum((1, 2)), rtol=1e-4)
    ours = xcam_torch.cam(model, x, "backbone.layer4", "gradcam", Segmentation(cls, "predicted"), output="out")
    assert untouched(model) == before

    class Out(nn.Module):  # the anchor's documented way: a wrapper returning ["out"]
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, t):
            return self.m(t)["out"]

    with GradCAM(model=Out(model), target_layers=[model.backbone.layer4]) as cam:
        theirs = renorm(cam(input_tensor=x, targets=[SemanticSegmentationTarget(cls, mask[n].astype(np.float32))
                                                     for n in range(len(x))]))
    assert ours.max() == 1.0
    diff = np.abs(ours - theirs).max()
    assert diff <= 1e-4, diff  # measured 2.8e-5: the anchor normalizes before resizing, xcam after


# ------------------------------------------------------------------ detection: Faster R-CNN + Boxes

@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=3, min_size=128, max_size=128, box_score_thresh=0.0,
        box_detections_per_img=5).eval()
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        found = model(x)
    return model, x, found


@pytest.mark.slow
def test_faster_rcnn_boxes_target_matches_pytorch_grad_cam(detector):
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

    model, x, found = detector
    assert all(len(f["boxes"]) for f in found)
    boxes = [f["boxes"][:2].numpy() for f in found]  # explain the first two detections of each image
    labels = [f["labels"][:2].numpy() for f in found]
    target = Boxes(boxes, labels)
    with pytest.raises(XcamError, match=r"returns a list with outputs 0 \(dict\), 1 \(dict\); choose"):
        xcam_torch.cam(model, x, "backbone.body.layer4", "gradcam", 0)
    before = untouched(model)
    cap = xcam_torch.capture(model, x, "backbone.body.layer4", target)
    assert untouched(model) == before
    # the same box scores as pytorch-grad-cam's target: IoU 1 with itself + the detection's score
    expected = [sum(1.0 + float(s) for s in f["scores"][:2]) for f in found]
    anchor = [float(FasterRCNNBoxScoreTarget(lab, b)(f)) for lab, b, f in zip(labels, boxes, found)]
    np.testing.assert_allclose(cap.target_scores, expected, rtol=1e-5)
    np.testing.assert_allclose(cap.target_scores, anchor, rtol=1e-5)
    assert np.abs(cap.gradients).max() > 0
    ours = xcam_torch.cam(model, x, "backbone.body.layer4", "gradcam", target)
    with GradCAM(model=model, target_layers=[model.backbone.body.layer4]) as cam:
        theirs = renorm(cam(input_tensor=x, targets=[FasterRCNNBoxScoreTarget(lab, b)
                                                     for lab, b in zip(labels, boxes)]))
    diff = np.abs(ours - theirs).max()
    assert diff <= 1e-4, diff


# ------------------------------------------------------------------ Hugging Face-style output object

class HFOutput:
    """What a transformers model returns: attributes (and None for what was not computed)."""

    def __init__(self, logits, hidden_states):
        self.loss, self.logits, self.hidden_states = None, logits, hidden_states


class HFStandIn(nn.Module):
    """A tiny CNN returning HFOutput(logits=..., hidden_states=...)."""

    def __init__(self, base):
        super().__init__()
        self.base = base

    def forward(self, pixel_values):
        b = self.base
        feats = b.act2(b.conv2(b.act1(b.conv1(pixel_values))))
        return HFOutput(b.fc(torch.flatten(b.pool(feats), 1)), (feats,))


def test_hugging_face_style_logits_attribute():
    from kits import make_kit

    kit = make_kit("torch")
    hf = HFStandIn(kit.model).eval()
    with pytest.raises(XcamError, match=r"returns a HFOutput with outputs 'logits' \(2, 2\), 'hidden_states' "
                                        r"\(tuple\); choose the one to explain with output= \(e\.g\. "
                                        r"output='logits'\)"):
        xcam_torch.cam(hf, kit.x_nchw, "base.conv2")
    for method in ("gradcam", "scorecam", "saliency"):
        np.testing.assert_array_equal(xcam_torch.cam(hf, kit.x_nchw, "base.conv2", method, [0, 1], output="logits"),
                                      kit.cam("conv2", method, [0, 1]))


# ------------------------------------------------------------------ Keras: two named outputs, and the torch twin

def two_heads_keras(kit_tf):
    """The ported tiny network with a second head "size" (Dense 3 -> 1) on the pooled features: as a dict output
    and as a list output (Keras output names "fc", "size")."""
    import keras

    base = kit_tf.model
    flat = base.get_layer("fc_flatten").output
    cls = base.get_layer("fc").output
    size = keras.layers.Dense(1, name="size")(flat)
    return keras.Model(base.inputs, {"cls": cls, "size": size}), keras.Model(base.inputs, [cls, size])


def test_keras_two_named_outputs_and_their_torch_twin():
    pytest.importorskip("tensorflow")
    from kits import make_kit

    import xcam_tf

    kt, kk = make_kit("torch"), make_kit("tf")
    as_dict, as_list = two_heads_keras(kk)
    v = np.array([[0.5], [-1.0], [2.0]], np.float32)
    for model in (as_dict, as_list):
        model.get_layer("size").set_weights([v, np.zeros(1, np.float32)])
        first = "cls" if model is as_dict else "fc"
        choose = rf"choose the one to explain with output= \(e\.g\. output='{first}'\)"
        with pytest.raises(XcamError, match=choose) as e:
            xcam_tf.cam(model, kk.inputs, "act2")
        assert "\n" not in str(e.value)
        with pytest.raises(XcamError, match=r"no output 'siz' \(did you mean size\?\)"):
            xcam_tf.cam(model, kk.inputs, "act2", output="siz")
        cap = xcam_tf.capture(model, kk.inputs, "act2", Regression(), output="size")
        np.testing.assert_allclose(cap.gradients, np.broadcast_to(v[None, :, 0, None, None] / 64, (2, 3, 8, 8)),
                                   rtol=1e-5)
        np.testing.assert_array_equal(xcam_tf.cam(model, kk.inputs, "act2", "gradcam", [0, 1], output=first),
                                      kk.cam("act2", "gradcam", [0, 1]))

    class TwoHeads(nn.Module):  # the PyTorch twin: a dict output with the same weights
        def __init__(self, base):
            super().__init__()
            self.base, self.size = base, nn.Linear(3, 1)
            with torch.no_grad():
                self.size.weight.copy_(torch.from_numpy(v.T))
                self.size.bias.zero_()

        def forward(self, x):
            b = self.base
            pooled = torch.flatten(b.pool(b.act2(b.conv2(b.act1(b.conv1(x))))), 1)
            return {"cls": b.fc(pooled), "size": self.size(pooled)}

    twin = TwoHeads(kt.model).eval()
    for target, output in ((Regression(), "size"), (Class([1, 0], "probability"), "cls")):
        for method in ("gradcam", "scorecam", "ablationcam"):
            mt = xcam_torch.cam(twin, kt.x_nchw, "base.act2", method, target, output=output)
            mk = xcam_tf.cam(as_dict, kk.inputs, "act2", method, target, output=output)
            np.testing.assert_allclose(mt, mk, atol=1e-4, err_msg=f"{method} {output}")


# ------------------------------------------------------------------ embeddings + Similarity

def test_resnet_embedding_similarity_against_plain_autograd():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    model.fc = nn.Identity()  # a 512-d embedding
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = model(torch.randn(1, 3, 64, 64))[0].numpy()
    cap = xcam_torch.capture(model, x, "layer4", Similarity(reference))
    # the same gradient by hand: a hook keeps layer4's output, cos to the reference, autograd.grad
    kept = {}
    handle = model.layer4.register_forward_hook(lambda m, a, out: kept.setdefault("a", out))
    emb = model(x)
    handle.remove()
    cos = torch.nn.functional.cosine_similarity(emb, torch.from_numpy(reference)[None], dim=1)
    (grad,) = torch.autograd.grad(cos.sum(), kept["a"])
    np.testing.assert_allclose(cap.target_scores, cos.detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(cap.gradients, grad.numpy(), atol=1e-7, rtol=1e-4)
    assert cap.target.to_json()["kind"] == "similarity" and (cap.targets == -1).all()
    maps = xcam_torch.cam(model, x, "layer4", "gradcam", Similarity(reference))
    assert maps.shape == (2, 64, 64) and maps.max() == 1.0
