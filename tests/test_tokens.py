"""Transformers and channels-last layers (#9 token layers) on both adapters: a tiny torchvision ViT (class token
counted, tokens on a 4x4 grid) checked against autograd and a hand-written Ablation-CAM, torchvision ViT-B/16
against pytorch-grad-cam's reshape_transform, Swin-T's channels-last stages against its channels-first permute,
and a Keras ViT-like model against a GradientTape written by hand. Random weights, nothing downloaded."""

import numpy as np
import pytest

import xcam
from xcam.layers import default_layer, format_table

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
from torchvision.models.vision_transformer import VisionTransformer  # noqa: E402

import xcam_torch  # noqa: E402

LN1 = "encoder.layers.encoder_layer_1.ln_1"


def tiny_vit(seed=0):
    torch.manual_seed(seed)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                              num_classes=5)
    nn_init = torch.nn.init
    nn_init.normal_(model.heads.head.weight, std=1.0)  # torchvision zero-initialises the head: no gradients
    return model.eval()


def images(n=2, side=32, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3, side, side)).astype(np.float32)


def vit_reshape(t, side=4):
    """pytorch-grad-cam's ViT reshape_transform (its README), on tensors."""
    r = t[:, 1:, :].reshape(t.size(0), side, side, t.size(2))
    return r.transpose(2, 3).transpose(1, 2)


def test_token_capture_is_the_grid_of_patch_tokens_with_autograd_gradients():
    model, x = tiny_vit(), images()
    kept = {}
    handle = model.encoder.layers.encoder_layer_1.ln_1.register_forward_hook(lambda m, a, o: kept.setdefault("o", o))
    logits = model(torch.from_numpy(x))
    handle.remove()
    (g,) = torch.autograd.grad(logits[:, 3].sum(), kept["o"])
    cap = xcam_torch.capture(model, x, LN1, targets=3)
    assert cap.layout.describe() == "tokens 1+4x4" and cap.activations.shape == (2, 16, 4, 4)
    np.testing.assert_allclose(cap.activations, vit_reshape(kept["o"]).detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(cap.gradients, vit_reshape(g).numpy(), atol=1e-6)
    assert np.abs(cap.gradients).max() > 0


def test_layer_listing_marks_token_layers_and_defaults_before_the_last_attention():
    recs = xcam_torch.layer_records(tiny_vit(), (3, 32, 32))
    by = {r.name: r for r in recs}
    assert by[LN1].cam_ready and by[LN1].tokens and by[LN1].shape == (1, 16, 4, 4)
    assert by["encoder.ln"].cam_ready  # usable, but its patch tokens no longer reach the class token
    assert default_layer(recs).name == LN1
    assert "* tokens 1+4x4 (default)" in format_table(recs, LN1)
    # after the last attention the patch tokens get no gradient: the default rule is right to skip them
    cap = xcam_torch.capture(tiny_vit(), images(), "encoder.ln", targets=0)
    assert np.abs(cap.gradients).max() == 0


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "layercam", "eigencam", "scorecam", "ablationcam"])
def test_every_method_on_tokens_equals_the_same_method_through_a_torch_reshape_transform(method):
    model, x = tiny_vit(), images()
    detected = xcam_torch.cam(model, x, LN1, method, targets=[1, 4])
    custom = xcam_torch.cam(model, x, LN1, method, targets=[1, 4], reshape=vit_reshape)  # inverse read off indices
    assert detected.shape == (2, 32, 32) and detected.max() == 1
    np.testing.assert_allclose(detected, custom, atol=1e-6)


