"""ShapleyCAM speed (issue 18): xcam vs its floor (one forward + backward + one Hessian-vector product, by hand in
torch) vs pytorch-grad-cam's ShapleyCAM, medians of a few runs on a random resnet18 at 64x64, in one run.
``python benchmarks/cams_adapters.py [repeats]``"""

import sys
import time

import numpy as np
import torch
import torchvision
from pytorch_grad_cam import ShapleyCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

import xcam_torch
from xcam.targets import Class


def median_s(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main(repeats=5):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(4, 3, 64, 64)
    classes = [1, 2, 3, 4]

    def floor():
        box = {}
        h = model.layer4.register_forward_hook(lambda m, a, o: box.update(a=o))
        try:
            p = torch.softmax(model(x), 1)[torch.arange(4), torch.tensor(classes)].sum()
            (g,) = torch.autograd.grad(p, box["a"], create_graph=True)
            torch.autograd.grad(g, box["a"], grad_outputs=box["a"].detach())
        finally:
            h.remove()

    def ours():
        xcam_torch.cam(model, x, "layer4", "shapleycam", Class(classes, "probability"))

    def anchor():
        ShapleyCAM(model, [model.layer4])(x, targets=[ClassifierOutputSoftmaxTarget(c) for c in classes])

    t_floor, t_ours, t_anchor = (median_s(f, repeats) for f in (floor, ours, anchor))
    print(f"shapleycam  floor {t_floor * 1e3:.1f} ms  xcam {t_ours * 1e3:.1f} ms  pytorch-grad-cam "
          f"{t_anchor * 1e3:.1f} ms  xcam/floor {t_ours / t_floor:.2f}  xcam/anchor {t_ours / t_anchor:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
