"""Layers whose output is a tuple, a dict or a dataclass (a Hugging Face Swin stage, ``BaseModelOutput``): the
first tensor of a spatial rank by default, ``layer_output=`` (an index or a name) to choose, in both adapters;
activations and gradients (partial: the other parts held) against autograd by hand, maps equal to those of the
same network with a plain tensor output (Ablation-CAM writing the chosen part back), Keras against PyTorch,
one-line errors for a part the output lacks, and the model left without hooks or patched calls."""

import dataclasses
import os

import numpy as np
import pytest

from xcam import XcamError
from xcam.layer_outputs import pick, put

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import xcam_torch  # noqa: E402

pytestmark = pytest.mark.torch


@dataclasses.dataclass
class PairOutput:
    """A dataclass output like transformers' ModelOutput: a spatial tensor, a pooled one and nothing."""

    pooled: torch.Tensor
    feature: torch.Tensor
    extra: torch.Tensor | None = None


class Pair(nn.Module):
    """conv(3->4) giving (pooled (N, 4), A (N, 4, h, w), B = 2 A - 1 (N, 4, h, w)) as a tuple, or as a dataclass
    (pooled, feature=B): the tuple's first spatial tensor is A (index 1), the dataclass's is B."""

    def __init__(self, kind):
        super().__init__()
        self.conv, self.kind = nn.Conv2d(3, 4, 3, padding=1), kind

    def forward(self, x):
        a = torch.relu(self.conv(x))
        b = 2 * a - 1
        if self.kind == "tuple":
            return a.mean(dim=(2, 3)), a, b
        return PairOutput(pooled=a.mean(dim=(2, 3)), feature=b)


class Net(nn.Module):
    """Pair -> head on (A, B) (tuple) or on B (dataclass): every part that is explained reaches the logits."""

    def __init__(self, kind):
        super().__init__()
        self.block, self.kind = Pair(kind), kind
        self.head_a, self.head_b = nn.Conv2d(4, 3, 1), nn.Conv2d(4, 3, 1)

    def forward(self, x):
        out = self.block(x)
        if self.kind == "tuple":
            _, a, b = out
            return (self.head_a(a) + self.head_b(b ** 2)).mean(dim=(2, 3))
        return self.head_b(out.feature ** 2).mean(dim=(2, 3))


def model(kind, seed=0):
    torch.manual_seed(seed)
    return Net(kind).eval()


X = np.random.default_rng(3).normal(size=(2, 3, 6, 6)).astype(np.float32)


def by_hand(net, part):
    """(A, dscore/dA) of the block's output ``part`` for the top-1 class, by autograd: the partial derivative,
    the block's other parts held fixed (they are computed inside the block before any hook sees its output)."""
    x = torch.from_numpy(X)
    kept = {}

    def hook(module, args, out):  # the other parts are held: the gradient is the partial one
        t = (out[part] if isinstance(out, tuple) else getattr(out, part)).detach().requires_grad_(True)
        kept["t"] = t
        if isinstance(out, tuple):
            return tuple(t if i == part else v.detach() for i, v in enumerate(out))
        return dataclasses.replace(out, **{part: t})

    h = net.block.register_forward_hook(hook)
    try:
        logits = net(x)
        top = logits.argmax(1)
        logits.gather(1, top[:, None]).sum().backward()
    finally:
        h.remove()
        net.zero_grad(set_to_none=True)
    return kept["t"].detach().numpy(), kept["t"].grad.numpy()


@pytest.mark.parametrize("kind,choice,part", [("tuple", None, 1), ("tuple", 1, 1), ("tuple", 2, 2),
                                              ("dataclass", None, "feature"), ("dataclass", "feature", "feature"),
                                              ("dataclass", 1, "feature")])
