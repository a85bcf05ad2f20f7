"""Forwards per image and wall time of each metric, xcam against the anchors at equal settings, in the same run:
torchcam (Average Drop / Increase in Confidence, deletion / insertion), pytorch-grad-cam (confidence change,
ROAD), captum (sensitivity_max) and Quantus (MPRT, when it can be imported). Every side
scores the same Grad-CAM maps of a torchvision ResNet-18 (random weights, seed 0) on the demo photos at 224x224;
forwards are counted by one hook on the model, so every model run of every side is counted the same way.

    python benchmarks/metric_speed.py [--images 2] [--arch resnet18] [--skip-slow] [--repeat 3] [--warmup 1]

With ``--repeat R`` every measurement is taken R times (the whole sequence, in turn) and the median reported. The
"forwards alone" column times xcam's forwards by themselves (the same number of images through xcam's probe
in batches of 64): the floor of a forward-bound metric at equal forwards.
"""

import argparse
import contextlib
import copy
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

import xcam_torch  # noqa: E402
from xcam import metrics as M  # noqa: E402
from xcam.app.inputs.images import load_image, preprocess  # noqa: E402
from xcam.app.jobs.sanity import model_randomization  # noqa: E402
from xcam.app.models.zoo import demo_images  # noqa: E402

PCTS = (10, 20, 30, 40, 50, 60, 70, 80, 90)


class Counter:
    """Counts the images run through the model (one forward hook on the whole model)."""

    def __init__(self, model):
        self.images = 0
        model.register_forward_hook(lambda m, args, out: setattr(self, "images", self.images + args[0].shape[0]))

    @contextlib.contextmanager
    def measure(self, out: dict):
        start_images, start, cpu = self.images, time.perf_counter(), time.process_time()
        yield
        out["seconds"] = time.perf_counter() - start
        out["cpu"] = time.process_time() - cpu  # every thread of this process: steadier than wall time under load
        out["images"] = self.images - start_images


