"""FullGrad and RefineCAM (issue 18): golden values by hand on NumPy probes and captures, closed forms on a one-conv
model, FullGrad's completeness on the TinyNet of both frameworks, agreement with pytorch-grad-cam and torchcam on
a random torchvision ResNet-18 at 64x64, and torch-vs-Keras parity on a ported conv/BN net."""

from collections import OrderedDict

import numpy as np
import pytest

import xcam
from xcam import Capture, XcamError, compute_cam
from xcam.methods.gradient import effective_bias, fullgrad_rows
from xcam.pipeline import layer_maps
from xcam.targets import Class


class BiasProbe:
    """A NumPy probe that hands over fixed FullGrad arrays (input gradient, bias layers) and counts its calls."""

    def __init__(self, input_gradient, layers):
        self.input_gradient, self.layers, self.calls = input_gradient, layers, []

    def bias_gradients(self, inputs, targets, samples=None):
        self.calls.append((len(inputs), samples))
        rows = slice(None) if samples is None else np.asarray(samples)
        return self.input_gradient[rows], [{**lay, "gradient": lay["gradient"][rows]} for lay in self.layers]


X = np.array([[[[1, 2], [3, 4]]]], np.float32)                                   # (1, 1, 2, 2)
IG = np.array([[[[1, -1], [0.5, 0]]]], np.float32)
CONV = {"layer": "conv", "gradient": np.array([[[[1, 3]], [[-1, -2]]]], np.float32), "bias": np.array([2, -1.0])}
BN = {"layer": "bn", "gradient": np.array([[[[1, 2], [3, 0]]]], np.float32), "gamma": np.array([2.0]),
      "beta": np.array([3.0]), "mean": np.array([1.0]), "var": np.array([3.0]), "eps": 1.0}


def pixel_cap(n=1):
    return Capture(activations=np.zeros((n, 1, 1, 1), np.float32), gradients=None,
                   scores=np.zeros((n, 2), np.float32), targets=np.zeros(n, np.int64))


def test_fullgrad_golden():
    # input:  |IG x| = [[1, 2], [1.5, 0]] -> / 2 = [[.5, 1], [.75, 0]]
    # conv (1 x 2 map, upsampled to 2 x 2 by repeating the row): |g b| ch0 [2, 6] -> [0, 1]; ch1 [1, 2] -> [0, 1]
    #       sum [0, 2] -> [[0, 2], [0, 2]]
    # bn: b = 3 - 1 * 2 / sqrt(3 + 1) = 2; |g b| = [[2, 4], [6, 0]] -> [[1/3, 2/3], [1, 0]]
    # total [[5/6, 11/3], [7/4, 2]] -> min-max over the image
    probe = BiasProbe(IG, [CONV, BN])
    out = compute_cam(pixel_cap(), "fullgrad", model_inputs=X, probe=probe, options={"eps": 0})
    total = np.array([[5 / 6, 11 / 3], [7 / 4, 2]])
    np.testing.assert_allclose(out[0], (total - total.min()) / (total.max() - total.min()), atol=1e-6)
    assert probe.calls == [(1, None)]
    np.testing.assert_allclose(effective_bias(BN), [2.0])
    # pytorch-grad-cam's rescale (m - min) / (max - min + 1e-7): the default; a near-zero channel stays near zero
    tiny = {"layer": "conv", "gradient": np.array([[[[0, 1e-9]]]], np.float32), "bias": np.array([1.0])}
    dflt = fullgrad_rows(X, IG, [tiny])[0]
    exact = fullgrad_rows(X, IG, [tiny], eps=0)[0]
    np.testing.assert_allclose(dflt, [[.5, 1 + 1e-9 / (1e-9 + 1e-7)], [.75, 1e-9 / (1e-9 + 1e-7)]], rtol=1e-4)
    np.testing.assert_allclose(exact, [[.5, 2], [.75, 1]], atol=1e-6)


