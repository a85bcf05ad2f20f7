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
    return interleaved([("one", fn)], runs, warm, sync)["one"]


def interleaved(entries, runs=5, warm=2, sync=None):
    """Median seconds for each (name, fn), timed round-robin: every round runs each fn once, so drift of the
    machine (frequency, other load) falls on all of them alike rather than on whoever ran first."""
    for _ in range(warm):
        for _, fn in entries:
            fn()
    times = {name: [] for name, _ in entries}
    for _ in range(runs):
        for name, fn in entries:
            if sync:
                sync()
            start = time.perf_counter()
            fn()
            if sync:
                sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def count_calls(model, fn) -> int:
    """How many times the model's forward runs during ``fn()``."""
    calls = [0]
    handle = model.register_forward_pre_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    try:
        fn()
    finally:
        handle.remove()
    return calls[0]


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
    entries = [("floor: fwd + autograd.grad to layer", torch_floor(model, module, x, 1))]
    entries += [(f"xcam {m}", lambda m=m: xcam_torch.cam(model, x, layer, m, 1)) for m in GRADIENT_METHODS]
    entries.append(("xcam gradcam classes=[0,1]", lambda: xcam_torch.cam(model, x, layer, "gradcam",
                                                                           classes=[0, 1])))
    if anchors:
        from captum.attr import LayerAttribution, LayerGradCam
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
        from torchcam.methods import GradCAM as TorchcamGradCAM

        targets = [ClassifierOutputTarget(1)] * x.shape[0]
        lgc = LayerGradCam(model, module)

        def pgc_run():  # built per call: its hooks must not fire during the other implementations' runs
            with GradCAM(model=model, target_layers=[module]) as pgc:
                pgc(input_tensor=x, targets=targets)

        def torchcam_run():
            with TorchcamGradCAM(model, layer) as extractor:
                extractor([1] * x.shape[0], model(x))

        def captum_run():
            a = lgc.attribute(x, target=1, relu_attributions=True)
            LayerAttribution.interpolate(a, tuple(x.shape[-2:]), interpolate_mode="bilinear")

        entries += [("pytorch-grad-cam GradCAM (incl. hook setup)", pgc_run),
                    ("torchcam GradCAM", torchcam_run), ("captum LayerGradCam", captum_run)]
    t = interleaved(entries, runs, sync=sync)
    model.zero_grad(set_to_none=True)  # pytorch-grad-cam leaves .grad in the parameters
    floor, ours = t[entries[0][0]], t["xcam gradcam"]
    for label, seconds in t.items():
        if label.startswith("xcam") and "classes" not in label or label.startswith("floor"):
            row(case, label, seconds, floor)
        elif "classes" in label:
            row(case, label, seconds, ours, "ratio to one class")
        else:
            row(case, label, seconds, ours, "ratio to xcam gradcam")


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
        score = CategoricalScore([1] * b)
        gc_tool = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)
        lc_tool = Layercam(model, model_modifier=ReplaceToLinear(), clone=True)
        entries = [("floor: compiled tape to layer", lambda: bare(x))]
        entries += [(f"xcam {m}", lambda m=m: xcam_tf.cam(model, x, layer, m, 1)) for m in GRADIENT_METHODS]
        entries += [("xcam gradcam classes=[0,1]", lambda: xcam_tf.cam(model, x, layer, "gradcam", classes=[0, 1])),
                    ("tf-keras-vis Gradcam", lambda: gc_tool(score, x.numpy(), penultimate_layer=layer)),
                    ("tf-keras-vis Layercam", lambda: lc_tool(score, x.numpy(), penultimate_layer=layer))]
        t = interleaved(entries, runs)
        floor = t[entries[0][0]]
        for label, seconds in t.items():
            if label.startswith("tf-keras-vis"):
                mine = "xcam layercam" if "Layercam" in label else "xcam gradcam"
                row(case, label, seconds, t[mine], f"ratio to {mine}")
            elif "classes" in label:
                row(case, label, seconds, t["xcam gradcam"], "ratio to one class")
            else:
                row(case, label, seconds, floor)
    if full:
        from tf_keras_vis.scorecam import Scorecam
        x = np.random.RandomState(0).randn(1, 224, 224, 3).astype("float32")
        case = f"keras VGG16 B=1 {layer} (Score-CAM)"
        # one timed run each after a warm-up (each takes over a minute): 512 masked forwards of VGG16
        ours = median_time(lambda: xcam_tf.cam(model, x, layer, "scorecam", 1), 1, warm=1)
        row(case, "xcam scorecam", ours, ours)
        sc = Scorecam(model, model_modifier=ReplaceToLinear(), clone=True)
        t = median_time(lambda: sc(CategoricalScore([1]), x, penultimate_layer=layer, batch_size=64), 1, warm=0)
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
