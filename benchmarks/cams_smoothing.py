"""Issue 18's smoothing methods: medians and ratios in one run, xcam vs its floor vs the anchor, random-weight
ResNet-18 on CPU.

- smoothgradcampp vs torch-cam's SmoothGradCAMpp: floor = one forward on the inputs plus one forward and
  backward to the layer on all n x N noisy copies in one batch;
- sscam vs torch-cam's SSCAM: floor = one forward plus the n x C x N masked noisy inputs forwarded in batches
  of 64 (torch-cam: its default 32, and 64);
- aug_smooth (Grad-CAM) vs pytorch-grad-cam's aug_smooth: floor = six forwards and backwards to the layer.

    python benchmarks/cams_smoothing.py [runs] [smoothgradcampp|sscam|aug_smooth ...]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

import xcam_torch  # noqa: E402


def smoothgradcampp(model, x, runs):
    from torchcam.methods import SmoothGradCAMpp

    n, layer = 4, "layer4"
    module = dict(model.named_modules())[layer]
    noisy = x.repeat(n, 1, 1, 1) + 0.3 * torch.randn(n * len(x), *x.shape[1:])
    floor_grad = bench.torch_floor(model, module, noisy, 1)

    def floor():
        with torch.no_grad():
            model(x)
        floor_grad()

    def torchcam():
        with bench.quiet_stderr(), SmoothGradCAMpp(model, layer, num_samples=n, std=0.3,
                                                   input_shape=tuple(x.shape[1:])) as ext:
            model(x)
            ext([1] * len(x))

    entries = [("floor", floor),
               ("xcam smoothgradcampp", lambda: xcam_torch.cam(model, x, layer, "smoothgradcampp", 1)),
               ("xcam smoothgradcampp torchcam variant", lambda: xcam_torch.cam(
                   model, x, layer, "smoothgradcampp", 1, options={"variant": "torchcam"})),
               ("torch-cam SmoothGradCAMpp", torchcam)]
    return f"resnet18 B={len(x)} {x.shape[-1]}px {layer} n={n}", entries, "torch-cam SmoothGradCAMpp"


def sscam(model, x, runs):
    from torchcam.methods import SSCAM

    n, layer = 2, "layer3"
    module = dict(model.named_modules())[layer]
    with torch.no_grad():
        kept = {}
        handle = module.register_forward_hook(lambda m, a, out: kept.__setitem__("a", out))
        model(x)
        handle.remove()
    channels = kept["a"].shape[1]
    masked = x[:1].repeat(64, 1, 1, 1)
    total = n * channels * len(x)

    def floor():
        with torch.no_grad():
            model(x)
            for start in range(0, total, 64):
                model(masked[:min(64, total - start)])

    def torchcam(bs):
        def run():
            with SSCAM(model, layer, num_samples=n, std=2.0, batch_size=bs, input_shape=tuple(x.shape[1:])) as ext:
                with torch.no_grad():
                    scores = model(x)
                ext([1] * len(x), scores)
        return run

    opts = {"num_samples": n, "weighting": "logit-softmax", "normalize": "layer"}
    entries = [("floor", floor),
               ("xcam sscam", lambda: xcam_torch.cam(model, x, layer, "sscam", 1, options=opts)),
               ("torch-cam SSCAM batch 32", torchcam(32)),
               ("torch-cam SSCAM batch 64", torchcam(64))]
    return f"resnet18 B={len(x)} {x.shape[-1]}px {layer} n={n} C={channels}", entries, "torch-cam SSCAM batch 32"


def aug_smooth(model, x, runs):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = "layer4"
    module = dict(model.named_modules())[layer]
    one = bench.torch_floor(model, module, x, 1)
    targets = [ClassifierOutputTarget(1)] * len(x)

    def floor():
        for _ in range(6):
            one()

    def pgc():
        with bench.quiet_stderr(), GradCAM(model=model, target_layers=[module]) as cam:
            cam(input_tensor=x, targets=targets, aug_smooth=True)

    entries = [("floor (6 x fwd + grad)", floor),
               ("xcam gradcam aug_smooth", lambda: xcam_torch.cam(model, x, layer, "gradcam", 1,
                                                                  options={"aug_smooth": True})),
               ("pgc GradCAM aug_smooth", pgc)]
    return f"resnet18 B={len(x)} {x.shape[-1]}px {layer} aug", entries, "pgc GradCAM aug_smooth"


def main(runs=3, only=()):
    torch.manual_seed(0)
    torch.set_num_threads(2)
    np.random.seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; medians of {runs}", flush=True)
    for make, x in ((smoothgradcampp, torch.randn(2, 3, 64, 64)), (sscam, torch.randn(1, 3, 32, 32)),
                    (aug_smooth, torch.randn(2, 3, 64, 64))):
        if only and make.__name__ not in only:
            continue
        case, entries, anchor = make(model, x, runs)
        t = bench.interleaved(entries, runs=runs, warm=1)
        for name, _ in entries:
            bench.row(case, name, t[name], t[entries[0][0]])
        ours = entries[1][0]
        print(f"  {ours}: x{t[ours] / t[entries[0][0]]:.2f} the floor, x{t[ours] / t[anchor]:.2f} {anchor}",
              flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3, tuple(sys.argv[2:]))