def test_fullgrad_batches_rows_and_broadcasts_over_input_channels():
    x = np.concatenate([X, 2 * X, X[:, :, ::-1]]).repeat(2, axis=1)            # (3, 2, 2, 2)
    ig = np.concatenate([IG, IG, -IG]).repeat(2, axis=1)
    layers = [{**BN, "gradient": np.concatenate([BN["gradient"]] * 3)}]
    m = xcam.get_method("fullgrad")
    whole = m.fn(xcam.methods.MethodArgs(np.zeros((3, 1, 1, 1)), None, np.zeros(3), model_inputs=x,
                                         probe=BiasProbe(ig, layers), options={"eps": 1e-7},
                                         target=Class(np.zeros(3, np.int64))))
    probe = BiasProbe(ig, layers)
    rows = m.fn(xcam.methods.MethodArgs(np.zeros((3, 1, 1, 1)), None, np.zeros(3), model_inputs=x, probe=probe,
                                        options={"eps": 1e-7}, target=Class(np.zeros(3, np.int64)), batch_size=2))
    assert [c[0] for c in probe.calls] == [2, 1]
    np.testing.assert_array_equal(probe.calls[1][1], [2])
    np.testing.assert_allclose(rows, whole, atol=1e-7)
    assert whole.shape == x.shape and np.array_equal(whole[:, 0], whole[:, 1])   # one map, on every channel
    np.testing.assert_allclose(whole[1], whole[0], atol=1e-6)                  # rescale: the input's scale cancels


def test_fullgrad_bad_options_and_batch_norm_without_statistics_are_one_line():
    with pytest.raises(XcamError, match="eps=-1 is not valid"):
        compute_cam(pixel_cap(), "fullgrad", model_inputs=X, probe=BiasProbe(IG, [BN]), options={"eps": -1})
    with pytest.raises(XcamError, match="running mean and variance of batch normalization layer 'bn'"):
        effective_bias({**BN, "mean": None})
    with pytest.raises(XcamError, match="has no option 'eigen_smooth'"):
        compute_cam(pixel_cap(), "fullgrad", model_inputs=X, probe=BiasProbe(IG, [BN]),
                    options={"eigen_smooth": True})


# --------------------------------------------------------------------------------------------- RefineCAM, by hand

def signal_cap(a):
    a = np.asarray(a, np.float32).reshape(1, 1, -1)
    return Capture(activations=a, gradients=np.ones_like(a), scores=np.zeros((1, 2), np.float32),
                   targets=np.array([0]))


def test_refinecam_golden_product_at_the_input_and_at_the_largest_layer():
    # base gradcam with unit gradients: the maps are the activations: [1, 3] -> [0, 1]; [0, 1, 2, 4] -> [0, .25, .5, 1]
    caps = [signal_cap([1, 3]), signal_cap([0, 1, 2, 4])]
    # "input": each upsampled to 8 (half-pixel centres, edges clamped), then multiplied
    #   [0, 1] -> [0, 0, .125, .375, .625, .875, 1, 1]
    #   [0, .25, .5, 1] -> [0, .0625, .1875, .3125, .4375, .625, .875, 1]
    out = layer_maps(caps, "refinecam", (8,), options={"base": "gradcam"})
    want = np.array([0, 0, .125, .375, .625, .875, 1, 1]) * [0, .0625, .1875, .3125, .4375, .625, .875, 1]
    np.testing.assert_allclose(out[0], want / want.max(), atol=1e-6)
    # "largest_layer": [0, 1] -> 4: [0, .25, .75, 1]; product [0, .0625, .375, 1], then upsampled to 8
    out = layer_maps(caps, "refinecam", (8,), options={"base": "gradcam", "product_at": "largest_layer"})
    p = [0, .0625, .375, 1]
    want = [0, .25 * p[1], .75 * p[1], p[1] + .25 * (p[2] - p[1]), p[1] + .75 * (p[2] - p[1]),
            p[2] + .25 * (p[3] - p[2]), p[2] + .75 * (p[3] - p[2]), 1]
    np.testing.assert_allclose(out[0], want, atol=1e-6)
    # one layer: the base map itself, eigen_smooth included
    np.testing.assert_allclose(layer_maps(caps[1:], "refinecam", (8,), options={"base": "gradcam"}),
                               compute_cam(caps[1], "gradcam", (8,)), atol=1e-7)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    two = Capture(activations=a, gradients=rng.standard_normal(a.shape).astype(np.float32),
                  scores=np.zeros((1, 2), np.float32), targets=np.array([0]))
    smooth = {"eigen_smooth": True}
    want = compute_cam(two, "hirescam", (8, 8), options=smooth)
    assert want.max() == 1.0 and np.abs(want - compute_cam(two, "hirescam", (8, 8))).max() > 0.05
    np.testing.assert_allclose(layer_maps([two], "refinecam", (8, 8), options={**smooth, "base": "hirescam"}),
                               want, atol=1e-6)


