"""Print, per method, the anchor it is compared with (tests/test_anchors.py) and the max difference measured
between the two [0, 1] maps, for the closing notes and the README.

    python benchmarks/agreement.py
"""

import contextlib
import io
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np  # noqa: E402
import test_anchors as T  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

import xcam  # noqa: E402
import xcam_torch  # noqa: E402
from xcam.app.inputs.images import load_image, preprocess  # noqa: E402
from xcam.app.models.zoo import demo_images  # noqa: E402


def main():
    torch.manual_seed(0)
    model = torchvision.models.alexnet(num_classes=2).eval()
    with torch.no_grad():
        model.classifier[6].weight.mul_(100)
    x = torch.from_numpy(preprocess([load_image(p) for p in demo_images()[:2]], (224, 224))).permute(0, 3, 1, 2)
    rows = []
    for method, (name, _, note) in T.PGC.items():
        opts = {"weighting": "logit-softmax"} if method == "scorecam" else None
        targets = [1, 1] if method == "ablationcam" else [0, 1]
        with contextlib.redirect_stderr(io.StringIO()):
            b = T.pgc_map(name, model, x, targets)
        a = xcam_torch.cam(model, x, T.LAYER, method, targets, options=opts)
        rows.append((method, f"pytorch-grad-cam {name}", np.abs(a - b).max(), note))
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
    for method in ("eigencam", "eigengradcam"):
        cap = xcam_torch.capture(model, x, T.LAYER, [0, 1])
        proj = get_2d_projection(cap.activations if method == "eigencam" else cap.activations * cap.gradients)
        mine = xcam.compute_cam(cap, method)
        worst = max(min(np.abs(mine[n] - T.renorm(np.maximum(s * proj[n:n + 1], 0))[0]).max() for s in (1, -1))
                    for n in range(2))
        rows.append((method, "pytorch-grad-cam get_2d_projection", worst, "up to the anchor's arbitrary sign"))
    import torchcam.methods as tcm
    for method, (name, _, note) in T.TORCHCAM.items():
        with getattr(tcm, name)(model, T.LAYER, input_shape=(3, 224, 224)) as extractor:
            raw = extractor.compute_cams([0, 1], model(x), normalized=False)[0].detach().numpy()
        opts = {"weighting": "logit-softmax"} if method == "scorecam" else None
        a = xcam_torch.cam(model, x, T.LAYER, method, [0, 1], size=(13, 13), options=opts)
        rows.append((method, f"torchcam {name}", np.abs(a - T.renorm(np.maximum(raw, 0))).max(), note))
    import captum.attr as ca
    layer = dict(model.named_modules())[T.LAYER]
    g = ca.LayerGradCam(model, layer).attribute(x, target=[0, 1], relu_attributions=True).detach().numpy()[:, 0]
    rows.append(("gradcam", "captum LayerGradCam", np.abs(T.ours(model, x, "gradcam", size=(13, 13))
                                                          - T.renorm(g)).max(), "same formula"))
    for method, anchor in (("saliency", "Saliency"), ("guidedbackprop", "GuidedBackprop")):
        g = getattr(ca, anchor)(model).attribute(x.clone().requires_grad_(True), target=[0, 1]).detach().numpy()
        rows.append((method, f"captum {anchor}", np.abs(T.ours(model, x, method) - T.renorm(np.abs(g).max(1))).max(),
                     "same formula"))
    g = ca.GuidedGradCam(model, layer).attribute(x.clone().requires_grad_(True), target=[0, 1],
                                                 interpolate_mode="bilinear").detach().numpy()
    rows.append(("guidedgradcam", "captum GuidedGradCam", np.abs(T.ours(model, x, "guidedgradcam")
                                                                 - T.renorm(np.abs(g).max(1))).max(), "same formula"))
    torch.manual_seed(0)
    r18 = torchvision.models.resnet18(num_classes=3).eval()
    xs = torch.randn(2, 3, 64, 64)
    with tcm.CAM(r18, "layer4", fc_layer="fc", input_shape=(3, 64, 64)) as extractor:
        raw = extractor.compute_cams([2, 0], r18(xs), normalized=False)[0].detach().numpy()
    rows.append(("cam", "torchcam CAM (ResNet18)", np.abs(xcam_torch.cam(r18, xs, "layer4", "cam", [2, 0], size=(2, 2))
                                                      - T.renorm(raw)).max(), "same formula"))
    import importlib

    from tf_keras_vis.utils.scores import CategoricalScore

    import xcam_tf
    from xcam.app.models.porting_keras import build
    from xcam.app.models.porting_torch import describe
    kmodel = build(describe(model, (3, 224, 224)), (224, 224, 3))
    xk = x.permute(0, 2, 3, 1).numpy()
    for method, (module, cls, _, note) in T.TKV.items():
        tool = getattr(importlib.import_module(module), cls)(kmodel, clone=True)
        if method == "saliency":
            theirs = T.renorm(tool(CategoricalScore([0, 1]), xk, normalize_map=False))
            mine = xcam_tf.cam(kmodel, xk, "features_11", method, [0, 1])
        else:
            theirs = T.renorm(np.maximum(tool(CategoricalScore([0, 1]), xk, penultimate_layer="features_11",
                                              seek_penultimate_conv_layer=False, normalize_cam=False,
                                              expand_cam=False), 0))
            mine = xcam_tf.cam(kmodel, xk, "features_11", method, [0, 1], size=(13, 13))
        rows.append((method, f"tf-keras-vis {cls} (Keras twin)", np.abs(mine - theirs).max(), note))
    print("| method | anchor | max abs difference | note |\n|---|---|---|---|")
    for method, anchor, diff, note in rows:
        print(f"| {method} | {anchor} | {diff:.1e} | {note} |")


if __name__ == "__main__":
    main()
