"""FullGrad and RefineCAM (issue 18): medians and ratios in one run, on a random-weight ResNet-18 (random BatchNorm
statistics, so every bias term is non-zero).

FullGrad: xcam vs its floor (one forward with every conv / BN output kept, and one torch.autograd.grad to the
input and those outputs) vs pytorch-grad-cam's FullGrad. RefineCAM (layer2, layer3, layer4, Grad-CAM++ base): xcam
vs its floor (one forward + autograd.grad to the three layers) vs pytorch-grad-cam's and torchcam's RefineCAM.

    python benchmarks/cams_fullgrad.py [runs] [batch] [size]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

import xcam_torch  # noqa: E402

LAYERS = ["layer2", "layer3", "layer4"]


def resnet18():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(1 + 0.2 * torch.randn(c, generator=gen))
                m.bias.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_var.copy_(1 + 0.5 * torch.rand(c, generator=gen))
    return model


def fullgrad_floor(model, x, target):
    biased = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d))
              and m.bias is not None]

    def run():
        kept = []
        handles = [m.register_forward_hook(lambda mod, a, out: kept.append(out) or out.clone()) for m in biased]
        try:
            xg = x.detach().requires_grad_(True)
            out = model(xg)
            torch.autograd.grad(out[:, target].sum(), [xg] + kept)
        finally:
            for h in handles:
                h.remove()
    return run


def layers_floor(model, modules, x, target):
    def run():
        kept = []
        handles = [m.register_forward_hook(lambda mod, a, out: kept.append(out)) for m in modules]
        try:
            out = model(x)
            torch.autograd.grad(out[:, target].sum(), kept)
        finally:
            for h in handles:
                h.remove()
    return run


def main(runs=5, batch=4, size=112):
    from pytorch_grad_cam import FullGrad, RefineCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam.methods import RefineCAM as TorchcamRefineCAM

    model = resnet18()
    x = torch.randn(batch, 3, size, size)
    targets = [ClassifierOutputTarget(1)] * batch
    modules = [getattr(model, n) for n in LAYERS]

    def pgc_fullgrad():
        with bench.quiet_stderr(), FullGrad(model=model, target_layers=[]) as cam:
            cam(input_tensor=x, targets=targets)
        model.zero_grad(set_to_none=True)

    def pgc_refine():
        with bench.quiet_stderr():
            cam = RefineCAM(model, modules)
            cam(x, targets)
            for base in cam.base_cam_per_layer:
                base.activations_and_grads.release()
        model.zero_grad(set_to_none=True)

    def torchcam_refine():
        with TorchcamRefineCAM(model, LAYERS, input_shape=(3, size, size)) as extractor:
            extractor([1] * batch, model(x))
        model.zero_grad(set_to_none=True)

    entries = [("floor fullgrad", fullgrad_floor(model, x, 1)),
               ("xcam fullgrad", lambda: xcam_torch.cam(model, x, "layer4", "fullgrad", 1)),
               ("pgc FullGrad", pgc_fullgrad),
               ("floor refinecam", layers_floor(model, modules, x, 1)),
               ("xcam refinecam", lambda: xcam_torch.cam(model, x, LAYERS, "refinecam", 1)),
               ("pgc RefineCAM", pgc_refine),
               ("torchcam RefineCAM", torchcam_refine)]
    t = bench.interleaved(entries, runs=runs, warm=1)
    case = f"resnet18 B={batch} {size}px"
    for name, _ in entries:
        bench.row(case, name, t[name], t["floor fullgrad" if "ull" in name else "floor refinecam"])
    print(f"fullgrad: xcam / floor {t['xcam fullgrad'] / t['floor fullgrad']:.2f}, "
          f"xcam / pytorch-grad-cam {t['xcam fullgrad'] / t['pgc FullGrad']:.2f}")
    print(f"refinecam: xcam / floor {t['xcam refinecam'] / t['floor refinecam']:.2f}, "
          f"xcam / pytorch-grad-cam {t['xcam refinecam'] / t['pgc RefineCAM']:.2f}, "
          f"xcam / torchcam {t['xcam refinecam'] / t['torchcam RefineCAM']:.2f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