def test_refinecam_bad_options_are_one_line():
    caps = [signal_cap([1, 3]), signal_cap([0, 1, 2, 4])]
    with pytest.raises(XcamError, match="base='scorecam' is not valid for refinecam; choose one of: gradcam"):
        layer_maps(caps, "refinecam", (8,), options={"base": "scorecam"})
    with pytest.raises(XcamError, match="product_at='output' is not valid; choose one of: input, largest_layer"):
        layer_maps(caps, "refinecam", (8,), options={"product_at": "output"})


# ------------------------------------------------------------------------------------------------ PyTorch models

def one_conv_model():
    """conv 1x1 (1 -> 2 channels, bias) -> flatten -> linear (8 -> 2): y = sum_kp v_kp (w_k x_p + b_k) + d."""
    import torch
    from torch import nn

    torch.manual_seed(3)
    return nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 2, 1)), ("flat", nn.Flatten()),
                                      ("fc", nn.Linear(8, 2))])).eval()


@pytest.mark.torch
def test_fullgrad_closed_form_on_one_conv():
    import torch

    import xcam_torch

    model = one_conv_model()
    w, b = model.conv.weight.detach().numpy().reshape(2), model.conv.bias.detach().numpy()
    v = model.fc.weight.detach().numpy()[1].reshape(2, 2, 2)                   # dy_1 / dA (k, i, j)
    x = torch.randn(1, 1, 2, 2)
    grad, layers = xcam_torch.probe(model, x, "conv").bias_gradients(x.numpy(), Class(np.array([1])))
    np.testing.assert_allclose(grad[0, 0], (w[:, None, None] * v).sum(0), rtol=1e-5)   # dy/dx_p = sum_k w_k v_kp
    assert [lay["layer"] for lay in layers] == ["conv"]
    np.testing.assert_allclose(layers[0]["gradient"][0], v, rtol=1e-6)
    np.testing.assert_allclose(layers[0]["bias"], b)

    def psi(m):
        m = np.abs(m)
        return (m - m.min()) / (m.max() - m.min())

    raw = psi(x.numpy()[0, 0] * (w[:, None, None] * v).sum(0)) + psi(v[0] * b[0]) + psi(v[1] * b[1])
    out = xcam_torch.cam(model, x, "conv", "fullgrad", 1, options={"eps": 0})
    np.testing.assert_allclose(out[0], (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-5)
    assert all(p.grad is None for p in model.parameters()) and not model.training


@pytest.mark.torch
def test_fullgrad_keeps_the_output_before_an_in_place_relu():
    # conv -> ReLU(inplace): the bias gradient is d y / d conv output = d y / d relu output * [conv output > 0]
    from kits import make_kit, torch_tiny

    kit = make_kit("torch")
    inplace = torch_tiny(0, inplace=True)
    import xcam_torch

    for model in (kit.model, inplace):
        grad, layers = xcam_torch.probe(model, kit.x_nchw, "conv2").bias_gradients(kit.x_nchw, Class(np.array([1, 0])))
        if model is kit.model:
            ref = (grad, layers)
    np.testing.assert_allclose(grad, ref[0], atol=1e-6)
    for a, b in zip(layers, ref[1]):
        np.testing.assert_allclose(a["gradient"], b["gradient"], atol=1e-6)


def test_fullgrad_is_complete_on_the_tiny_net(fw):
    # ReLU net, no implicit biases: y_c = sum dy/dx x + sum_l sum dy/dA_l b_l + (the linear head's bias)_c
    targets = np.array([1, 0])
    if fw.name == "torch":
        import xcam_torch as adapter
        head_bias = fw.model.fc.bias.detach().numpy()
    else:
        import xcam_tf as adapter
        head_bias = fw.model.get_layer("fc").bias.numpy()
    probe = adapter.probe(fw.model, fw.inputs, fw.conv2)
    grad, layers = probe.bias_gradients(fw.x_nchw, Class(targets))
    assert len(layers) == 2 and all(lay["gradient"].shape[1:] in ((4, 8, 8), (3, 8, 8)) for lay in layers)
    total = (grad * fw.x_nchw).sum((1, 2, 3)) + sum(
        (lay["gradient"] * effective_bias(lay).reshape(1, -1, 1, 1)).sum((1, 2, 3)) for lay in layers)
    logits = fw.predict(fw.x_nchw)[np.arange(2), targets]
    np.testing.assert_allclose(total + head_bias[targets], logits, rtol=1e-4, atol=1e-5)
    # several classes: one map per class, each as its own call
    both = fw.cam(fw.conv2, "fullgrad", classes=[0, 1])
    np.testing.assert_allclose(both[:, 1], fw.cam(fw.conv2, "fullgrad", 1), atol=1e-6)
    np.testing.assert_allclose(both[:, 0], fw.cam(fw.conv2, "fullgrad", 0), atol=1e-6)


# --------------------------------------------------------------------- anchors: a random ResNet-18, 64x64, batch 2

@pytest.fixture(scope="module")
def resnet():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random BatchNorm statistics: fresh ones have effective bias 0 (no bias terms)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(1 + 0.2 * torch.randn(c, generator=gen))
                m.bias.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_var.copy_(1 + 0.5 * torch.rand(c, generator=gen))
    return model, torch.randn(2, 3, 64, 64), [0, 2]


def clear_grads(model):
    for p in model.parameters():  # the anchors' loss.backward() leaves .grad in the parameters
        p.grad = None


@pytest.mark.torch
@pytest.mark.slow
def test_fullgrad_against_pytorch_grad_cam(resnet):
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    import xcam_torch

    model, x, targets = resnet
    ours = xcam_torch.cam(model, x, "layer4", "fullgrad", targets)
    with pgc.FullGrad(model=model, target_layers=[]) as cam:
        theirs = xcam.normalize_minmax(cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets]))
    clear_grads(model)
    assert ours.max() == 1.0 and ours.std() > 0.05
    assert np.abs(ours - theirs).max() <= 1e-4                       # measured 2.0e-6


