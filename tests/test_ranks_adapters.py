"""Signals (Conv1d / Conv1D) and volumes (Conv3d / Conv3D) through both adapters: the same ported weights give
the same maps for every method, a 3-D Grad-CAM equals one written by hand with torch autograd and torch's
trilinear interpolation, and inputs of the wrong rank are one-line errors."""

from collections import OrderedDict

import numpy as np
import pytest

import xcam
from xcam import XcamError

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import xcam_torch  # noqa: E402
from xcam.layers import default_layer, format_table  # noqa: E402

CONV = {1: nn.Conv1d, 3: nn.Conv3d}
POOL = {1: nn.AdaptiveAvgPool1d, 3: nn.AdaptiveAvgPool3d}
SPATIAL = {1: (12,), 3: (4, 6, 5)}
ALL = [m for m in xcam.method_names() if not xcam.get_method(m).needs_attention]  # legrad: transformers only
# fewer samples / masks than the defaults: the same code paths in a fraction of the forwards; occlusion's default
# 8-wide window covers a whole 3-D test volume (a constant map): a smaller one here
FAST_OPTIONS = {"smoothgrad": {"samples": 4}, "rise": {"n_masks": 64}, "sobol": {"grid_size": 2, "nb_design": 8},
                "hsic": {"grid_size": 2, "nb_design": 32}, "occlusion": {"window": 2, "stride": 1}}


SCORE_DIFFERENCES = {"occlusion", "featureablation", "lime", "kernelshap", "rise", "sobol", "hsic", "scorecam",
                     "ablationcam", "iscam", "sscam"}


def torch_net(rank, seed=0):
    """conv(2->4, k3, pad 1) -> ReLU -> conv(4->3) ["conv2"] -> ReLU ["act2"] -> global average -> linear(3->2)."""
    torch.manual_seed(seed)
    net = nn.Sequential(OrderedDict(conv1=CONV[rank](2, 4, 3, padding=1), act1=nn.ReLU(),
                                    conv2=CONV[rank](4, 3, 3, padding=1), act2=nn.ReLU(), pool=POOL[rank](1),
                                    flat=nn.Flatten(), fc=nn.Linear(3, 2)))
    with torch.no_grad():
        net.fc.weight.mul_(4)
    return net.eval()


def keras_net(rank, tnet):
    """The same network in Keras, channels last, with ``tnet``'s weights."""
    keras = pytest.importorskip("keras")
    conv = {1: keras.layers.Conv1D, 3: keras.layers.Conv3D}[rank]
    gap = {1: keras.layers.GlobalAveragePooling1D, 3: keras.layers.GlobalAveragePooling3D}[rank]
    inp = keras.Input((*SPATIAL[rank], 2))
    x = conv(4, 3, padding="same", name="conv1")(inp)
    x = keras.layers.ReLU(name="act1")(x)
    x = conv(3, 3, padding="same", name="conv2")(x)
    x = keras.layers.ReLU(name="act2")(x)
    out = keras.layers.Dense(2, name="fc")(gap(name="pool")(x))
    model = keras.Model(inp, out)
    order = tuple(range(2, 2 + rank)) + (1, 0)          # (out, in, *k) -> (*k, in, out)
    for name in ("conv1", "conv2"):
        w, b = getattr(tnet, name).weight.detach().numpy(), getattr(tnet, name).bias.detach().numpy()
        model.get_layer(name).set_weights([w.transpose(order), b])
    model.get_layer("fc").set_weights([tnet.fc.weight.detach().numpy().T, tnet.fc.bias.detach().numpy()])
    return model


def batch(rank, n=2, seed=1):
    return np.random.default_rng(seed).normal(size=(n, 2, *SPATIAL[rank])).astype(np.float32)


@pytest.fixture(scope="module", params=[1, 3], ids=["1d", "3d"])
def pair(request):
    pytest.importorskip("tensorflow")
    import xcam_tf

    rank = request.param
    tnet = torch_net(rank)
    return rank, tnet, keras_net(rank, tnet), xcam_tf