def test_ablationcam_on_tokens_golden_by_hand():
    # ablate channel k of every patch token (the class token kept), forward, (y - y_k) / |y|, weighted sum
    model, x = tiny_vit(), images(n=1)
    layer = model.encoder.layers.encoder_layer_1.ln_1
    xt = torch.from_numpy(x)
    with torch.no_grad():
        kept = {}
        h = layer.register_forward_hook(lambda m, a, o: kept.setdefault("o", o.clone()))
        base = model(xt)[0, 2].item()
        h.remove()
        weights = []
        for k in range(16):
            def zero(m, a, o, k=k):
                o = o.clone()
                o[:, 1:, k] = 0
                return o
            h = layer.register_forward_hook(zero)
            weights.append((base - model(xt)[0, 2].item()) / abs(base))
            h.remove()
    acts = vit_reshape(kept["o"])[0].numpy()
    raw = np.maximum(np.einsum("k,khw->hw", np.array(weights, np.float32), acts), 0)
    up = torch.nn.functional.interpolate(torch.from_numpy(raw)[None, None], size=(32, 32), mode="bilinear",
                                         align_corners=False)[0].numpy()
    np.testing.assert_allclose(xcam_torch.cam(model, x, LN1, "ablationcam", targets=2), xcam.normalize_minmax(up),
                               atol=1e-5)


def test_prefix_tokens_are_counted_not_guessed():
    # a class token and a distillation token (DeiT): 2 + 16 tokens lie on 4x4; 18 is no square plus one
    class DeiTLike(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = torch.nn.Conv2d(3, 8, 8, stride=8)
            self.cls_token = torch.nn.Parameter(torch.randn(1, 1, 8))
            self.dist_token = torch.nn.Parameter(torch.randn(1, 1, 8))
            self.block = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
            self.head = torch.nn.Linear(8, 3)

        def forward(self, x):
            t = self.patch(x).flatten(2).transpose(1, 2)
            t = torch.cat([self.cls_token.expand(len(x), -1, -1), self.dist_token.expand(len(x), -1, -1), t], 1)
            return self.head(self.block(t)[:, 0])

    torch.manual_seed(0)
    model = DeiTLike().eval()
    cap = xcam_torch.capture(model, images(), "block.norm1", targets=0)
    assert cap.layout.describe() == "tokens 2+4x4"


@pytest.mark.slow
def test_vit_b16_gradcam_matches_pytorch_grad_cam_reshape_transform():
    gradcam = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None, image_size=64).eval()
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    x = images(side=64)
    layer = model.encoder.layers.encoder_layer_11.ln_1
    with gradcam.GradCAM(model=model, target_layers=[layer], reshape_transform=vit_reshape) as cam:
        theirs = cam(input_tensor=torch.from_numpy(x), targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(2)])
    name = "encoder.layers.encoder_layer_11.ln_1"
    assert default_layer(xcam_torch.layer_records(model, (3, 64, 64))).name == name
    mine = xcam_torch.cam(model, x, name, "gradcam", targets=[1, 2])
    assert mine.max() == 1
    np.testing.assert_allclose(mine, theirs, atol=1e-5)  # measured 7.7e-7


@pytest.mark.slow
def test_swin_channels_last_stage_equals_its_channels_first_permute():
    torch.manual_seed(0)
    model = torchvision.models.swin_t(weights=None).eval()
    x = images(side=64)
    recs = {r.name: r for r in xcam_torch.layer_records(model, (3, 64, 64))}
    assert recs["norm"].layout == "channels_last" and recs["norm"].shape == (1, 768, 2, 2)
    assert recs["permute"].layout == "channels_first"
    # torchvision's Swin: permute(norm(features(x))) -> the same tensor in two layouts, the same maps
    for method in ("gradcam", "gradcampp", "layercam", "hirescam", "eigencam"):
        a = xcam_torch.cam(model, x, "norm", method, targets=[3, 7])
        b = xcam_torch.cam(model, x, "permute", method, targets=[3, 7])
        assert a.max() == 1
        np.testing.assert_allclose(a, b, atol=1e-6)


# ---- Keras: a ViT-like model with a counted class token -------------------------------------------------------