class FixedMaps:
    """A torchcam CAM extractor that returns the given maps (so torchcam times its metric, not a CAM)."""

    def __init__(self, model, maps):
        self.model, self.maps = model, torch.from_numpy(maps)

    def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs):
        return [self.maps]

    def fuse_cams(self, cams):
        return cams[0]

    def _hooks_off(self):
        return contextlib.nullcontext()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2, help="demo photos to use (1 to 3; default 2)")
    p.add_argument("--arch", default="resnet18", help="torchvision architecture (default resnet18)")
    p.add_argument("--skip-slow", action="store_true", help="skip pytorch-grad-cam's and Quantus' ROAD")
    p.add_argument("--repeat", type=int, default=1, help="runs of every measurement, the median reported (default 1)")
    p.add_argument("--warmup", type=int, default=0, help="unrecorded runs of the whole sequence first (default 0)")
    args = p.parse_args()
    torch.manual_seed(0)
    model = getattr(torchvision.models, args.arch)(weights=None).eval()
    layer = {"resnet18": "layer4", "resnet50": "layer4", "alexnet": "features.11", "vgg16": "features.29"}[args.arch]
    images = preprocess([load_image(q) for q in demo_images()[:args.images]], (224, 224)).transpose(0, 3, 1, 2)
    images = np.ascontiguousarray(images)
    x = torch.from_numpy(images)
    counter = Counter(model)
    probe = xcam_torch.probe(model, images, layer)
    targets = probe.predict(images).argmax(axis=1)
    maps = xcam_torch.cam(model, x, layer, "gradcam", targets=targets.tolist())
    n = len(images)
    rows = {}  # (metric, side) -> [settings, [seconds per repeat], forwards per image, [forwards-alone seconds]]

    def forwards_alone(count):  # the same images through xcam's probe (as the metrics run them), 64 at a time
        xb = images[np.arange(count) % n]
        start = time.perf_counter()
        for a in range(0, count, 64):
            probe.predict(xb[a:a + 64])
        return time.perf_counter() - start

    warming = [False]

    def run(metric, side, settings, fn, floor=False):
        stats = {}
        with counter.measure(stats):
            fn()
        if warming[0]:
            return
        row = rows.setdefault((metric, side), [settings, [], stats["images"] / n, [], []])
        row[1].append(stats["seconds"])
        row[4].append(stats["cpu"])
        if floor:
            row[3].append(forwards_alone(stats["images"]))
        print(f"  {metric:<28} {side:<18} {stats['seconds']:8.2f} s {stats['cpu']:8.2f} s CPU "
              f"{stats['images'] / n:7.1f} forwards/image", flush=True)

    def sequence():
        def softmax_fn(z):
            return torch.softmax(z, -1)

        # deletion + insertion: 20 steps, zero substrate for both curves
        def ours_del_ins():
            scores = probe.predict(images)
            bare = probe.predict(np.zeros_like(images))  # the all-substrate images: one end of both curves
            M.deletion(probe.predict, images, maps, targets, step=0.05, substrate="zeros", scores=scores,
                       substrate_scores=bare)
            M.insertion(probe.predict, images, maps, targets, step=0.05, substrate="zeros", scores=scores,
                        substrate_scores=bare)

        def torchcam_del_ins():
            from torchcam.metrics import DeletionInsertionMetric

            metric = DeletionInsertionMetric(FixedMaps(model, maps), softmax_fn, steps=20, batch_size=64)
            metric.update(x, class_idx=targets.tolist())

        run("deletion + insertion", "xcam", "20 steps, zeros", ours_del_ins, floor=True)
        run("deletion + insertion", "torchcam", "20 steps, zeros", torchcam_del_ins)

        # Average Drop + Increase in Confidence
        def torchcam_conf():
            from torchcam.metrics import ClassificationMetric

            metric = ClassificationMetric(FixedMaps(model, maps), softmax_fn)
            metric.update(x, class_idx=targets.tolist())

        def pgc_conf():
            from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

            t = [ClassifierOutputSoftmaxTarget(int(c)) for c in targets]
            DropInConfidence()(x, maps, t, model)
            IncreaseInConfidence()(x, maps, t, model)

        run("AD + IC", "xcam", "softmax", lambda: M.confidence_metrics(probe.predict, images, maps, targets),
            floor=True)
        run("AD + IC", "torchcam", "softmax", torchcam_conf)
        run("AD + IC", "pytorch-grad-cam", "softmax", pgc_conf)

        # ROAD, MoRF and LeRF averaged over 10..90 %, noisy linear imputer (noise 0.01)
        def ours_road():
            for order in ("morf", "lerf"):
                M.road(probe.predict, images, maps, targets, order=order, percentiles=PCTS)

        def pgc_road():
            from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirstAverage, ROADMostRelevantFirstAverage
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

            t = [ClassifierOutputSoftmaxTarget(int(c)) for c in targets]
            ROADMostRelevantFirstAverage(list(PCTS))(x, maps, t, model)
            ROADLeastRelevantFirstAverage(list(PCTS))(x, maps, t, model)

        run("ROAD MoRF + LeRF", "xcam", "10..90 %, noise .01", ours_road, floor=True)
        if not args.skip_slow:
            run("ROAD MoRF + LeRF", "pytorch-grad-cam", "10..90 %, noise .01", pgc_road)

        # max-sensitivity: 10 samples, radius 0.02, the explanation = Grad-CAM for the same targets
        def explain_np(xb):
            reps = len(xb) // n
            return xcam_torch.cam(model, torch.from_numpy(np.ascontiguousarray(xb)), layer, "gradcam",
                                  targets=np.repeat(targets, reps).tolist())

        def captum_sens():
            from captum.metrics import sensitivity_max

            def explain_t(inputs):
                xb = inputs[0] if isinstance(inputs, tuple) else inputs
                return (torch.from_numpy(explain_np(xb.numpy())),)

            sensitivity_max(explain_t, x, n_perturb_samples=10, perturb_radius=0.02)

        run("max-sensitivity", "xcam", "10 samples, r .02", lambda: M.max_sensitivity(explain_np, images, maps=maps))
        run("max-sensitivity", "captum", "10 samples, r .02", captum_sens)

        # cascading randomization, every layer with parameters, Spearman per layer
        run("MPRT (cascade)", "xcam", "all layers, top-down",
            lambda: model_randomization(xcam_torch, model, x, layer, "gradcam", targets, maps=maps))
        quantus = None
        try:
            import quantus
        except ImportError as exc:
            print(f"  (Quantus skipped: {exc})")
        if quantus is not None:
            def explain_q(model, inputs, targets, **kwargs):
                xb = torch.from_numpy(np.asarray(inputs, dtype=np.float32))
                return xcam_torch.cam(model, xb, layer, "gradcam", targets=[int(t) for t in targets])[:, None]

            run("MPRT (cascade)", "Quantus", "all layers, top-down", lambda: quantus.MPRT(
                abs=False, normalise=False, disable_warnings=True)(model=copy.deepcopy(model), x_batch=images,
                                                                   y_batch=targets, a_batch=maps[:, None],
                                                                   explain_func=explain_q, device="cpu"))
            # (Quantus 0.6.0's ROAD is not timed: it ranks C x H x W features but imputes on an H x W mask, and fails
            # with an IndexError on 3-channel images)

    warming[0] = True
    for _ in range(args.warmup):  # first runs pay one-off costs (allocator, oneDNN primitives, imports)
        sequence()
    warming[0] = False
    for _ in range(max(1, args.repeat)):
        sequence()

    print(f"\n{args.arch}, {n} images 224x224, Grad-CAM maps of {layer}; CPU threads {torch.get_num_threads()}")
    print("| metric | settings | xcam s | xcam forwards/image | xcam forwards alone s | anchor | anchor s | "
          "anchor forwards/image | anchor time / xcam time | anchor CPU time / xcam CPU time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (metric, side), (settings, secs, fwd, _, cpus) in rows.items():
        if side == "xcam":
            continue
        _, o_secs, o_fwd, o_floor, o_cpus = rows[(metric, "xcam")]
        ours, theirs = statistics.median(o_secs), statistics.median(secs)
        floor = f"{statistics.median(o_floor):.2f}" if o_floor else "-"
        print(f"| {metric} | {settings} | {ours:.2f} | {o_fwd:.0f} | {floor} | {side} | {theirs:.2f} | {fwd:.0f} | "
              f"{theirs / ours:.1f}x | {statistics.median(cpus) / statistics.median(o_cpus):.1f}x |")
    print(f"(medians of {max(1, args.repeat)} runs after {args.warmup} unrecorded)")

if __name__ == "__main__":
    main()