@pytest.mark.torch
@pytest.mark.slow
def test_refinecam_against_pytorch_grad_cam_and_torchcam(resnet):
    pgc = pytest.importorskip("pytorch_grad_cam")
    tcm = pytest.importorskip("torchcam.methods")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    import xcam_torch

    model, x, targets = resnet
    names = ["layer2", "layer3", "layer4"]
    layers = [getattr(model, n) for n in names]
    wanted = [ClassifierOutputTarget(t) for t in targets]

    def pgc_refine(**kw):
        cam = pgc.RefineCAM(model, layers, **kw)
        try:
            return xcam.normalize_minmax(cam(x, wanted))
        finally:
            for base in cam.base_cam_per_layer:
                base.activations_and_grads.release()
            clear_grads(model)

    caps = xcam_torch.capture(model, x, names, targets)                  # one forward and backward for ours
    at_input = layer_maps(caps, "refinecam", (64, 64), options={"base": "gradcam"})
    at_largest = layer_maps(caps, "refinecam", (64, 64), options={"base": "gradcam", "product_at": "largest_layer"})
    np.testing.assert_allclose(xcam_torch.cam(model, x, names, "refinecam", targets, options={"base": "gradcam"}),
                               at_input, atol=1e-6)
    theirs = pgc_refine(base_method=pgc.GradCAM)
    assert at_input.max() == 1.0 and np.abs(at_input - theirs).max() <= 1e-4     # measured 2.4e-7
    with tcm.RefineCAM(model, names, input_shape=(3, 64, 64), base_method=tcm.GradCAM) as extractor:
        tc = extractor(targets, model(x))[0].detach().numpy()      # (2, 8, 8): layer2's size
    assert np.abs(at_largest - xcam.maps.finish(tc, (64, 64))).max() <= 1e-4    # measured 2.4e-6
    assert np.abs(at_input - at_largest).max() > 0.1                 # the two anchors differ (0.53)
    # the default base, Grad-CAM++ (pytorch-grad-cam's adds 1e-6 to alpha's denominator: 7.3e-3 apart, measured
    # once, not run here: each of its layers is a forward and backward of its own)
    assert layer_maps(caps, "refinecam", (64, 64)).max() == 1.0


