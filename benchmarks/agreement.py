"""Print, per method, the anchor it is compared with (tests/test_anchors.py) and the max difference measured
between the two [0, 1] maps, for the closing notes and the README; then the same for the methods and modifiers
of issue 18, measured as their tests do (tests/test_cams_*.py, test_concepts.py), next to the tests' tolerances.

    python benchmarks/agreement.py            # both tables
    python benchmarks/agreement.py --issue18  # the issue 18 table only
"""

import argparse
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


def anchor_rows():
    """(method, anchor, max difference, note) for the methods of tests/test_anchors.py."""
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
    return rows


# ------------------------------------------------------------------------------------------------- issue 18
# Each function follows its test's comparison line by line, on the test's own fixtures (called outside pytest
# through __wrapped__) and helpers, so the numbers are what the tests assert. A row: (method, anchor, max abs
# difference of the [0, 1] maps, the test's tolerance, note).

def fixture(f, *args):
    """The value of a pytest fixture, computed outside pytest."""
    return f.__wrapped__(*args)


def diff(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def up_to_sign(mine, proj):
    """Max over images of the difference to the anchor's projection taken with the closer of its two signs."""
    return max(min(diff(mine[n], xcam.normalize_minmax(np.maximum(s * proj[n:n + 1], 0))[0]) for s in (1, -1))
               for n in range(len(mine)))


def gradient_rows(make):
    """tests/test_cams_gradient.py: gradcamelementwise, eigen_smooth, finercam (seeded ResNet-18, layer4)."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x = make(3)
    targets = [0, 2]
    ours = xcam_torch.cam(model, x, "layer4", "gradcamelementwise", targets)
    with pgc.GradCAMElementWise(model=model, target_layers=[model.layer4]) as cam:
        theirs = xcam.normalize_minmax(cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets]))
    rows = [("gradcamelementwise", "pytorch-grad-cam GradCAMElementWise", diff(ours, theirs), 1e-4,
             "same formula")]
    cap = xcam_torch.capture(model, x, "layer4", targets)
    smooth = {}
    for method, name in (("gradcam", "GradCAM"), ("gradcamelementwise", "GradCAMElementWise")):
        mine = xcam.compute_cam(cap, method, options={"eigen_smooth": True})
        with getattr(pgc, name)(model=model, target_layers=[model.layer4]) as cam:
            raw = cam.get_cam_image(x, model.layer4, None, cap.activations, cap.gradients, eigen_smooth=True)
        smooth[method] = up_to_sign(mine, raw)
    rows.append(("eigen_smooth", "pytorch-grad-cam GradCAM, GradCAMElementWise (eigen_smooth=True)",
                 max(smooth.values()), 1e-4, "up to the anchor's arbitrary SVD sign per image, on the same captured "
                 f"arrays; gradcam {smooth['gradcam']:.1e}, gradcamelementwise {smooth['gradcamelementwise']:.1e}"))
    model, x = make(10)
    finer = []
    for target, kwargs in ((None, {}), (3, {"target_idx": 3})):
        ours = xcam_torch.cam(model, x, "layer4", "finercam", target)
        with pgc.FinerCAM(model=model, target_layers=[model.layer4]) as cam:
            finer.append(diff(ours, xcam.normalize_minmax(cam(input_tensor=x, **kwargs))))
    rows.append(("finercam", "pytorch-grad-cam FinerCAM", max(finer), 1e-4,
                 f"its defaults (alpha 1, compared ranks 1-3, GradCAM base); top-1 target {finer[0]:.1e}, "
                 f"target_idx=3 {finer[1]:.1e}"))
    return rows


def activation_rows(make):
    """tests/test_cams_activation.py: fem, randomcam, segeigencam, kpcacam (seeded ResNet-18, 64 px, layer3)."""
    import pytorch_grad_cam as pgc
    import test_cams_activation as T
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_kernel

    model, x = fixture(T.resnet, make)
    layer = dict(model.named_modules())[T.LAYER]
    targets = [ClassifierOutputTarget(t) for t in (0, 1)]
    rows = []
    notes = {"fem": "same formula (k = 2)",
             "randomcam": "same weights: xcam's RandomState(7).uniform(-1, 1) and the anchor's global "
                          "np.random.uniform after np.random.seed(7), as the test seeds it"}
    for method, name in (("fem", "FEM"), ("randomcam", "RandomCAM")):
        ours = xcam_torch.cam(model, x, T.LAYER, method, [0, 1], options={"seed": 7} if method == "randomcam" else None)
        with getattr(pgc, name)(model=model, target_layers=[layer]) as cam:
            np.random.seed(7)
            theirs = cam(input_tensor=x, targets=targets)
        theirs = xcam.normalize_minmax(np.asarray(theirs, np.float32))
        rows.append((method, f"pytorch-grad-cam {name}", diff(ours, theirs), 1e-4, notes[method]))
    ours = xcam_torch.cam(model, x, T.LAYER, "segeigencam", [0, 1])
    with pgc.SegEigenCAM(model=model, target_layers=[layer]) as cam:
        theirs = xcam.normalize_minmax(np.asarray(cam(input_tensor=x, targets=targets), np.float32))
    rows.append(("segeigencam", "pytorch-grad-cam SegEigenCAM", diff(ours, theirs), 1e-4,
                 "sign 'extreme' as the anchor (Eq. 13); where |min| = |max| exactly the anchor keeps the SVD's sign"))
    cap = xcam_torch.capture(model, x, T.LAYER, [0, 1])
    rows.append(("kpcacam", "pytorch-grad-cam get_2d_projection_kernel (KPCA_CAM's)",
                 up_to_sign(xcam.compute_cam(cap, "kpcacam"), get_2d_projection_kernel(cap.activations)), 1e-4,
                 "up to the sign (the anchor's is sklearn KernelPCA's, ours follows the channel sum); sigmoid "
                 "kernel, gamma 1/C; ours in NumPy"))
    return rows


def fullgrad_rows():
    """tests/test_cams_fullgrad.py: fullgrad, refinecam (ResNet-18 with random BatchNorm statistics, 64 px)."""
    import pytorch_grad_cam as pgc
    import test_cams_fullgrad as T
    import torchcam.methods as tcm
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from xcam.pipeline import layer_maps

    model, x, targets = fixture(T.resnet)
    wanted = [ClassifierOutputTarget(t) for t in targets]
    ours = xcam_torch.cam(model, x, "layer4", "fullgrad", targets)
    with pgc.FullGrad(model=model, target_layers=[]) as cam:
        theirs = xcam.normalize_minmax(cam(input_tensor=x, targets=wanted))
    T.clear_grads(model)
    rows = [("fullgrad", "pytorch-grad-cam FullGrad", diff(ours, theirs), 1e-4,
             "same formula, rescale eps 1e-7 (xcam's default; eps=0 is the paper's exact rescale); the authors' "
             "code (joint rescale per layer) is not compared")]
    names = ["layer2", "layer3", "layer4"]
    caps = xcam_torch.capture(model, x, names, targets)
    at_input = layer_maps(caps, "refinecam", (64, 64), options={"base": "gradcam"})
    at_largest = layer_maps(caps, "refinecam", (64, 64), options={"base": "gradcam", "product_at": "largest_layer"})
    cam = pgc.RefineCAM(model, [getattr(model, n) for n in names], base_method=pgc.GradCAM)
    try:
        theirs = xcam.normalize_minmax(cam(x, wanted))
    finally:
        for base in cam.base_cam_per_layer:
            base.activations_and_grads.release()
        T.clear_grads(model)
    rows.append(("refinecam (product_at=input)", "pytorch-grad-cam RefineCAM (base GradCAM)", diff(at_input, theirs),
                 1e-4, "base gradcam; with the default base Grad-CAM++ the anchor adds 1e-6 to alpha's denominator "
                       "(7.3e-3 apart, measured once, not run by the test)"))
    with tcm.RefineCAM(model, names, input_shape=(3, 64, 64), base_method=tcm.GradCAM) as extractor:
        tc = extractor(targets, model(x))[0].detach().numpy()
    rows.append(("refinecam (product_at=largest_layer)", "torchcam RefineCAM (base GradCAM)",
                 diff(at_largest, xcam.maps.finish(tc, (64, 64))), 1e-4,
                 "base gradcam; torchcam's default base GradCAMpp keeps alpha = g^2 (known bug): default maps "
                 "differ"))
    return rows


def smoothing_rows(make):
    """tests/test_cams_smoothing.py's anchors fixture: smoothgradcampp, sscam (the same noise fed to torchcam, on
    the seeded ResNet-18), aug_smooth. Also how far another noise seed (1) moves ours, on the fixture's models and
    inputs: whether the comparison depends on the noise at all."""
    import test_cams_smoothing as T

    got = fixture(T.anchors, make)
    torch.manual_seed(0)  # the fixture's model and inputs, in its order
    resnet = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32)
    moved_sg = diff(got["smoothgradcampp"][0], xcam_torch.cam(
        resnet, x, "layer3", "smoothgradcampp", [0, 2], size=(2, 2),
        options={"num_samples": 2, "variant": "torchcam", "seed": 1}))
    moved_ss = diff(got["sscam"][0], got["sscam1"][0])
    changed = diff(got["aug_smooth"][0], got["plain"])
    return [("smoothgradcampp", "torchcam SmoothGradCAMpp (ResNet-18, layer3)", diff(*got["smoothgradcampp"]), 1e-4,
             "variant='torchcam' (sum D^3 A, ReLU of the last copy's gradient, its activations); xcam's noise "
             "(default_rng(0), n 2, std 0.3) fed to the anchor; the default variant='paper' is not compared; "
             f"seed 1 instead moves ours by {moved_sg:.2f}"),
            ("sscam", "torchcam SSCAM (seeded ResNet-18, 32 px, layer2)",
             max(diff(*got["sscam"]), diff(*got["sscam1"])), 1e-4,
             "torchcam's settings: logit-softmax, masks normalized at the layer; xcam's mask noise (default_rng(0) "
             f"and (1), n 2, std 2) fed to the anchor; seed 1 instead of 0 moves ours by {moved_ss:.2f}"),
            ("aug_smooth", "pytorch-grad-cam GradCAM (aug_smooth=True)", diff(*got["aug_smooth"]), 1e-4,
             "the anchor's mean of six maps is min-maxed as ours (it leaves it as it is); it moves Grad-CAM by "
             f"{changed:.2f} (test: > 0.05)")]


def perturbation_rows(make):
    """tests/test_cams_perturbation.py: iscam (seeded ResNet-18, 32 px, layer2)."""
    import test_cams_perturbation as T

    model, x = fixture(T.resnet, make)
    theirs = xcam.normalize_minmax(np.maximum(T.torchcam_raw(model, x, "ISCAM"), 0))
    ours = xcam_torch.cam(model, x, T.LAYER, "iscam", [0, 1], size=(4, 4),
                          options={"weighting": "logit-softmax", "normalize": "layer"})
    return [("iscam", "torchcam ISCAM", diff(ours, theirs), 1e-4,
             "torchcam's settings: logit-softmax, masks normalized at the layer (defaults: probability, after "
             "upsampling); deterministic (coefficients c_i, no noise)")]


def concept_rows():
    """tests/test_concepts.py: DFF concepts (ResNet-18, layer4, k 4) and LeGrad (tiny ViT)."""
    import test_concepts as T
    import torchcam.methods as tcm

    _, _, (vectors, maps, scores), mine = fixture(T.resnet_dff)
    rel_v = diff(mine.vectors, vectors) / np.abs(vectors).max()
    rel_s = diff(mine.scores, scores) / np.abs(scores).max()
    rows = [("dff (concepts)", "pytorch-grad-cam DeepFeatureFactorization", diff(mine.maps, np.asarray(maps)), 1e-4,
             f"xcam_torch.concepts (batch factorized jointly, as the anchor); signed values relative to their max: "
             f"vectors {rel_v:.1e}, scores {rel_s:.1e} (test: <= 1e-4 each). The dff method factorizes each "
             "sample alone: the test compares it with concepts of that sample, not with the anchor")]
    model = T.tiny_torch_vit()
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32))
    legrad = []
    for layers in (T.BLOCKS[1:], T.BLOCKS):
        with tcm.LeGrad(model, layers) as extractor:
            theirs = extractor(class_idx=[1, 3], scores=model(x))[0].detach().numpy()
        legrad.append(diff(xcam_torch.cam(model, x.numpy(), layers, "legrad", targets=[1, 3], size=(4, 4)), theirs))
    rows.append(("legrad", "torchcam LeGrad (tiny ViT)", max(legrad), 1e-5,
                 f"same formula; last block {legrad[0]:.1e}, two blocks (mean) {legrad[1]:.1e}"))
    return rows


def shapley_rows():
    """tests/test_cams_adapters.py: shapleycam (ResNet-18, 1000 classes, 64 px, layer4)."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

    from xcam.targets import Class

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 64, 64)
    prob = diff(xcam_torch.cam(model, x, "layer4", "shapleycam", Class([3, 5], "probability")),
                pgc.ShapleyCAM(model, [model.layer4])(x, targets=[ClassifierOutputSoftmaxTarget(c) for c in (3, 5)]))
    logit = diff(xcam_torch.cam(model, x, "layer4", "shapleycam", [3, 5]),
                 pgc.ShapleyCAM(model, [model.layer4])(x, targets=[ClassifierOutputTarget(c) for c in (3, 5)]))
    return [("shapleycam", "pytorch-grad-cam ShapleyCAM", max(prob, logit), 1e-4,
             f"same formula; softmax-probability target (H A != 0) {prob:.1e}, logit target (H A = 0 after "
             f"layer4) {logit:.1e}; the anchor's maps are compared as it returns them (its own min-max)")]


def issue18_rows():
    """The rows of every issue 18 method and modifier."""
    import conftest

    make = fixture(conftest.seeded_resnet18)
    with contextlib.redirect_stderr(io.StringIO()):
        return (fullgrad_rows() + gradient_rows(make) + shapley_rows() + activation_rows(make) + smoothing_rows(make)
                + perturbation_rows(make) + concept_rows())


def cell(text):
    """Text for a Markdown table cell (a note's |y| must not end the cell)."""
    return text.replace("|", "\\|")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issue18", action="store_true", help="only the methods and modifiers of issue 18")
    args = parser.parse_args()
    if not args.issue18:
        print("| method | anchor | max abs difference | note |\n|---|---|---|---|")
        for method, anchor, d, note in anchor_rows():
            print(f"| {method} | {anchor} | {d:.1e} | {cell(note)} |")
        print()
    print("| method | anchor | max abs difference of the [0, 1] maps (test's tolerance) | note |\n|---|---|---|---|")
    for method, anchor, d, tol, note in issue18_rows():
        flag = " **over the tolerance**" if d > tol else ""
        print(f"| {method} | {anchor} | {d:.1e} (<= {tol:.0e}){flag} | {cell(note)} |")


if __name__ == "__main__":
    main()