def test_capture_picks_the_part_and_its_gradients_match_autograd(kind, choice, part):
    net = model(kind)
    cap = xcam_torch.capture(net, X, "block", layer_output=choice)
    a, g = by_hand(net, part)
    np.testing.assert_allclose(cap.activations, a, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(cap.gradients, g, rtol=1e-5, atol=1e-7)
    assert not any(m._forward_hooks for m in net.modules())
    assert all(p.grad is None for p in net.parameters())


class Plain(nn.Module):
    """The tuple net's part 2 (B) as a plain tensor output of a module ``b``: its maps are the reference."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.b = nn.Identity()

    def forward(self, x):
        a = torch.relu(self.net.block.conv(x))
        b = self.b(2 * a - 1)
        return (self.net.head_a(a) + self.net.head_b(b ** 2)).mean(dim=(2, 3))


@pytest.mark.parametrize("method", ["gradcam", "ablationcam"])
def test_maps_equal_the_plain_tensor_twin(method):
    net = model("tuple", seed=1)
    got = xcam_torch.cam(net, X, "block", method, layer_output=2)
    want = xcam_torch.cam(Plain(net), X, "b", method)
    np.testing.assert_allclose(got, want, atol=2e-6)
    # the default part (A, index 1) is a different map
    assert np.abs(xcam_torch.cam(net, X, "block", method) - want).max() > 1e-2


def test_default_layer_and_listing_see_the_structured_output():
    records = {r.name: r for r in xcam_torch.layer_records(model("tuple"), (3, 6, 6))}
    assert records["block"].shape == (1, 4, 6, 6) and records["block"].cam_ready


def test_bad_choices_are_one_line_errors():
    net = model("dataclass")
    with pytest.raises(XcamError, match=r"layer_output='featur' is not a tensor .*did you mean feature"):
        xcam_torch.cam(net, X, "block", layer_output="featur")
    with pytest.raises(XcamError, match="not an index"):
        xcam_torch.cam(net, X, "block", layer_output=-1)
    with pytest.raises(XcamError, match="which has no part 3"):
        xcam_torch.cam(model("tuple"), X, "block.conv", layer_output=3)
    assert not any(m._forward_hooks for m in net.modules())


def test_pick_and_put_rebuild_each_structure():
    a, b = np.zeros((1, 2, 3, 3)), np.ones((1, 5, 4))
    assert pick((np.zeros(3), a, b))[0] == 1
    assert pick({"x": np.zeros(2), "y": b})[0] == "y"
    out = put(PairOutput(pooled=np.zeros(2), feature=a), "feature", b)
    assert isinstance(out, PairOutput) and out.feature is b
    assert put((1, a, 3), 1, b) == (1, b, 3) and put({"k": a}, "k", b)["k"] is b


@pytest.mark.tf
def test_keras_layer_returning_a_tuple():
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    import xcam_tf

    class KPair(keras.layers.Layer):
        def build(self, shape):
            self.conv = keras.layers.Conv2D(4, 3, padding="same")
            self.conv.build(shape)

        def call(self, x):
            a = tf.nn.relu(self.conv(x))
            return tf.reduce_mean(a, axis=(1, 2)), a, 2 * a - 1

    class KNet(keras.Model):
        def __init__(self):
            super().__init__()
            self.block, self.head = KPair(), keras.layers.Dense(3)

        def call(self, x):
            _, a, b = self.block(x)
            return tf.reduce_mean(self.head(a) + self.head(b ** 2), axis=(1, 2))

    keras.utils.set_random_seed(0)
    net = KNet()
    x = np.ascontiguousarray(X.transpose(0, 2, 3, 1))
    net(x)
    for choice, index in ((None, 1), (2, 2)):
        cap = xcam_tf.capture(net, x, net.block, layer_output=choice)
        kept = {}
        original = net.block.call

        def call(t, _index=index, _original=original, _kept=kept):
            out = _original(t)
            _kept["t"] = out[_index]
            tape.watch(_kept["t"])
            return out

        object.__setattr__(net.block, "call", call)
        try:
            with tf.GradientTape(watch_accessed_variables=False) as tape:  # partial: the other parts held
                logits = net(tf.constant(x))
                score = tf.reduce_sum(tf.gather(logits, tf.argmax(logits, 1), batch_dims=1))
            g = tape.gradient(score, kept["t"]).numpy()
        finally:
            object.__delattr__(net.block, "call")
        np.testing.assert_allclose(cap.activations, kept["t"].numpy().transpose(0, 3, 1, 2), atol=1e-6)
        np.testing.assert_allclose(cap.gradients, g.transpose(0, 3, 1, 2), rtol=1e-5, atol=1e-7)
    twin = model("tuple")  # the same weights in PyTorch: maps of part 2 agree
    with torch.no_grad():
        kernel, bias = net.block.conv.get_weights()
        twin.block.conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1)))
        twin.block.conv.bias.copy_(torch.from_numpy(bias))
        dense, dbias = net.head.get_weights()
        for head in (twin.head_a, twin.head_b):
            head.weight.copy_(torch.from_numpy(dense.T[:, :, None, None]))
            head.bias.copy_(torch.from_numpy(dbias))
    for method in ("gradcam", "ablationcam"):
        np.testing.assert_allclose(xcam_tf.cam(net, x, net.block, method, layer_output=2),
                                   xcam_torch.cam(twin, X, "block", method, layer_output=2), atol=1e-4)
    assert "call" not in vars(net.block)


class Twice(nn.Module):
    """stem conv -> one block applied twice (weights shared) -> head: the block runs twice in one forward."""

    def __init__(self):
        super().__init__()
        self.stem, self.block, self.head = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Linear(4, 3)

    def forward(self, x):
        a = torch.relu(self.block(torch.relu(self.stem(x))))
        return self.head(torch.relu(self.block(a)).mean(dim=(2, 3)))


def test_cli_call_flag_explains_one_call_of_a_shared_layer(tmp_path):
    from xcam.app.cli import main
    from xcam.app.inputs.images import load_image, preprocess

    torch.manual_seed(2)
    net = Twice().eval()
    path = tmp_path / "twice.pt"
    torch.save(net, path)
    image = os.path.join(os.path.dirname(__file__), "..", "xcam", "app", "data", "chelsea_cat.png")
    x = np.ascontiguousarray(preprocess([load_image(image)], (16, 16), "imagenet").transpose(0, 3, 1, 2))
    maps = {}
    for call in (0, 1):
        out = tmp_path / f"out{call}"
        assert main(["explain", "--model", str(path), "--trust-model", "--images", image, "--out", str(out),
                     "--layer", "block", "--call", str(call), "--input-size", "16", "--methods", "gradcam",
                     "--no-overlays", "--no-features", "--quiet"]) == 0
        maps[call] = np.load(next(out.glob("*/gradcam_*.npy")))
        np.testing.assert_allclose(maps[call], xcam_torch.cam(net, x, "block", call=call)[0], atol=1e-6)
    assert np.abs(maps[0] - maps[1]).max() > 1e-2
    assert main(["explain", "--model", str(path), "--trust-model", "--images", image, "--out", str(tmp_path / "e"),
                 "--layer", "block", "--input-size", "16", "--quiet"]) == 2   # runs twice: --call needed