def keras_vit():
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorflow")

    class ClassToken(keras.layers.Layer):
        def build(self, shape):
            self.cls_token = self.add_weight(shape=(1, 1, shape[-1]), initializer="random_normal",
                                             name="cls_token")

        def call(self, x):
            token = keras.ops.broadcast_to(self.cls_token, (keras.ops.shape(x)[0], 1, x.shape[-1]))
            return keras.ops.concatenate([token, x], axis=1)

    class TakeClass(keras.layers.Layer):
        def call(self, x):
            return x[:, 0]

    keras.utils.set_random_seed(0)
    layers = dict(patch=keras.layers.Conv2D(8, 4, strides=4, name="patch"),
                  flat=keras.layers.Reshape((16, 8), name="flat"), cls=ClassToken(name="class_token"),
                  ln1=keras.layers.LayerNormalization(name="ln1"),
                  attn=keras.layers.MultiHeadAttention(2, 4, name="attn"), add=keras.layers.Add(name="add"),
                  ln2=keras.layers.LayerNormalization(name="ln2"), take=TakeClass(name="take"),
                  head=keras.layers.Dense(3, name="head", kernel_initializer=keras.initializers.RandomNormal(0, 2)))

    def run(x, watch=None):
        t = layers["cls"](layers["flat"](layers["patch"](x)))
        y = layers["ln1"](t)
        if watch is not None:
            watch(y)
        z = layers["add"]([t, layers["attn"](y, y)])
        return y, layers["head"](layers["take"](layers["ln2"](z)))

    inp = keras.Input((16, 16, 3))
    model = keras.Model(inp, run(inp)[1])
    return model, run


def test_keras_vit_like_tokens_against_a_gradient_tape_by_hand():
    import tensorflow as tf

    import xcam_tf

    model, run = keras_vit()
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype(np.float32)
    recs = xcam_tf.layer_records(model, (16, 16, 3))
    by = {r.name: r for r in recs}
    assert by["ln1"].layout == "tokens 1+4x4" and by["ln1"].shape == (1, 8, 4, 4)
    assert default_layer(recs).name == "ln1"
    with tf.GradientTape() as tape:
        y, logits = run(tf.constant(x), watch=tape.watch)
        score = tf.reduce_sum(logits * tf.one_hot([2, 0], 3))
    g = tape.gradient(score, y).numpy()[:, 1:].reshape(2, 4, 4, 8)
    a = y.numpy()[:, 1:].reshape(2, 4, 4, 8)
    cap = xcam_tf.capture(model, x, "ln1", targets=[2, 0])
    np.testing.assert_allclose(cap.activations, a.transpose(0, 3, 1, 2), atol=1e-5)
    np.testing.assert_allclose(cap.gradients, g.transpose(0, 3, 1, 2), atol=1e-5)
    raw = np.maximum(np.einsum("nc,nhwc->nhw", g.mean(axis=(1, 2)), a), 0)
    expected = xcam.normalize_minmax(tf.image.resize(raw[..., None], (16, 16)).numpy()[..., 0])
    np.testing.assert_allclose(xcam_tf.cam(model, x, "ln1", "gradcam", targets=[2, 0]), expected, atol=1e-5)


@pytest.mark.parametrize("method", ["ablationcam", "scorecam", "layercam"])
def test_keras_tokens_every_method_equals_a_numpy_reshape(method):
    import xcam_tf

    model, _ = keras_vit()
    x = np.random.default_rng(1).normal(size=(2, 16, 16, 3)).astype(np.float32)

    def reshape(a):
        return a[:, 1:].reshape(len(a), 4, 4, a.shape[-1]).transpose(0, 3, 1, 2)

    detected = xcam_tf.cam(model, x, "ln1", method, targets=[1, 2])
    assert detected.max() == 1
    np.testing.assert_allclose(detected, xcam_tf.cam(model, x, "ln1", method, targets=[1, 2], reshape=reshape),
                               atol=1e-6)


