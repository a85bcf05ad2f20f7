"""Issue 19's perturbation attributions (Occlusion, Feature Ablation, LIME, KernelSHAP): medians and ratios in one
run, xcam vs its floor vs captum 0.9.0, on a random-weight ResNet-18, plus the number of forwards each makes.

    python benchmarks/attributions_perturbation.py [runs] [n] [size]

Settings, the same on every side, xcam's defaults: occlusion an 8-pixel window at stride 4 and a zero baseline
(captum sliding_window_shapes (3, 8, 8), strides (3, 4, 4)); featureablation, lime and kernelshap a 4 x 4 grid
of superpixels (captum's feature_mask the same labels), baseline 0; lime and kernelshap 25 samples (captum's
n_samples default). Every side scores 64 perturbed rows per forward (xcam's batch_size default; captum
perturbations_per_eval=64 / N, which counts copies per example; its Lime and KernelShap still take one
example at a time). Floor: the forwards the method needs and nothing else: the same perturbed rows,
made before timing, all images' rows together in batches of 64 (the fewest forwards), channels last without
autograd (as the probe hands them), plus one forward of the unperturbed images that occlusion and feature
ablation subtract from. All timed round-robin
(``bench.interleaved``).
"""

import os
import sys
import warnings

import numpy as np
import torch
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # bench.py, then this checkout's xcam

import bench  # noqa: E402

import xcam_torch  # noqa: E402

warnings.filterwarnings("ignore")
BATCH = 64


def floor(model, images: torch.Tensor, per_image: list, classes: list, base: bool):
    """Forwards of every image's perturbed rows (B, C, H, W) together, BATCH rows a forward whatever image they
    come from (the fewest forwards), channels last, no autograd, each row's class logit gathered; ``base``: one
    forward of the images themselves first."""
    rows = torch.cat(per_image).contiguous(memory_format=torch.channels_last)   # made before timing
    owner = torch.cat([torch.full((len(r),), c) for r, c in zip(per_image, classes, strict=True)])
    plain = images.contiguous(memory_format=torch.channels_last)
    first = torch.tensor(classes)

    def run():
        with torch.no_grad():
            if base:
                model(plain).gather(1, first[:, None]).numpy()
            for i in range(0, len(rows), BATCH):
                model(rows[i:i + BATCH]).gather(1, owner[i:i + BATCH, None]).numpy()
    return run


def rows_for(x: torch.Tensor, masks: np.ndarray, keep: bool) -> list:
    """Per image, its copies with each mask's region kept (``keep``) or set to 0."""
    m = torch.from_numpy(masks.astype(np.float32))[:, None]
    return [image[None] * (m if keep else 1 - m) for image in x]


def main(runs=5, n=2, size=64):
    import captum.attr as ca

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.randn(n, 3, size, size)
    t = [1] * n
    cls = torch.tensor(t)
    grid = np.minimum(np.arange(size) * 4 // size, 3)
    labels = grid[:, None] * 4 + grid[None, :]                                    # 4 x 4 superpixels
    segments = labels[None] == np.arange(16)[:, None, None]
    starts = range(0, size - 8 + 1, 4)
    windows = np.zeros((len(starts) ** 2, size, size), bool)
    for k, (r, c) in enumerate((r, c) for r in starts for c in starts):
        windows[k, r:r + 8, c:c + 8] = True
    rng = np.random.default_rng(0)
    samples = (rng.random((25, 16)) < 0.5).astype(np.float32)                   # LIME / KernelSHAP-sized sets
    sampled = samples @ segments.reshape(16, -1).astype(np.float32)
    sampled = sampled.reshape(25, size, size)
    mask_t = torch.tensor(labels)[None, None]

    per_eval = max(1, BATCH // n)   # captum's perturbations_per_eval counts copies per example: BATCH rows a forward

    def ours(name):
        return lambda: xcam_torch.attribute(model, x, name, t)

    cases = {  # method: (perturbed rows per image, floor adds the base forward, captum)
        "occlusion": (rows_for(x, windows, keep=False), True,
                      lambda: ca.Occlusion(model).attribute(x, sliding_window_shapes=(3, 8, 8),
                                                            strides=(3, 4, 4), baselines=0.0, target=cls,
                                                            perturbations_per_eval=per_eval)),
        "featureablation": (rows_for(x, segments, keep=False), True,
                            lambda: ca.FeatureAblation(model).attribute(x, feature_mask=mask_t, baselines=0.0,
                                                                        target=cls, perturbations_per_eval=per_eval)),
        "lime": (rows_for(x, sampled, keep=True), False,
                 lambda: ca.Lime(model).attribute(x, feature_mask=mask_t, baselines=0.0, target=cls, n_samples=25,
                                                  perturbations_per_eval=per_eval)),
        "kernelshap": (rows_for(x, sampled, keep=True), False,
                       lambda: ca.KernelShap(model).attribute(x, feature_mask=mask_t, baselines=0.0, target=cls,
                                                              n_samples=25, perturbations_per_eval=per_eval)),
    }
    print(f"resnet18 (random weights) N={n} {size}px, class 1, {runs} runs (median), torch threads "
          f"{torch.get_num_threads()}, {BATCH} rows per forward on every side")
    print(f"{'method':<16} {'rows':>5} {'xcam ms':>9} {'floor ms':>9} {'captum ms':>10} {'x/floor':>8} "
          f"{'x/captum':>9} {'forwards xcam':>14} {'floor':>6} {'captum':>7}")
    for name, (rows, base, anchor) in cases.items():
        entries = [("xcam", ours(name)), ("floor", floor(model, x, rows, [1] * n, base)), ("captum", anchor)]
        s = bench.interleaved(entries, runs=runs, warm=1)
        calls = [bench.count_calls(model, fn) for _, fn in entries]
        total = sum(len(r) for r in rows)
        print(f"{name:<16} {total:5d} {s['xcam'] * 1e3:9.1f} {s['floor'] * 1e3:9.1f} {s['captum'] * 1e3:10.1f} "
              f"{s['xcam'] / s['floor']:8.2f} {s['xcam'] / s['captum']:9.2f} {calls[0]:14d} {calls[1]:6d} "
              f"{calls[2]:7d}", flush=True)


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*args)
