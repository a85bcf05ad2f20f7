"""Integrated Gradients, Gradient x Input, VarGrad, SquareGrad, DeconvNet and GradientSHAP: closed forms on
linear and quadratic NumPy models (the core functions, signed), DeconvNet by hand on a tiny ReLU net in both
frameworks, agreement with captum 0.9.0 on a random-weight resnet18 (32 px) on the same draws, and
torch-vs-Keras parity on ported weights."""

import math
import warnings

import cv2
import numpy as np
import pytest

import xcam
from xcam.errors import XcamError
from xcam.methods import attribution_gradient as ag
from xcam.methods.registry import MethodArgs, get_method, resolve_options
from xcam.targets import Class, as_target

RNG = np.random.default_rng(5)
W = RNG.standard_normal((2, 2, 5, 5)).astype(np.float32)            # 2 classes, C_in = 2, 5x5
Q = RNG.uniform(0.5, 1.5, (2, 2, 5, 5)).astype(np.float32)
BIAS = np.array([0.3, -0.7], np.float32)


class Model(xcam.contract.ScoresFromOutputs):
    """logits_k = <W_k, x> + b_k ("linear") or 1/2 <Q_k, x^2> ("quadratic"); counts rows and calls."""

    def __init__(self, inputs, kind="linear"):
        self.inputs, self.kind = inputs, kind
        self.grad_rows, self.grad_calls, self.score_rows, self.score_calls = 0, 0, 0, 0

    def predict(self, inputs):
        self.score_rows += len(inputs)
        self.score_calls += 1
        if self.kind == "linear":
            return (np.einsum("bchw,kchw->bk", inputs, W) + BIAS).astype(np.float32)
        return (0.5 * np.einsum("bchw,kchw->bk", inputs.astype(np.float64) ** 2, Q)).astype(np.float32)

    def input_gradients(self, inputs, targets, guided=False, samples=None):
        self.grad_rows += len(inputs)
        self.grad_calls += 1
        rows = np.arange(len(inputs)) if samples is None else np.asarray(samples)
        k = as_target(targets).class_indices(int(rows.max()) + 1)[rows]
        return (W[k] if self.kind == "linear" else Q[k] * inputs).astype(np.float32)


def args(name, inputs, classes, kind="linear", batch_size=None, **options):
    probe = Model(inputs, kind)
    classes = np.asarray(classes)
    return MethodArgs(np.zeros((len(inputs), 1, 1, 1), np.float32), None, classes, model_inputs=inputs,
                      probe=probe, options=resolve_options(get_method(name), options), target=Class(classes),
                      rank=2, batch_size=batch_size), probe


X = RNG.standard_normal((2, 2, 5, 5)).astype(np.float32)


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle"])
def test_ig_of_a_linear_model_is_x_minus_baseline_times_w(method):
    a, probe = args("integratedgradients", X, [0, 1], method=method, steps=7, batch_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # exact: no completeness warning
        out = ag.integrated_gradients(a)
    np.testing.assert_allclose(out, X * W[[0, 1]], rtol=1e-5, atol=1e-6)
    assert (probe.grad_rows, probe.grad_calls) == (14, 4)     # 7 steps x 2 inputs in batches of 4
    assert (probe.score_rows, probe.score_calls) == (4, 1)    # the completeness check: x and x', one call
    half = X.copy() * 0 + 0.5
    for baseline in (0.5, half[0], np.moveaxis(half, 1, -1), half):  # a value, (C,S), (N,S,C) and (N,C,S)
        a, _ = args("integratedgradients", X, [1, 0], method=method, steps=3, baseline=baseline)
        np.testing.assert_allclose(ag.integrated_gradients(a), (X - 0.5) * W[[1, 0]], rtol=1e-5, atol=1e-6)


def test_ig_trapezoid_blur_and_several_classes():
    # captum's trapezoid weights sum to 1 - 1/n: A = (1 - 1/n) (x - x') W on a linear model
    blur = np.stack([np.stack([cv2.GaussianBlur(c, (11, 11), 5, borderType=cv2.BORDER_REFLECT_101) for c in im])
                     for im in X])
    np.testing.assert_allclose(ag.gaussian_blur(X), blur, rtol=1e-5, atol=1e-6)
    a, _ = args("integratedgradients", X, [[0, 1], [1, 0]], method="riemann_trapezoid", steps=5, baseline="blur",
                tolerance=None)
    out = ag.integrated_gradients(a)
    assert out.shape == (2, 2, 2, 5, 5)
    want = (1 - 1 / 5) * (X - blur)[:, None] * W[[[0, 1], [1, 0]]]
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-6)


