"""Memory: peak RSS of a batch-64 ResNet50 Grad-CAM against the floor (each in a fresh process), and 1,000
consecutive calls on one model (RSS, hooks and compiled steps must stay flat).

    python benchmarks/memory.py            # both parts (about 3 minutes on 2 cores)
    python benchmarks/memory.py --quick    # batch 16 and 200 calls
"""

import argparse
import os
import resource
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(kind: str, batch: int) -> None:
    import torch
    import torchvision

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval()
    x = torch.randn(batch, 3, 224, 224)
    base = peak_rss_mb()
    if kind == "floor":
        kept = {}
        model.layer4.register_forward_hook(lambda m, a, out: kept.__setitem__("a", out))
        out = model(x)
        torch.autograd.grad(out[:, 1].sum(), kept["a"])
    else:
        import xcam_torch
        xcam_torch.cam(model, x, "layer4", "gradcam", 1)
    print(f"{base:.0f} {peak_rss_mb():.0f}")


def repeated_calls(calls: int) -> list[str]:
    import torch
    import torchvision

    import xcam_torch

    lines = []
    torch.manual_seed(0)
    model = torchvision.models.alexnet(num_classes=2).eval()
    x = torch.randn(1, 3, 224, 224)
    for i in range(calls):
        xcam_torch.cam(model, x, "features.10", "gradcam", 1)
        if i == 9:
            start = current_rss_mb()
    hooks = sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks)
                for m in model.modules())
    grads = sum(p.grad is not None for p in model.parameters())
    lines.append(f"torch AlexNet, {calls} calls: RSS after 10 calls {start:.0f} MB, after {calls} "
                 f"{current_rss_mb():.0f} MB; hooks left {hooks}; parameters with .grad {grads}")
    import keras

    import xcam_tf
    from xcam_tf._capture import _STEPS

    keras.utils.set_random_seed(0)
    kmodel = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Conv2D(16, 3, activation="relu", name="c1"),
                               keras.layers.Conv2D(32, 3, activation="relu", name="c2"),
                               keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    xk = torch.randn(1, 64, 64, 3).numpy()
    for i in range(calls):
        xcam_tf.cam(kmodel, xk, "c2", "gradcam", 1)
        if i == 9:
            start, steps = current_rss_mb(), len(_STEPS)
    wrapped = sum("call" in vars(layer) for layer in kmodel.layers)
    lines.append(f"Keras small CNN, {calls} calls: RSS after 10 calls {start:.0f} MB, after {calls} "
                 f"{current_rss_mb():.0f} MB; compiled steps {steps} -> {len(_STEPS)}; wrapped layers left {wrapped}")
    return lines


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return 0
    batch = 16 if args.quick else 64
    peaks = {}
    for kind in ("floor", "xcam"):
        out = subprocess.run([sys.executable, __file__, "--child", kind, str(batch)], capture_output=True,
                             text=True, check=True).stdout.split()
        peaks[kind] = (float(out[0]), float(out[1]))
        print(f"ResNet50 B={batch} {kind:<5}: peak RSS {peaks[kind][1]:.0f} MB (model loaded: {peaks[kind][0]:.0f} MB)",
              flush=True)
    ratio = peaks["xcam"][1] / peaks["floor"][1]
    extra = (peaks["xcam"][1] - peaks["xcam"][0]) / max(peaks["floor"][1] - peaks["floor"][0], 1)
    print(f"peak RSS xcam / floor = {ratio:.2f} (above the loaded model: {extra:.2f})")
    for line in repeated_calls(200 if args.quick else 1000):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