@pytest.mark.tf
@pytest.mark.parametrize("method", ALL)
def test_torch_keras_parity_on_ported_weights(pair, method):
    rank, tnet, knet, xcam_tf = pair
    x = batch(rank)
    layer = "act2"
    options = FAST_OPTIONS.get(method)
    mine = xcam_torch.cam(tnet, x, layer, method, targets=[0, 1], options=options)
    theirs = xcam_tf.cam(knet, np.moveaxis(x, 1, -1), layer, method, targets=[0, 1], options=options)
    assert mine.shape == (2, *SPATIAL[rank]) and mine.max() == 1
    # a perturbation map is a difference of two forwards' scores, min-max scaled: the frameworks' float32
    # rounding (~1e-7 of a logit) grows by 1 / the map's range (measured: featureablation 2.04e-5 on one of
    # 240 positions, 3-D); the parity bar, 1e-4, for those
    np.testing.assert_allclose(mine, theirs, atol=1e-4 if method in SCORE_DIFFERENCES else 2e-5)


@pytest.mark.tf
def test_keras_layer_listing_and_default_layer_for_signals_and_volumes(pair):
    rank, _, knet, xcam_tf = pair
    recs = xcam_tf.layer_records(knet, (*SPATIAL[rank], 2))
    by = {r.name: r for r in recs}
    assert by["conv2"].shape == (1, 3, *SPATIAL[rank]) and by["conv2"].cam_ready
    assert by["conv2"].layout == "channels_last"
    assert default_layer(recs).name == "act2"
    assert xcam_tf.input_shape(knet) == (2, *SPATIAL[rank])


@pytest.mark.parametrize("rank", [1, 3])
def test_torch_gradcam_equals_autograd_and_interpolate_by_hand(rank):
    net, x = torch_net(rank), batch(rank)
    size = {1: (30,), 3: (8, 9, 7)}[rank]
    kept = {}
    handle = net.act2.register_forward_hook(lambda m, a, out: kept.setdefault("a", out))
    xt = torch.from_numpy(x)
    logits = net(xt)
    handle.remove()
    (g,) = torch.autograd.grad(logits[:, 1].sum(), kept["a"])
    axes = tuple(range(2, 2 + rank))
    raw = torch.relu((g.mean(dim=axes, keepdim=True) * kept["a"]).sum(1, keepdim=True))
    mode = {1: "linear", 3: "trilinear"}[rank]
    up = torch.nn.functional.interpolate(raw, size=size, mode=mode, align_corners=False)[:, 0].detach().numpy()
    expected = xcam.normalize_minmax(up)
    np.testing.assert_allclose(xcam_torch.cam(net, x, "act2", "gradcam", targets=1, size=size), expected, atol=1e-5)


@pytest.mark.parametrize("rank", [1, 3])
def test_torch_layer_listing_for_signals_and_volumes(rank):
    net = torch_net(rank)
    recs = xcam_torch.layer_records(net, (2, *SPATIAL[rank]))
    assert default_layer(recs).name == "act2"
    assert {r.name: r.shape for r in recs}["conv2"] == (1, 3, *SPATIAL[rank])
    assert "act2" in format_table(recs) and xcam_torch.input_shape(net) == (2, *[None] * rank)


def test_inputs_of_the_wrong_rank_are_one_line_errors():
    with pytest.raises(XcamError, match=r"inputs must be a batch \(N, C, L\) for this model \(1-D\), got shape "
                                        r"\(2, 2, 4, 6, 5\)"):
        xcam_torch.cam(torch_net(1), batch(3), "act2")
    with pytest.raises(XcamError, match=r"inputs must be a batch \(N, C, D, H, W\) for this model \(3-D\)"):
        xcam_torch.cam(torch_net(3), batch(1), "act2")
    with pytest.raises(XcamError, match=r"size=\(4, 4\) has 2 numbers but the maps are 1-D \(L\): give 1"):
        xcam_torch.cam(torch_net(1), batch(1), "act2", size=(4, 4))


@pytest.mark.tf
def test_keras_inputs_of_the_wrong_rank_are_one_line_errors(pair):
    rank, _, knet, xcam_tf = pair
    other = batch(4 - rank)
    with pytest.raises(XcamError, match=r"inputs must be a batch \(N, \w.*C\) for this model"):
        xcam_tf.cam(knet, np.moveaxis(other, 1, -1), "act2")