def test_ig_quadratic_closed_forms_and_the_completeness_warning():
    # f = 1/2 <Q, x^2>, baseline 0: the integrand alpha Q x^2 is linear in alpha, so Gauss-Legendre is exact
    # (A = Q x^2 / 2, complete) and the left Riemann sum gives (n - 1) / (2n) Q x^2
    a, _ = args("integratedgradients", X, [0, 1], kind="quadratic", steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(ag.integrated_gradients(a), 0.5 * Q[[0, 1]] * X ** 2, rtol=1e-5, atol=1e-6)
    a, _ = args("integratedgradients", X, [0, 1], kind="quadratic", steps=4, method="riemann_left")
    with pytest.warns(ag.CompletenessWarning, match=r"completeness error .* 25\.0% of f\(x\) - f\(x'\)") as rec:
        out = ag.integrated_gradients(a)
    np.testing.assert_allclose(out, 3 / 8 * Q[[0, 1]] * X ** 2, rtol=1e-5, atol=1e-6)
    gaps = 0.5 * (Q[[0, 1]] * X ** 2).reshape(2, -1).sum(1)
    np.testing.assert_allclose(rec[0].message.gaps, gaps, rtol=1e-5)
    np.testing.assert_allclose(rec[0].message.errors, -gaps / 4, rtol=1e-4)
    a, _ = args("integratedgradients", X, [0, 1], kind="quadratic", steps=4, method="riemann_left", tolerance=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # 25% is within a tolerance of 0.3
        ag.integrated_gradients(a)


def test_gradientxinput_is_x_times_w():
    a, probe = args("gradientxinput", X, [1, 0])
    np.testing.assert_allclose(ag.gradient_x_input(a), X * W[[1, 0]], rtol=1e-6)
    a, _ = args("gradientxinput", X, [[0, 1], [0, 1]], kind="quadratic")
    np.testing.assert_allclose(ag.gradient_x_input(a), Q[None, [0, 1]] * X[:, None] ** 2, rtol=1e-6)


def documented_noise(samples, inputs, noise=0.15, seed=0):
    """SmoothGrad's draws: default_rng(seed) N(0, 1) (samples, N, C, *S) times noise (max - min) per input."""
    e = np.random.default_rng(seed).standard_normal((samples, *inputs.shape)).astype(np.float32)
    sigma = (noise * np.ptp(inputs.reshape(len(inputs), -1), axis=1)).astype(np.float32).reshape(1, -1, 1, 1, 1)
    return sigma * e


def test_vargrad_and_squaregrad_closed_forms():
    a, probe = args("vargrad", X, [0, 1], samples=6, batch_size=5)
    np.testing.assert_allclose(ag.var_grad(a), 0.0, atol=1e-10)   # a linear model's gradient never varies
    assert (probe.grad_rows, probe.grad_calls) == (12, 3)
    a, _ = args("squaregrad", X, [0, 1], samples=6)
    np.testing.assert_allclose(ag.square_grad(a), np.broadcast_to(W[[0, 1]] ** 2, X.shape), rtol=1e-6)
    # quadratic: g_i = Q (x + e_i)
    e = documented_noise(6, X, 0.3, 2)
    g = Q[[0, 1]][None] * (X[None] + e)
    a, _ = args("squaregrad", X, [0, 1], kind="quadratic", samples=6, noise=0.3, seed=2)
    np.testing.assert_allclose(ag.square_grad(a), (g ** 2).mean(0), rtol=1e-5)
    a, _ = args("vargrad", X, [0, 1], kind="quadratic", samples=6, noise=0.3, seed=2)
    np.testing.assert_allclose(ag.var_grad(a), Q[[0, 1]] ** 2 * e.astype(np.float64).var(0), rtol=1e-4, atol=1e-9)
    a, _ = args("vargrad", X, [0, 1], kind="quadratic", samples=6, noise=0.3, seed=2, abs=True)
    np.testing.assert_allclose(ag.var_grad(a), np.abs(g).var(0), rtol=1e-4, atol=1e-9)


def test_gradientshap_closed_forms_on_its_draws():
    bases = RNG.standard_normal((3, 2, 5, 5)).astype(np.float32)
    a, probe = args("gradientshap", X, [0, 1], baselines=bases, n_samples=4, seed=3, batch_size=3)
    out = ag.gradient_shap(a)
    index, alpha, noise = ag.shap_draws(np.random.default_rng(3), 4, 2, 3, X.shape[1:], 0.0)
    assert noise is None and index.shape == alpha.shape == (4, 2) and len(np.unique(index)) > 1
    want = ((X[None] - bases[index]) * W[[0, 1]][None]).mean(0)    # linear: the gradient is W everywhere
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    assert (probe.grad_rows, probe.grad_calls) == (8, 3)
    # quadratic, with noise and the baseline set given channels last: g = Q (b + alpha (x~ - b))
    a, _ = args("gradientshap", X, [1, 0], kind="quadratic", baselines=np.moveaxis(bases, 1, -1), n_samples=4,
                stdevs=0.2, seed=4)
    index, alpha, noise = ag.shap_draws(np.random.default_rng(4), 4, 2, 3, X.shape[1:], 0.2)
    b, xt = bases[index], X[None] + noise
    al = alpha.reshape(4, 2, 1, 1, 1)
    want = ((xt - b) * Q[[1, 0]][None] * (b + al * (xt - b))).mean(0)
    np.testing.assert_allclose(ag.gradient_shap(a), want, rtol=1e-4, atol=1e-6)
    assert abs(float(np.std(noise)) - 0.2) < 0.03


def test_options_are_checked():
    cases = [("integratedgradients", {"method": "simpson"}, "method='simpson' is not valid"),
             ("integratedgradients", {"steps": 0}, "steps=0 is not valid"),
             ("integratedgradients", {"steps": 1, "method": "riemann_trapezoid"}, "steps=1 is not valid"),
             ("integratedgradients", {"baseline": "noise"}, "baseline='noise' is not valid"),
             ("integratedgradients", {"baseline": np.zeros((3, 3))}, r"baseline has shape \(3, 3\)"),
             ("integratedgradients", {"baseline": np.zeros((3, 2, 5, 5))}, "has 3 baselines"),
             ("integratedgradients", {"baseline": np.full((2, 5, 5), np.nan)}, "NaN"),
             ("gradientshap", {"stdevs": -1}, "stdevs=-1 is not valid"),
             ("gradientshap", {"n_samples": 2.5}, "n_samples=2.5 is not valid")]
    for name, options, message in cases:
        fn = {"integratedgradients": ag.integrated_gradients, "gradientshap": ag.gradient_shap}[name]
        with pytest.raises(XcamError, match=message):
            fn(args(name, X, [0, 1], **options)[0])


def test_registered_methods_return_the_signed_attribution():
    for name in ("integratedgradients", "gradientxinput", "vargrad", "squaregrad", "gradientshap"):
        m = get_method(name)
        assert m.kind == "pixel" and m.reduce == "absmax" and m.needs == "input gradients" and not m.relu
        a, _ = args(name, X, [0, 1], kind="quadratic", **({"tolerance": None} if "integrated" in name else {}))
        core = {"integratedgradients": ag.integrated_gradients, "gradientxinput": ag.gradient_x_input,
                "vargrad": ag.var_grad, "squaregrad": ag.square_grad, "gradientshap": ag.gradient_shap}[name]
        np.testing.assert_array_equal(m.fn(a), core(a))      # seeded: the same draws each call


# ---------------------------------------------------------------- DeconvNet by hand, both frameworks

W1 = RNG.standard_normal((4, 9)).astype(np.float32)   # 3x3 one-channel image -> 4 hidden units
W2 = RNG.standard_normal((2, 4)).astype(np.float32)


def mlp(fw):
    """identity 1x1 conv (a spatial layer for attribute's capture) -> flatten -> dense(9 -> 4) -> ReLU ->
    dense(4 -> 2), no biases; PyTorch (in-place ReLU module) or Keras (fused relu activation)."""
    if fw == "torch":
        torch = pytest.importorskip("torch")
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1, bias=False), torch.nn.Flatten(),
                                  torch.nn.Linear(9, 4, bias=False), torch.nn.ReLU(inplace=True),
                                  torch.nn.Linear(4, 2, bias=False)).eval()
        with torch.no_grad():
            net[0].weight.fill_(1.0)
            net[2].weight.copy_(torch.from_numpy(W1))
            net[4].weight.copy_(torch.from_numpy(W2))
        return net
    keras = pytest.importorskip("keras")
    inp = keras.Input((3, 3, 1))
    conv = keras.layers.Conv2D(1, 1, use_bias=False, name="c", kernel_initializer="ones")(inp)
    h = keras.layers.Dense(4, use_bias=False, activation="relu", name="d1")(keras.layers.Flatten()(conv))
    model = keras.Model(inp, keras.layers.Dense(2, use_bias=False, name="d2")(h))
    model.get_layer("d1").set_weights([W1.T])
    model.get_layer("d2").set_weights([W2.T])
    return model


