"""Time xcam against the floor (a bare forward + backward to the target layer) and the anchors, side by side
in one process; print a table of medians and ratios.

    python benchmarks/bench.py            # everything (about 15 minutes on 2 cores)
    python benchmarks/bench.py --quick    # a representative subset, under a minute
    python benchmarks/bench.py --device cuda

Floor, PyTorch: one forward with a hook keeping the layer's output, then torch.autograd.grad(score, output)
(parameters keep requires_grad, as in a user's own script). Floor, Keras: a compiled tf.function tape from
the input through a sub-model [layer output, logits] (the anchor-timing script's "tape fwd+bwd tf.function").
Models have random weights (no download); inputs are random 224x224; class 1 (2-class heads).
"""

import argparse
import contextlib
import gc
import os
import statistics
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402  (before tensorflow)
import torchvision  # noqa: E402

import xcam_torch  # noqa: E402

GRADIENT_METHODS = ["gradcam", "gradcampp", "xgradcam", "hirescam", "layercam"]
ROWS: list[tuple] = []


def median_time(fn, runs=5, warm=2, sync=None):
    for _ in range(warm):
        fn()
    times = []
    for _ in range(runs):
        if sync:
            sync()
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def row(case, name, seconds, base=None, note=""):
    ratio = f"{seconds / base:5.2f}" if base else "     "
    ROWS.append((case, name, seconds, ratio, note))
    print(f"{case:<28} {name:<34} {seconds * 1000:10.1f} ms  x{ratio} {note}", flush=True)


