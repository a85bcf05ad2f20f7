"""Issue 19's gradient attributions: medians and ratios in one run, xcam vs its floor (the batched input
gradients it needs, bare torch.autograd.grad on the same rows in the same batches) vs captum 0.9.0, on a
random-weight ResNet-18, plus the number of model calls (forwards, each with or without a backward) each makes.

    python benchmarks/attributions_gradient.py [runs] [batch] [size]

Settings, the same on both sides: integratedgradients 50 Gauss-Legendre steps from a zero baseline (captum's
defaults; xcam adds its completeness check, one forward of x and x'); vargrad / squaregrad 25 noisy copies
(captum NoiseTunnel(Saliency(abs=False)) with nt_samples=25); gradientshap 5 samples over a set of 4 baselines;
gradientxinput and deconvnet one gradient per image (deconvnet's floor is the plain gradient: its ReLU hooks are
part of what is measured). xcam asks the probe for DEFAULT_BATCH (32) rows per call, so does the floor; captum
runs each method's rows in one pass (its default internal batch size).
"""

import sys
import warnings

import numpy as np
import torch
import torchvision

HERE = __import__("os").path.dirname(__import__("os").path.abspath(__file__))
sys.path[:0] = [HERE, __import__("os").path.dirname(HERE)]  # bench.py, then this checkout's xcam

import bench  # noqa: E402

import xcam_torch  # noqa: E402
from xcam.methods import pixel  # noqa: E402
from xcam.methods.registry import DEFAULT_BATCH  # noqa: E402

warnings.filterwarnings("ignore")


def floor(model, rows: torch.Tensor, classes: torch.Tensor, batch: int = DEFAULT_BATCH):
    """The input gradients of the class logits at ``rows``, ``batch`` rows per backward, nothing else: the rows
    as the probe hands them to the model for input gradients (a contiguous (B, C, H, W) tensor; channels last
    is slower for a few 64-pixel rows on this CPU: 71 ms against 31 ms for 2 rows of ResNet-18)."""
    def run():
        out = []
        for i in range(0, len(rows), batch):
            p = rows[i:i + batch].contiguous().requires_grad_(True)
            score = model(p).gather(1, classes[i:i + batch, None]).sum()
            out.append(torch.autograd.grad(score, p)[0])
        return torch.cat(out)
    return run


def count_calls(model, fn) -> int:
    """How many times the model's forward runs during ``fn()``."""
    calls = [0]
    handle = model.register_forward_pre_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    try:
        fn()
    finally:
        handle.remove()
    return calls[0]


def main(runs=3, n=2, size=64):
    import captum.attr as ca

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.bias.normal_(0, 0.2)
    x = torch.randn(n, 3, size, size)
    t = [1] * n
    cls = torch.tensor(t)
    bases = torch.randn(4, 3, size, size)
    xs = x.numpy()

    alphas = torch.tensor(0.5 * (1 + np.polynomial.legendre.leggauss(50)[0]), dtype=torch.float32)
    ig_rows = (alphas.view(-1, 1, 1, 1, 1) * x[None]).reshape(-1, 3, size, size)
    sigma = pixel.noise_sigma(type("X", (), {"model_inputs": xs, "options": {"noise": 0.15}})())
    noisy = torch.from_numpy((xs[None] + sigma[None] * np.random.default_rng(0).standard_normal(
        (25, *xs.shape)).astype(np.float32)).reshape(-1, 3, size, size))
    shap_rows = torch.randn(5 * n, 3, size, size)
    nt_std = float(sigma.mean())

    def ours(name, batch=None, **options):
        return lambda: xcam_torch.attribute(model, x, name, t, options=options, batch_size=batch)

    def nt(kind):
        return lambda: ca.NoiseTunnel(ca.Saliency(model)).attribute(x, nt_type=kind, nt_samples=25, stdevs=nt_std,
                                                                   target=t, abs=False)

    cases = {  # method: (options, floor rows, floor classes, captum)
        "integratedgradients": ({}, ig_rows, cls.repeat(50),
                                lambda: ca.IntegratedGradients(model).attribute(x, baselines=0.0, target=t)),
        "gradientxinput": ({}, x, cls,
                           lambda: ca.InputXGradient(model).attribute(x.clone().requires_grad_(), target=t)),
        "vargrad": ({}, noisy, cls.repeat(25), nt("vargrad")),
        "squaregrad": ({}, noisy, cls.repeat(25), nt("smoothgrad_sq")),
        "deconvnet": ({}, x, cls, lambda: ca.Deconvolution(model).attribute(x.clone().requires_grad_(), target=t)),
        "gradientshap": ({"baselines": bases.numpy()}, shap_rows, cls.repeat(5),
                         lambda: ca.GradientShap(model).attribute(x, baselines=bases, target=t)),
    }
    print(f"resnet18 (random weights) N={n} {size}px, class 1, {runs} runs (median), torch threads "
          f"{torch.get_num_threads()}; xcam/floor at {DEFAULT_BATCH} rows per call (xcam's default) and at all "
          "rows in one call (captum's default, the setting of the captum ratio)")
    print(f"{'method':<20} {'rows':>5} {'xcam32 ms':>10} {'floor32':>8} {'xcam1 ms':>9} {'floor1':>8} {'captum':>8} "
          f"{'x32/f32':>8} {'x1/f1':>6} {'x1/captum':>9} {'calls xcam32/1':>14} {'captum':>6}")
    for name, (options, rows, classes, anchor) in cases.items():
        entries = [("xcam32", ours(name, **options)), ("floor32", floor(model, rows, classes)),
                   ("xcam1", ours(name, len(rows), **options)), ("floor1", floor(model, rows, classes, len(rows))),
                   ("captum", anchor)]
        s = bench.interleaved(entries, runs=runs, warm=1)
        calls = [count_calls(model, fn) for _, fn in entries[::2]]
        print(f"{name:<20} {len(rows):5d} {s['xcam32'] * 1e3:10.1f} {s['floor32'] * 1e3:8.1f} {s['xcam1'] * 1e3:9.1f} "
              f"{s['floor1'] * 1e3:8.1f} {s['captum'] * 1e3:8.1f} {s['xcam32'] / s['floor32']:8.2f} "
              f"{s['xcam1'] / s['floor1']:6.2f} {s['xcam1'] / s['captum']:9.2f} {calls[0]:>7d}/{calls[1]:<6d} "
              f"{calls[2]:6d}", flush=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