def test_cli_layers_and_explain_on_a_vision_transformer(capsys, tmp_path):
    import json

    from xcam.app.cli import main
    from xcam.app.models.zoo import demo_images

    torch.save(tiny_vit(), tmp_path / "vit.pth")
    code = main(["layers", "--model", str(tmp_path / "vit.pth"), "--trust-model", "--input-size", "32"])
    out = capsys.readouterr().out
    assert code == 0
    line = next(ln for ln in out.splitlines() if ln.startswith(LN1 + " "))
    assert "16x4x4" in line and "* tokens 1+4x4 (default)" in line
    code = main(["explain", "--model", str(tmp_path / "vit.pth"), "--trust-model", "--input-size", "32",
                 "--images", str(demo_images()[0]), "--methods", "gradcam", "ablationcam", "--out",
                 str(tmp_path / "o"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["layer"] == LN1
    first = next((tmp_path / "o").glob("*/gradcam*.npy"))
    heat = np.load(first)
    assert heat.shape == (32, 32) and heat.max() == 1


def test_fusing_two_token_layers_is_layercam_fusion_of_their_grids():
    model, x = tiny_vit(), images()
    layers = ["encoder.layers.encoder_layer_0.ln_1", LN1]
    raws = [xcam.raw_maps(xcam_torch.capture(model, x, name, targets=2), "layercam") for name in layers]
    np.testing.assert_allclose(xcam_torch.cam(model, x, layers, "layercam", targets=2), xcam.fuse(raws, (32, 32)),
                               atol=1e-6)


class TorchTwin(torch.nn.Module):
    """The Keras ViT-like model in PyTorch, for ported weights: patch conv, class token, layer norm (Keras eps
    1e-3), Keras MultiHeadAttention written out (2 heads of 4), residual, layer norm, class token -> dense."""

    def __init__(self, kmodel):
        super().__init__()
        k = {layer.name: layer for layer in kmodel.layers}
        w = lambda a: torch.nn.Parameter(torch.from_numpy(np.asarray(a, np.float32)))  # noqa: E731
        pk, pb = k["patch"].get_weights()
        self.patch = torch.nn.Conv2d(3, 8, 4, stride=4)
        self.patch.weight, self.patch.bias = w(pk.transpose(3, 2, 0, 1)), w(pb)
        self.cls_token = w(k["class_token"].get_weights()[0])
        self.ln1, self.ln2 = torch.nn.LayerNorm(8, eps=1e-3), torch.nn.LayerNorm(8, eps=1e-3)
        for name in ("ln1", "ln2"):
            gamma, beta = k[name].get_weights()
            getattr(self, name).weight, getattr(self, name).bias = w(gamma), w(beta)
        att = k["attn"]
        self.q, self.qb = w(att._query_dense.kernel), w(att._query_dense.bias)
        self.k, self.kb = w(att._key_dense.kernel), w(att._key_dense.bias)
        self.v, self.vb = w(att._value_dense.kernel), w(att._value_dense.bias)
        self.o, self.ob = w(att._output_dense.kernel), w(att._output_dense.bias)
        hk, hb = k["head"].get_weights()
        self.head = torch.nn.Linear(8, 3)
        self.head.weight, self.head.bias = w(hk.T), w(hb)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)                                   # (N, 16, 8), row-major
        t = torch.cat([self.cls_token.expand(len(x), -1, -1), t], dim=1)
        y = self.ln1(t)
        q = torch.einsum("ntd,dhk->nthk", y, self.q) + self.qb
        k = torch.einsum("ntd,dhk->nthk", y, self.k) + self.kb
        v = torch.einsum("ntd,dhk->nthk", y, self.v) + self.vb
        a = torch.softmax(torch.einsum("nqhk,nshk->nhqs", q, k) / 2.0, dim=-1)          # sqrt(key_dim 4)
        o = torch.einsum("nhqs,nshk->nqhk", a, v)
        z = t + torch.einsum("nqhk,hkd->nqd", o, self.o) + self.ob
        return self.head(self.ln2(z)[:, 0])


@pytest.mark.parametrize("method", ["gradcam", "layercam", "gradcampp", "scorecam", "ablationcam"])
def test_keras_vit_like_and_its_torch_twin_give_the_same_token_maps(method):
    import xcam_tf

    kmodel, _ = keras_vit()
    twin = TorchTwin(kmodel).eval()
    x = np.random.default_rng(3).normal(size=(2, 16, 16, 3)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(twin(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy(),
                                   np.asarray(kmodel(x, training=False)), atol=1e-4)
    theirs = xcam_tf.cam(kmodel, x, "ln1", method, targets=[0, 2])
    mine = xcam_torch.cam(twin, x.transpose(0, 3, 1, 2), "ln1", method, targets=[0, 2])
    assert mine.max() == 1
    assert xcam_torch.capture(twin, x.transpose(0, 3, 1, 2), "ln1").layout.describe() == "tokens 1+4x4"
    np.testing.assert_allclose(mine, theirs, atol=5e-5)