@pytest.mark.parametrize("fw", [pytest.param("torch", marks=pytest.mark.torch),
                                pytest.param("tf", marks=[pytest.mark.tf, pytest.mark.torch])])
def test_deconvnet_and_guided_backprop_by_hand(fw):
    if fw == "tf":
        pytest.importorskip("tensorflow")
        import xcam_tf as module
    else:
        import xcam_torch as module
    x = RNG.standard_normal((2, 1, 3, 3)).astype(np.float32)
    inputs = x if fw == "torch" else np.moveaxis(x, 1, -1)
    hidden = x.reshape(2, 9) @ W1.T
    classes = [0, 1]
    net = mlp(fw)
    deconv = module.attribute(net, inputs, "deconvnet", classes)
    guided = module.attribute(net, inputs, "guidedbackprop", classes)
    if fw != "torch":
        deconv, guided = (np.moveaxis(v, -1, 1) for v in (deconv, guided))
    for n, k in enumerate(classes):
        g = W2[k]
        # deconvnet: max(g, 0) through the ReLU whatever its input; guided: [h > 0] max(g, 0)
        np.testing.assert_allclose(deconv[n].reshape(9), np.maximum(g, 0) @ W1, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(guided[n].reshape(9), ((hidden[n] > 0) * np.maximum(g, 0)) @ W1, rtol=1e-5,
                                   atol=1e-6)
    assert not np.allclose(deconv, guided)


# ---------------------------------------------------------------- captum 0.9.0 on resnet18, the same draws


def captum_comparisons():
    """[(name, xcam attribution, captum attribution)] on a random-weight resnet18, 2 images of 32 px, classes
    [1, 3]; BatchNorm shifted so that the network is not positively homogeneous (there IG = x * grad)."""
    import captum.attr as ca
    import torch
    import torchvision

    import xcam_torch

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.bias.normal_(0, 0.2)
                m.running_mean.normal_(0, 0.2)
    x = torch.randn(2, 3, 32, 32)
    t = [1, 3]
    out = []

    def ours(name, **options):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ag.CompletenessWarning)
            return xcam_torch.attribute(model, x, name, t, options=options)

    def ref(fn):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")              # captum's "Setting backward hooks on ReLU"
            return fn().detach().numpy()

    out.append(("IntegratedGradients", ours("integratedgradients", steps=8),
                ref(lambda: ca.IntegratedGradients(model).attribute(x, baselines=0.0, target=t, n_steps=8))))
    blur = torch.from_numpy(ag.gaussian_blur(x.numpy()))
    out.append(("IntegratedGradients trapezoid blur", ours("integratedgradients", steps=4, method="riemann_trapezoid",
                                                           baseline="blur"),
                ref(lambda: ca.IntegratedGradients(model).attribute(x, baselines=blur, target=t, n_steps=4,
                                                                    method="riemann_trapezoid"))))
    out.append(("InputXGradient", ours("gradientxinput"),
                ref(lambda: ca.InputXGradient(model).attribute(x.clone().requires_grad_(), target=t))))
    out.append(("Deconvolution", ours("deconvnet"),
                ref(lambda: ca.Deconvolution(model).attribute(x.clone().requires_grad_(), target=t))))

    # NoiseTunnel: captum's torch.normal hands back xcam's documented draws, image-major as captum repeats
    noise = documented_noise(4, x.numpy())
    drawn = torch.from_numpy(np.ascontiguousarray(noise.transpose(1, 0, 2, 3, 4).reshape(8, 3, 32, 32)))
    normal = torch.normal
    for nt, name, extra in [("vargrad", "vargrad", {"abs": False}), ("vargrad", "vargrad", {"abs": True}),
                            ("smoothgrad_sq", "squaregrad", {})]:
        torch.normal = lambda *a, **k: drawn.clone()
        try:
            r = ref(lambda nt=nt, extra=extra: ca.NoiseTunnel(ca.Saliency(model)).attribute(
                x, nt_type=nt, nt_samples=4, stdevs=1.0, target=t, abs=extra.get("abs", True)))
        finally:
            torch.normal = normal
        out.append((f"NoiseTunnel {nt} {extra}", ours(name, samples=4, **extra), r))

    # GradientShap: captum's draws recorded, then handed to xcam in its (sample, input) order
    bases = torch.randn(3, 3, 32, 32)
    seen = {}

    def record(fn, key):
        def wrapped(*a, **k):
            value = fn(*a, **k)
            seen[key] = value.numpy().copy() if torch.is_tensor(value) else np.asarray(value)
            return value
        return wrapped

    np.random.seed(0)        # captum draws from the global generators; seeded, so the run is repeatable
    torch.manual_seed(0)
    saved = np.random.choice, np.random.uniform, torch.normal
    np.random.choice, np.random.uniform, torch.normal = (record(saved[0], "index"), record(saved[1], "alpha"),
                                                         record(saved[2], "noise"))
    try:
        r = ref(lambda: ca.GradientShap(model).attribute(x, baselines=bases, n_samples=4, stdevs=0.1, target=t))
    finally:
        np.random.choice, np.random.uniform, torch.normal = saved
    draws = (seen["index"].reshape(2, 4).T, seen["alpha"].reshape(2, 4).T,
             seen["noise"].reshape(2, 4, 3, 32, 32).transpose(1, 0, 2, 3, 4))
    real = ag.shap_draws
    ag.shap_draws = lambda *a, **k: draws
    try:
        mine = ours("gradientshap", baselines=bases.numpy(), n_samples=4, stdevs=0.1)
    finally:
        ag.shap_draws = real
    out.append(("GradientShap", mine, r))
    return out