@contextlib.contextmanager
def quiet_stderr():
    """pytorch-grad-cam's progress bars, off."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        yield


def torch_floor(model, layer_module, x, target):
    def run():
        kept = {}
        handle = layer_module.register_forward_hook(lambda m, a, out: kept.__setitem__("a", out))
        try:
            out = model(x)
            torch.autograd.grad(out[:, target].sum(), kept["a"])
        finally:
            handle.remove()
    return run


def torch_gradients(name, model, layer, x, runs, anchors=True, sync=None):
    module = dict(model.named_modules())[layer]
    case = f"{name} B={x.shape[0]} {layer}"
    floor = median_time(torch_floor(model, module, x, 1), runs, sync=sync)
    row(case, "floor: fwd + autograd.grad to layer", floor, floor)
    for method in GRADIENT_METHODS:
        t = median_time(lambda: xcam_torch.cam(model, x, layer, method, 1), runs, sync=sync)
        row(case, f"xcam {method}", t, floor)
    ours = [r for r in ROWS if r[0] == case and r[1] == "xcam gradcam"][0][2]
    both = median_time(lambda: xcam_torch.cam(model, x, layer, "gradcam", classes=[0, 1]), runs, sync=sync)
    row(case, "xcam gradcam classes=[0,1]", both, ours, "ratio to one class")
    if not anchors:
        return
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    targets = [ClassifierOutputTarget(1)] * x.shape[0]
    with GradCAM(model=model, target_layers=[module]) as pgc:
        t = median_time(lambda: pgc(input_tensor=x, targets=targets), runs, sync=sync)
    row(case, "pytorch-grad-cam GradCAM", t, ours, "ratio to xcam gradcam")
    model.zero_grad(set_to_none=True)  # pytorch-grad-cam leaves .grad in the parameters
    from torchcam.methods import GradCAM as TorchcamGradCAM

    def torchcam_run():
        with TorchcamGradCAM(model, layer) as extractor:
            extractor([1] * x.shape[0], model(x))
    t = median_time(torchcam_run, runs, sync=sync)
    row(case, "torchcam GradCAM", t, ours, "ratio to xcam gradcam")
    from captum.attr import LayerAttribution, LayerGradCam
    lgc = LayerGradCam(model, module)

    def captum_run():
        a = lgc.attribute(x, target=1, relu_attributions=True)
        LayerAttribution.interpolate(a, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    t = median_time(captum_run, runs, sync=sync)
    row(case, "captum LayerGradCam", t, ours, "ratio to xcam gradcam")


def torch_perturbation(model, layer, x, runs, full):
    case = f"alexnet B=1 {layer} (perturbation)"
    module = dict(model.named_modules())[layer]
    opts = {"weighting": "logit-softmax"}  # the anchors' weighting: the same forwards either way
    warm = 1 if full else 0
    ours = median_time(lambda: xcam_torch.cam(model, x, layer, "scorecam", 1, options=opts), runs, warm=warm)
    row(case, "xcam scorecam", ours, ours)
    from torchcam.methods import ScoreCAM as TorchcamScoreCAM

    def torchcam_run():
        with TorchcamScoreCAM(model, layer, batch_size=32) as extractor:
            extractor([1], model(x))
    t = median_time(torchcam_run, runs, warm=warm)
    row(case, "torchcam ScoreCAM", t, ours, "ratio to xcam scorecam")
    from pytorch_grad_cam import AblationCAM, ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    if full:
        with ScoreCAM(model=model, target_layers=[module]) as pgc, quiet_stderr():
            t = median_time(lambda: pgc(input_tensor=x, targets=[ClassifierOutputTarget(1)]), runs, warm=1)
        row(case, "pytorch-grad-cam ScoreCAM", t, ours, "ratio to xcam scorecam")
    abl = median_time(lambda: xcam_torch.cam(model, x, layer, "ablationcam", 1), runs, warm=warm)
    row(case, "xcam ablationcam", abl, abl)
    with AblationCAM(model=model, target_layers=[module]) as pgc, quiet_stderr():
        pgc.batch_size = 64
        t = median_time(lambda: pgc(input_tensor=x, targets=[ClassifierOutputTarget(1)]), runs, warm=warm)
    row(case, "pytorch-grad-cam AblationCAM", t, abl, "ratio to xcam ablationcam")


def keras_section(batches, runs, full):
    import keras
    import tensorflow as tf
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.layercam import Layercam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    import xcam_tf

    keras.utils.set_random_seed(0)
    model = keras.applications.VGG16(weights=None, classes=2, classifier_activation=None)
    layer = "block5_conv3"
    sub = keras.Model(model.inputs, [model.get_layer(layer).output, model.output])
    for b in batches:
        x = tf.constant(np.random.RandomState(0).randn(b, 224, 224, 3).astype("float32"))
        case = f"keras VGG16 B={b} {layer}"

        @tf.function
        def bare(x):
            with tf.GradientTape() as tape:
                a, out = sub(x, training=False)
                y = tf.reduce_sum(out[:, 1])
            return tape.gradient(y, a)
        floor = median_time(lambda: bare(x), runs)
        row(case, "floor: compiled tape to layer", floor, floor)
        for method in GRADIENT_METHODS:
            t = median_time(lambda: xcam_tf.cam(model, x, layer, method, 1), runs)
            row(case, f"xcam {method}", t, floor)
        ours = [r for r in ROWS if r[0] == case and r[1] == "xcam gradcam"][0][2]
        both = median_time(lambda: xcam_tf.cam(model, x, layer, "gradcam", classes=[0, 1]), runs)
        row(case, "xcam gradcam classes=[0,1]", both, ours, "ratio to one class")
        score = CategoricalScore([1] * b)
        gc_tool = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)
        t = median_time(lambda: gc_tool(score, x.numpy(), penultimate_layer=layer), runs)
        row(case, "tf-keras-vis Gradcam", t, ours, "ratio to xcam gradcam")
        lc_tool = Layercam(model, model_modifier=ReplaceToLinear(), clone=True)
        t = median_time(lambda: lc_tool(score, x.numpy(), penultimate_layer=layer), runs)
        lc = [r for r in ROWS if r[0] == case and r[1] == "xcam layercam"][0][2]
        row(case, "tf-keras-vis Layercam", t, lc, "ratio to xcam layercam")
    if full:
        from tf_keras_vis.scorecam import Scorecam
        x = np.random.RandomState(0).randn(1, 224, 224, 3).astype("float32")
        case = f"keras VGG16 B=1 {layer} (Score-CAM)"
        ours = median_time(lambda: xcam_tf.cam(model, x, layer, "scorecam", 1), 3, warm=1)
        row(case, "xcam scorecam", ours, ours)
        sc = Scorecam(model, model_modifier=ReplaceToLinear(), clone=True)
        t = median_time(lambda: sc(CategoricalScore([1]), x, penultimate_layer=layer), 3, warm=1)
        row(case, "tf-keras-vis Scorecam", t, ours, "ratio to xcam scorecam")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a subset, under a minute")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--only", choices=["gradients", "perturbation", "keras"], help="one section")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.device == "cpu":
        torch.set_num_threads(2)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if args.device == "cuda" else None
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {dev}; medians", flush=True)
    runs = 5
    alex = torchvision.models.alexnet(num_classes=2).eval().to(dev)
    wanted = {args.only} if args.only else {"gradients", "perturbation", "keras"}
    for b in ([1] if args.quick else [1, 16]) if "gradients" in wanted else []:
        torch_gradients("alexnet", alex, "features.10", torch.randn(b, 3, 224, 224, device=dev), runs,
                        sync=sync)
    if not args.quick and "gradients" in wanted:
        vgg = torchvision.models.vgg16(num_classes=2).eval().to(dev)
        for b in (1, 16):
            torch_gradients("vgg16", vgg, "features.28", torch.randn(b, 3, 224, 224, device=dev), runs, sync=sync)
        del vgg
        r50 = torchvision.models.resnet50().eval().to(dev)
        for b in (1, 16):
            torch_gradients("resnet50", r50, "layer4", torch.randn(b, 3, 224, 224, device=dev), runs, sync=sync)
        del r50
        gc.collect()
    if args.device == "cpu" and "perturbation" in wanted:
        torch_perturbation(alex, "features.10", torch.randn(1, 3, 224, 224), 1 if args.quick else 5,
                           full=not args.quick)
    if "keras" in wanted and args.device == "cpu":
        keras_section([1] if args.quick else [1, 8], 3 if args.quick else 5, full=not args.quick)
    print("\n| case | implementation | median ms | ratio | |\n|---|---|---|---|---|")
    for case, name, seconds, ratio, note in ROWS:
        print(f"| {case} | {name} | {seconds * 1000:.1f} | {ratio.strip()} | {note} |")


if __name__ == "__main__":
    sys.exit(main())