# ------------------------------------------------------------------ torch vs Keras: a ported conv/BN net, 16x16

@pytest.mark.torch
@pytest.mark.tf
def test_fullgrad_and_refinecam_agree_across_frameworks():
    import torch
    from torch import nn

    pytest.importorskip("tensorflow")
    import xcam_tf
    import xcam_torch
    from xcam.app.models.porting_keras import build
    from xcam.app.models.porting_torch import describe

    torch.manual_seed(0)
    tmodel = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 4, 3, padding=1)), ("bn1", nn.BatchNorm2d(4)), ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)), ("conv2", nn.Conv2d(4, 6, 3, padding=1, bias=False)), ("bn2", nn.BatchNorm2d(6)),
        ("relu2", nn.ReLU()), ("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(6, 3))]))
    with torch.no_grad():
        for bn in (tmodel.bn1, tmodel.bn2):
            bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 1.5)
    tmodel.eval()
    kmodel = build(describe(tmodel, (3, 16, 16)), (16, 16, 3))
    x = torch.randn(2, 3, 16, 16)
    xk = x.permute(0, 2, 3, 1).numpy()
    t = xcam_torch.cam(tmodel, x, "relu2", "fullgrad", classes=[0, 2])
    k = xcam_tf.cam(kmodel, xk, "relu2", "fullgrad", classes=[0, 2])
    assert t.shape == (2, 2, 16, 16) and t.max() == 1.0
    np.testing.assert_allclose(t, k, atol=1e-4)
    grads = [xcam_tf.probe(kmodel, xk, "relu2").bias_gradients(x.numpy(), Class(np.array([0, 2])))[1],
             xcam_torch.probe(tmodel, x, "relu2").bias_gradients(x.numpy(), Class(np.array([0, 2])))[1]]
    assert [lay["layer"] for lay in grads[0]] == [lay["layer"] for lay in grads[1]] == ["conv1", "bn1", "bn2"]
    for lk, lt in zip(*grads):
        np.testing.assert_allclose(effective_bias(lk), effective_bias(lt), atol=1e-6)
    for opts in (None, {"product_at": "largest_layer", "base": "layercam"}):
        t = xcam_torch.cam(tmodel, x, ["relu1", "relu2"], "refinecam", [0, 2], options=opts)
        k = xcam_tf.cam(kmodel, xk, ["relu1", "relu2"], "refinecam", [0, 2], options=opts)
        assert t.max() == 1.0
        np.testing.assert_allclose(t, k, atol=1e-4)


def test_repeated_fullgrad_calls_leave_nothing_behind_and_trace_once(fw):
    # test_leaks.py checks one call of every method; here FullGrad's own compiled step and patched activations
    from test_leaks import keras_state, torch_state

    state = torch_state if fw.name == "torch" else keras_state
    first = fw.cam(fw.conv2, "fullgrad", [1, 0])
    before = state(fw.model)
    for _ in range(5):
        out = fw.cam(fw.conv2, "fullgrad", [1, 0])
    after = state(fw.model)
    assert after == before
    np.testing.assert_array_equal(out, first)
    if fw.name == "torch":
        assert after["hooks"] == 0 and after["grads"] == 0
    else:
        assert after["wrapped"] == 0 and any("bias_grad" in s for s in after["steps"])
        assert set(after["traces"].values()) == {1}