@pytest.fixture(scope="module")
def captum_pairs():
    """``captum_comparisons()``, once for the module."""
    for package in ("torch", "torchvision", "captum.attr"):
        pytest.importorskip(package)
    return captum_comparisons()


@pytest.mark.torch
def test_agree_with_captum_on_the_same_draws(captum_pairs):
    for name, mine, ref in captum_pairs:
        assert mine.shape == ref.shape == (2, 3, 32, 32) and mine.dtype == np.float32
        scale = np.abs(ref).max()
        assert scale > 0 and np.abs(mine - ref).max() <= 1e-4 * scale, (name, np.abs(mine - ref).max() / scale)
    ig, gxi = captum_pairs[0][1], captum_pairs[2][1]
    assert np.abs(ig - gxi).max() > 0.01 * np.abs(gxi).max()   # the network is not homogeneous: IG is not x * grad


# ---------------------------------------------------------------- torch vs Keras on ported weights

PARITY = {"integratedgradients": {"steps": 4, "method": "riemann_middle", "baseline": "blur"},
          "gradientxinput": {}, "vargrad": {"samples": 4, "abs": True}, "squaregrad": {"samples": 4},
          "deconvnet": {}, "gradientshap": {"n_samples": 4, "stdevs": 0.1}}


@pytest.mark.torch
@pytest.mark.tf
def test_torch_and_keras_agree_on_ported_weights():
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    from kits import make_kit

    tkit, kkit = make_kit("torch"), make_kit("tf")
    bases = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    for method, options in PARITY.items():
        topts, kopts = dict(options), dict(options)
        if method == "gradientshap":        # the baseline set in each framework's layout
            topts["baselines"], kopts["baselines"] = bases, np.moveaxis(bases, 1, -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ag.CompletenessWarning)
            t = tkit.module.attribute(tkit.model, tkit.inputs, method, classes=[0, 1], options=topts)
            k = kkit.module.attribute(kkit.model, kkit.inputs, method, classes=[0, 1], options=kopts)
            maps = tkit.cam(None, method, classes=[0, 1], options=topts)
        assert t.shape == (2, 2, 3, 8, 8) and k.shape == (2, 2, 8, 8, 3)
        scale = np.abs(t).max()
        assert scale > 0
        np.testing.assert_allclose(np.moveaxis(k, -1, 2), t, atol=1e-4 * scale, err_msg=method)
        assert maps.shape == (2, 2, 8, 8) and math.isclose(float(maps.max()), 1.0)


if __name__ == "__main__":  # the measured differences: python tests/test_attributions_gradient.py
    import torch  # noqa: F401  (before tensorflow)

    for name, mine, ref in captum_comparisons():
        print(f"{name:<44} max |xcam - captum| / max |captum| = {np.abs(mine - ref).max() / np.abs(ref).max():.1e}")
