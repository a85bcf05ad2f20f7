"""Print, for every target kind, the max difference between PyTorch and Keras on the same weights (layer
gradients and Grad-CAM maps), and the anchors: DeepLabV3 Grad-CAM against pytorch-grad-cam's
SemanticSegmentationTarget, Faster R-CNN Grad-CAM against its FasterRCNNBoxScoreTarget.

Models: torchvision AlexNet (random weights, 2 classes) and its ported Keras twin; a segmentation net made of
AlexNet's features plus a 1x1 conv head (3 classes), ported the same way.

    python benchmarks/targets.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from collections import OrderedDict  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402

import xcam  # noqa: E402
import xcam_tf  # noqa: E402
import xcam_torch  # noqa: E402
from xcam.app.models.porting_keras import build  # noqa: E402
from xcam.app.models.porting_torch import describe  # noqa: E402
from xcam.targets import Binary, Boxes, Class, Custom, Regression, Segmentation, Similarity  # noqa: E402


def detector(stack):
    """A detector stand-in on the logits: one box (0, 0, 100 + 50 o0, 100 + 50 o1) scored o0, label 1."""
    def out(o):
        zero = o[:, 0] * 0
        boxes = stack([zero, zero, 100 + 50 * o[:, 0], 100 + 50 * o[:, 1]], 1)[:, None]
        return {"boxes": boxes, "labels": zero[:, None] + 1, "scores": o[:, :1]}
    return out


def parity_rows():
    torch.manual_seed(0)
    alex = torchvision.models.alexnet(num_classes=2).eval()
    kalex = build(describe(alex, (3, 224, 224)), (224, 224, 3))
    seg = nn.Sequential(OrderedDict(features=alex.features, head=nn.Conv2d(256, 3, 1))).eval()
    kseg = build(describe(seg, (3, 224, 224)), (224, 224, 3))
    x = torch.randn(2, 3, 224, 224)
    xk = x.permute(0, 2, 3, 1).numpy()
    import tensorflow as tf

    with torch.no_grad():  # each sample's most frequent predicted class: a non-empty predicted mask
        majority = [int(np.bincount(m.argmax(0).ravel(), minlength=3).argmax()) for m in seg(x).numpy()]

    cases = [
        ("class (probability)", alex, kalex, Class([0, 1], "probability"), None, None),
        ("class (log-probability, top-1)", alex, kalex, Class(None, "log-probability"), None, None),
        ("binary", alex, kalex, Binary(), lambda o: o[:, :1], None),
        ("regression", alex, kalex, Regression(1), None, None),
        ("similarity", alex, kalex, Similarity([0.6, -0.8]), None, None),
        ("custom (ops)", alex, kalex, Custom(lambda o, ops: ops.sigmoid(o[:, 0]) - o[:, 1]), None, None),
        ("boxes", alex, kalex, Boxes([[0, 0, 120, 120]], [1], iou=0.3), detector(torch.stack),
         detector(tf.stack)),
        ("segmentation (predicted mask)", seg, kseg, Segmentation(majority, "predicted"), None, None),
        ("segmentation (whole image, mean)", seg, kseg, Segmentation([0, 2], None, "mean"), None, None),
    ]
    rows = []
    for name, tm, km, target, out_t, out_k in cases:
        out_k = out_k or out_t
        ct = xcam_torch.capture(tm, x, "features.10", target, output=out_t)
        ck = xcam_tf.capture(km, xk, "features_10", target, output=out_k)
        gt = np.abs(ct.gradients - ck.gradients).max()
        st = np.abs(ct.target_scores - ck.target_scores).max()
        mt = xcam_torch.cam(tm, x, "features.10", "gradcam", target, output=out_t)
        mk = xcam_tf.cam(km, xk, "features_10", "gradcam", target, output=out_k)
        rows.append((name, gt, np.abs(ct.gradients).max(), st, np.abs(mt - mk).max()))
    return rows


def anchor_rows():
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget, SemanticSegmentationTarget

    def renorm(m):
        return xcam.normalize_minmax(np.asarray(m, np.float32))

    torch.manual_seed(0)
    deeplab = torchvision.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=3,
                                                                 aux_loss=True).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        mask = (deeplab(x)["out"].argmax(1) == 1).numpy()
    ours = xcam_torch.cam(deeplab, x, "backbone.layer4", "gradcam", Segmentation(1, "predicted"), output="out")

    class Out(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, t):
            return self.m(t)["out"]

    with GradCAM(model=Out(deeplab), target_layers=[deeplab.backbone.layer4]) as cam:
        theirs = renorm(cam(input_tensor=x, targets=[SemanticSegmentationTarget(1, m.astype(np.float32))
                                                     for m in mask]))
    rows = [("DeepLabV3-ResNet50, Segmentation(1, 'predicted') vs SemanticSegmentationTarget",
             np.abs(ours - theirs).max())]
    torch.manual_seed(0)
    frcnn = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=3, min_size=128, max_size=128, box_score_thresh=0.0,
        box_detections_per_img=5).eval()
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        found = frcnn(x)
    boxes = [f["boxes"][:2].numpy() for f in found]
    labels = [f["labels"][:2].numpy() for f in found]
    ours = xcam_torch.cam(frcnn, x, "backbone.body.layer4", "gradcam", Boxes(boxes, labels))
    with GradCAM(model=frcnn, target_layers=[frcnn.backbone.body.layer4]) as cam:
        theirs = renorm(cam(input_tensor=x, targets=[FasterRCNNBoxScoreTarget(lab, b)
                                                     for lab, b in zip(labels, boxes)]))
    rows.append(("Faster R-CNN ResNet50-FPN, Boxes vs FasterRCNNBoxScoreTarget", np.abs(ours - theirs).max()))
    return rows


def main():
    print("| target (AlexNet features.10, batch 2) | gradients: max abs diff | (max abs gradient) | "
          "scores: max abs diff | Grad-CAM maps: max abs diff |\n|---|---|---|---|---|")
    for name, g, gmax, s, m in parity_rows():
        print(f"| {name} | {g:.2g} | {gmax:.2g} | {s:.2g} | {m:.2g} |")
    print("\n| anchor (Grad-CAM, maps in [0, 1]) | max abs diff |\n|---|---|")
    for name, d in anchor_rows():
        print(f"| {name} | {d:.2g} |")


if __name__ == "__main__":
    main()
