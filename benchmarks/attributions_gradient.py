"""Issue 19's gradient attributions: medians and ratios in one run, xcam vs its floor (the batched input
gradients it needs, bare torch.autograd.grad on the same rows in the same batches) vs captum 0.9.0, on a
random-weight ResNet-18, plus the number of model calls (forwards, each with or without a backward) each makes.

    python benchmarks/attributions_gradient.py [runs] [batch] [size]
    python benchmarks/attributions_gradient.py tf [runs] [batch] [size]     (Keras: xcam_tf vs its floor)

Settings, the same on both sides: integratedgradients 50 Gauss-Legendre steps from a zero baseline (captum's
defaults; xcam adds its completeness check, one forward of x and x' without autograd, which its floor includes;
the row "tolerance=None" skips it, captum's like for like); vargrad / squaregrad / smoothgrad 25 noisy
copies (captum NoiseTunnel(Saliency(abs=False)) with nt_samples=25); gradientshap 5 samples over a set of 4
baselines; gradientxinput, saliency (captum Saliency(abs=False)), deconvnet and guidedbackprop one gradient per
image (the floor of deconvnet and guidedbackprop is the plain gradient: their ReLU hooks are part of what is
measured). xcam asks the probe for DEFAULT_BATCH (32) rows per call, so does the floor; captum runs each method's
rows in one pass (its default internal batch size). Model calls: forwards (a forward pre-hook on the model).
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


def check_forward(model, rows: torch.Tensor):
    """Integrated Gradients' completeness check: one forward of the inputs and their baselines without
    autograd, channels last (as the probe's scores)."""
    def run():
        with torch.no_grad():
            return model(rows.contiguous(memory_format=torch.channels_last))
    return run


def floor(model, rows: torch.Tensor, classes: torch.Tensor, batch: int = DEFAULT_BATCH, then=None):
    """The input gradients of the class logits at ``rows``, ``batch`` rows per backward, nothing else: the rows
    as the probe hands them to the model for input gradients (a contiguous (B, C, H, W) tensor; channels last
    is slower for a few 64-pixel rows on this CPU: 71 ms against 31 ms for 2 rows of ResNet-18)."""
    def run():
        out = []
        for i in range(0, len(rows), batch):
            p = rows[i:i + batch].contiguous().requires_grad_(True)
            score = model(p).gather(1, classes[i:i + batch, None]).sum()
            out.append(torch.autograd.grad(score, p)[0])
        if then is not None:  # a forward the method also needs (the completeness check)
            then()
        return torch.cat(out)
    return run


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

    ig = lambda: ca.IntegratedGradients(model).attribute(x, baselines=0.0, target=t)  # noqa: E731
    check = check_forward(model, torch.cat([x, torch.zeros_like(x)]))
    cases = {  # method: (options, floor rows, floor classes, captum[, a forward the floor adds])
        "integratedgradients": ({}, ig_rows, cls.repeat(50), ig, check),
        "integratedgradients tolerance=None": ({"tolerance": None}, ig_rows, cls.repeat(50), ig),
        "gradientxinput": ({}, x, cls,
                           lambda: ca.InputXGradient(model).attribute(x.clone().requires_grad_(), target=t)),
        "vargrad": ({}, noisy, cls.repeat(25), nt("vargrad")),
        "squaregrad": ({}, noisy, cls.repeat(25), nt("smoothgrad_sq")),
        "deconvnet": ({}, x, cls, lambda: ca.Deconvolution(model).attribute(x.clone().requires_grad_(), target=t)),
        "gradientshap": ({"baselines": bases.numpy()}, shap_rows, cls.repeat(5),
                         lambda: ca.GradientShap(model).attribute(x, baselines=bases, target=t)),
        "saliency": ({}, x, cls, lambda: ca.Saliency(model).attribute(x, target=t, abs=False)),
        "smoothgrad": ({}, noisy, cls.repeat(25), nt("smoothgrad")),
        "guidedbackprop": ({}, x, cls, lambda: ca.GuidedBackprop(model).attribute(x.clone().requires_grad_(),
                                                                                target=t)),
    }
    print(f"resnet18 (random weights) N={n} {size}px, class 1, {runs} runs (median), torch threads "
          f"{torch.get_num_threads()}; xcam/floor at {DEFAULT_BATCH} rows per call (xcam's default) and at all "
          "rows in one call (captum's default, the setting of the captum ratio)")
    print(f"{'method':<34} {'rows':>5} {'xcam32 ms':>10} {'floor32':>8} {'xcam1 ms':>9} {'floor1':>8} {'captum':>8} "
          f"{'x32/f32':>8} {'x1/f1':>6} {'x1/captum':>9} {'calls xcam32/1':>14} {'captum':>6}")
    for label, (options, rows, classes, anchor, *then) in cases.items():
        name, then = label.split()[0], then[0] if then else None
        entries = [("xcam32", ours(name, **options)), ("floor32", floor(model, rows, classes, then=then)),
                   ("xcam1", ours(name, len(rows), **options)),
                   ("floor1", floor(model, rows, classes, len(rows), then)), ("captum", anchor)]
        s = bench.interleaved(entries, runs=runs, warm=1)
        calls = [bench.count_calls(model, fn) for _, fn in entries[::2]]
        print(f"{label:<34} {len(rows):5d} {s['xcam32'] * 1e3:10.1f} {s['floor32'] * 1e3:8.1f} {s['xcam1'] * 1e3:9.1f} "
              f"{s['floor1'] * 1e3:8.1f} {s['captum'] * 1e3:8.1f} {s['xcam32'] / s['floor32']:8.2f} "
              f"{s['xcam1'] / s['floor1']:6.2f} {s['xcam1'] / s['captum']:9.2f} {calls[0]:>7d}/{calls[1]:<6d} "
              f"{calls[2]:6d}", flush=True)


def main_tf(runs=3, n=2, size=64):
    """Keras: xcam_tf.attribute vs its floor (one compiled forward + GradientTape per batch of rows, the rows made
    as tensors before timing, the gradients fetched as NumPy; Integrated Gradients' floor adds the completeness
    forward) on a random-weight Keras ResNet50, the same settings and rows as the PyTorch table (no captum here)."""
    import keras
    import tensorflow as tf

    import xcam_tf
    from xcam_tf import _probe

    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3), classes=10,
                                        classifier_activation=None)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, size, size, 3)).astype(np.float32)
    t = [1] * n
    bases = rng.standard_normal((4, size, size, 3)).astype(np.float32)
    shap_rows = rng.standard_normal((5 * n, size, size, 3)).astype(np.float32)
    alphas = (0.5 * (1 + np.polynomial.legendre.leggauss(50)[0])).astype(np.float32)
    ig_rows = (alphas.reshape(-1, 1, 1, 1, 1) * x[None]).reshape(-1, size, size, 3)
    xs = np.ascontiguousarray(np.moveaxis(x, -1, 1))
    sigma = pixel.noise_sigma(type("X", (), {"model_inputs": xs, "options": {"noise": 0.15}})())
    noisy = xs[None] + sigma[None] * np.random.default_rng(0).standard_normal((25, *xs.shape)).astype(np.float32)
    noisy = np.moveaxis(noisy, 2, -1).reshape(-1, size, size, 3)

    @tf.function(input_signature=[tf.TensorSpec((None, size, size, 3)), tf.TensorSpec((None,), tf.int32)])
    def grads(p, c):
        with tf.GradientTape() as tape:
            tape.watch(p)
            score = tf.reduce_sum(tf.gather(model(p, training=False), c, axis=1, batch_dims=1))
        return tape.gradient(score, p)

    forward = tf.function(lambda p: model(p, training=False))
    check = tf.constant(np.concatenate([x, np.zeros_like(x)]))   # Integrated Gradients' completeness forward

    def tf_floor(rows, batch, then=False):
        cut = [(tf.constant(rows[i:i + batch]), tf.constant([1] * len(rows[i:i + batch]), tf.int32))
               for i in range(0, len(rows), batch)]

        def run():
            out = np.concatenate([grads(p, c).numpy() for p, c in cut])
            if then:
                forward(check).numpy()
            return out
        return run

    calls = {"n": 0}
    original = _probe.Probe.input_gradients

    def counted(self, *args, **kwargs):
        calls["n"] += 1
        return original(self, *args, **kwargs)

    _probe.Probe.input_gradients = counted
    cases = {"integratedgradients": ({}, ig_rows), "gradientxinput": ({}, x), "vargrad": ({}, noisy),
             "squaregrad": ({}, noisy), "deconvnet": ({}, x), "gradientshap": ({"baselines": bases}, shap_rows),
             "saliency": ({}, x), "smoothgrad": ({}, noisy), "guidedbackprop": ({}, x)}
    print(f"Keras ResNet50 (random weights) N={n} {size}px, class 1, {runs} runs (median); xcam/floor at "
          f"{DEFAULT_BATCH} rows per call and at all rows in one call")
    print(f"{'method':<20} {'rows':>5} {'xcam32 ms':>10} {'floor32':>8} {'xcam1 ms':>9} {'floor1':>8} "
          f"{'x32/f32':>8} {'x1/f1':>6} {'grad calls xcam32/1':>20}")
    for name, (options, rows) in cases.items():
        def ours(batch=None, name=name, options=options):
            return lambda: xcam_tf.attribute(model, x, name, t, options=options, batch_size=batch)
        then = name == "integratedgradients"
        entries = [("xcam32", ours()), ("floor32", tf_floor(rows, DEFAULT_BATCH, then)), ("xcam1", ours(len(rows))),
                   ("floor1", tf_floor(rows, len(rows), then))]
        s = bench.interleaved(entries, runs=runs, warm=1)
        counts = []
        for _, fn in entries[::2]:
            calls["n"] = 0
            fn()
            counts.append(calls["n"])
        print(f"{name:<20} {len(rows):5d} {s['xcam32'] * 1e3:10.1f} {s['floor32'] * 1e3:8.1f} {s['xcam1'] * 1e3:9.1f} "
              f"{s['floor1'] * 1e3:8.1f} {s['xcam32'] / s['floor32']:8.2f} {s['xcam1'] / s['floor1']:6.2f} "
              f"{counts[0]:>10d}/{counts[1]:<9d}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["tf"]:
        main_tf(*(int(a) for a in sys.argv[2:5]))
    else:
        main(*(int(a) for a in sys.argv[1:4]))
