"""Deep feature factorization (``dff``, ``xcam_torch.concepts`` / ``xcam_tf.concepts``, ``xcam.factorize.nmf``)
and LeGrad (``legrad``): golden values by hand, agreement with scikit-learn's NMF, pytorch-grad-cam's
DeepFeatureFactorization and torchcam's LeGrad on torchvision models with random weights, and torch-vs-Keras
parity on ported weights."""

import numpy as np
import pytest

import xcam
from xcam.concepts import concept_picture, rainbow_colors
from xcam.contract import Capture
from xcam.errors import XcamError
from xcam.factorize import factorize, nmf

# ---- NMF and the factorization, NumPy only -------------------------------------------------------------------


def test_nmf_one_sweep_on_a_single_entry_is_the_exact_minimizer_by_hand():
    # X = [[4]], k = 1: a = sqrt(4 / 1) = 2; RandomState(0) draws z_H = 1.7640523 then z_W = 0.4001572, so
    # H = 3.5281046 and W = 0.8003144. One coordinate step on W solves min (4 - W H)^2 exactly: W = 4 / H.
    w, h, sweeps = nmf(np.array([[4.0]]), 1, max_iter=1)
    assert sweeps == 1
    np.testing.assert_allclose(h, [[2 * 1.764052345967664]], rtol=1e-12)
    np.testing.assert_allclose(w, [[4 / (2 * 1.764052345967664)]], rtol=1e-12)
    np.testing.assert_allclose(w @ h, [[4.0]], rtol=1e-12)


def test_nmf_recovers_an_exact_non_negative_factorization():
    w0 = np.array([[1, 0], [2, 1], [0, 3], [1, 1], [4, 0], [0, 2]], np.float64)
    h0 = np.array([[1, 0, 2, 0, 1, 3, 0, 1], [0, 1, 1, 2, 0, 0, 3, 1]], np.float64)
    x = w0 @ h0
    w, h, _ = nmf(x, 2, max_iter=5000, tol=1e-14)
    assert (w >= 0).all() and (h >= 0).all()
    assert np.linalg.norm(x - w @ h) / np.linalg.norm(x) < 1e-6
    # the factors are the true ones up to order and scale: each recovered row of H is parallel to one of H0's
    cos = (h / np.linalg.norm(h, axis=1, keepdims=True)) @ (h0 / np.linalg.norm(h0, axis=1, keepdims=True)).T
    np.testing.assert_allclose(np.sort(cos.max(axis=1)), [1, 1], atol=1e-6)


def test_nmf_matches_scikit_learn_random_init_coordinate_descent():
    sklearn = pytest.importorskip("sklearn.decomposition")
    x = np.abs(np.random.default_rng(0).normal(size=(12, 20)))
    model = sklearn.NMF(n_components=3, init="random", random_state=0, max_iter=200, tol=1e-4)
    w_ref = model.fit_transform(x)
    w, h, sweeps = nmf(x, 3)
    assert sweeps == model.n_iter_
    np.testing.assert_allclose(w, w_ref, atol=1e-9)
    np.testing.assert_allclose(h, model.components_, atol=1e-9)


def test_nmf_of_a_stack_is_each_alone_each_stopping_at_its_own_sweep():
    rng = np.random.RandomState(3)
    xs = [np.abs(rng.randn(16, 9)) ** 2 for _ in range(3)]
    xs.insert(1, np.outer(np.abs(rng.randn(16)), np.abs(rng.randn(9))))   # rank 1: stops after a few sweeps
    w, h, sweeps = nmf(np.stack(xs), 3, tol=1e-2)
    alone = [nmf(x, 3, tol=1e-2) for x in xs]
    assert sweeps.tolist() == [s for _, _, s in alone] and len(set(sweeps.tolist())) > 1
    for i, (wi, hi, _) in enumerate(alone):
        np.testing.assert_array_equal(w[i], wi)
        np.testing.assert_array_equal(h[i], hi)
    assert nmf(xs[0], 3, max_iter=0)[2] == 0


def entrywise_pass(a, b, x):
    """scikit-learn's coordinate pass written entry by entry (rows t in order, each entry i): a (k, n), b (k, m),
    X (n, m); returns the new a and the summed |projected gradient|."""
    a = a.copy()
    bbt, bxt = b @ b.T, b @ x.T
    violation = 0.0
    for t in range(len(a)):
        for i in range(a.shape[1]):
            g = bbt[t] @ a[:, i] - bxt[t, i]
            violation += abs(min(g, 0.0) if a[t, i] == 0 else g)
            if bbt[t, t] != 0:
                a[t, i] = max(0.0, a[t, i] - g / bbt[t, t])
    return a, violation


def test_a_coordinate_pass_is_the_entrywise_descent_also_with_a_zero_row():
    from xcam.factorize import _Rows

    rng = np.random.RandomState(1)
    a0, x = np.abs(rng.randn(3, 4)), np.abs(rng.randn(4, 5))
    a0[1, 2] = 0.0                                   # an entry at the bound: its gradient is projected
    for b in (np.abs(rng.randn(3, 5)), np.abs(rng.randn(3, 5)) * np.array([[1.0], [0.0], [1.0]])):
        want, violation = entrywise_pass(a0, b, x)
        a = a0.copy()
        got = _Rows(a)(b, x)
        np.testing.assert_allclose(a, want, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(float(got), violation, rtol=1e-12)
        stacked = np.stack([a0, a0 * 2])             # the same pass on a stack of two problems
        got2 = _Rows(stacked)(np.stack([b, b]), np.stack([x, x]))
        np.testing.assert_allclose(stacked[0], want, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(stacked[1], entrywise_pass(a0 * 2, b, x)[0], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(got2, [violation, entrywise_pass(a0 * 2, b, x)[1]], rtol=1e-12)


def test_factorize_each_is_factorize_of_each_sample_alone():
    acts = np.abs(np.random.RandomState(2).randn(3, 6, 2, 3)).astype(np.float32)
    vectors, maps, sweeps = factorize(acts, 2, each=True)
    assert vectors.shape == (3, 6, 2) and maps.shape == (3, 2, 2, 3)
    for n in range(3):
        v, m, s = factorize(acts[n:n + 1], 2)
        np.testing.assert_array_equal(vectors[n], v)
        np.testing.assert_array_equal(maps[n], m[0])
        assert sweeps[n] == s


def test_nmf_and_factorize_refuse_bad_input_in_one_line():
    with pytest.raises(XcamError, match="no negative entry"):
        nmf(np.array([[1.0, -1.0]]), 1)
    with pytest.raises(XcamError, match="k must be an integer >= 1"):
        nmf(np.ones((2, 2)), 0)
    with pytest.raises(XcamError, match="finite activations"):
        factorize(np.full((1, 2, 2, 2), np.nan, np.float32), 1)


def two_region_capture(head_row_for_class1=(0.0, 1.0)):
    """Channel 0 fires on the left half, channel 1 on the right half of a 2x4 map; the head's class 0 reads
    channel 0 and class 1 reads channel 1."""
    a = np.zeros((1, 2, 2, 4), np.float32)
    a[0, 0, :, :2] = 1.0
    a[0, 1, :, 2:] = 2.0
    head = np.array([[1.0, 0.0], list(head_row_for_class1)], np.float32)
    return Capture(activations=a, gradients=None, scores=np.zeros((1, 2), np.float32),
                   targets=np.array([1]), head_weights=head)


def test_factorize_splits_two_disjoint_parts_into_two_concepts_with_their_vectors():
    cap = two_region_capture()
    vectors, maps, _ = factorize(cap.activations, 2, max_iter=2000, tol=1e-12)
    left = np.zeros((2, 4))
    left[:, :2] = 1
    # each concept's map is one half (up to scale), its vector the channel that fires there
    order = np.argsort(maps[0, :, 0, 0])[::-1]          # the concept alive on the left first
    np.testing.assert_allclose(maps[0, order[0]] / maps[0, order[0]].max(), left, atol=1e-5)
    np.testing.assert_allclose(maps[0, order[1]] / maps[0, order[1]].max(), 1 - left, atol=1e-5)
    np.testing.assert_allclose(vectors[:, order] * [maps[0, order[0]].max(), maps[0, order[1]].max()],
                               [[1, 0], [0, 2]], atol=1e-4)


def test_dff_method_gives_the_region_of_the_concept_the_target_class_reads():
    opts = {"k": 2, "max_iter": 2000, "tol": 1e-12}
    right = np.zeros((2, 4), np.float32)
    right[:, 2:] = 1
    np.testing.assert_allclose(xcam.compute_cam(two_region_capture(), "dff", options=opts)[0], right, atol=1e-5)
    cap0 = Capture(**{**two_region_capture().__dict__, "targets": np.array([0])})
    np.testing.assert_allclose(xcam.compute_cam(cap0, "dff", options=opts)[0], 1 - right, atol=1e-5)
    several = Capture(**{**two_region_capture().__dict__, "targets": np.array([[0, 1]])})
    np.testing.assert_allclose(xcam.compute_cam(several, "dff", options=opts)[0], [1 - right, right], atol=1e-5)
    with pytest.raises(XcamError, match="explains a class"):
        xcam.compute_cam(Capture(**{**two_region_capture().__dict__, "targets": np.array([-1])}), "dff")


def test_rainbow_colors_are_matplotlibs_gist_rainbow():
    matplotlib = pytest.importorskip("matplotlib")
    for k in (1, 3, 5, 7, 16):
        expected = matplotlib.colormaps["gist_rainbow"](np.arange(0, 1, 1.0 / k))[:, :3]
        np.testing.assert_allclose(rainbow_colors(k), expected, atol=1e-12)


def test_concept_picture_is_pytorch_grad_cams_show_factorization_on_image():
    image_mod = pytest.importorskip("pytorch_grad_cam.utils.image")
    rng = np.random.default_rng(0)
    img = rng.uniform(size=(12, 16, 3))
    maps = rng.uniform(size=(4, 12, 16)).astype(np.float32)
    colors = list(np.concatenate([rainbow_colors(4), np.ones((4, 1))], axis=1))  # its default, drawn by hand:
    # its own default calls plt.cm.get_cmap, which matplotlib 3.9 removed
    theirs = image_mod.show_factorization_on_image(img, maps.copy(), colors=colors, image_weight=0.3)
    mine = concept_picture(img, maps, image_weight=0.3)
    assert mine.dtype == np.uint8 and mine.shape == (12, 16, 3)
    np.testing.assert_array_equal(mine, theirs)
    with pytest.raises(XcamError, match=r"\(k, H, W\)"):
        concept_picture(img, maps[0])


# ---- against pytorch-grad-cam's DeepFeatureFactorization, and torch vs Keras ---------------------------------

@pytest.fixture(scope="module")
def resnet_dff():
    """ResNet-18 (random weights, 10 classes), 2 images of 64x64: xcam's concepts and pytorch-grad-cam's."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam import DeepFeatureFactorization

    import xcam_torch

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    anchor = DeepFeatureFactorization(model, model.layer4, computation_on_concepts=model.fc)
    try:
        with torch.no_grad():
            theirs = anchor(x, 4)
    finally:
        anchor.activations_and_grads.release()  # it has __exit__ but no __enter__
    return model, x.numpy(), theirs, xcam_torch.concepts(model, x.numpy(), "layer4", 4)


@pytest.mark.torch
def test_concepts_match_pytorch_grad_cams_deep_feature_factorization(resnet_dff):
    model, x, (vectors, maps, scores), mine = resnet_dff
    assert mine.maps.shape == (2, 4, 64, 64) and mine.raw.shape == (2, 4, 2, 2) and mine.scores.shape == (4, 10)
    scale = np.abs(vectors).max()
    np.testing.assert_allclose(mine.vectors, vectors, atol=1e-4 * scale)
    np.testing.assert_allclose(mine.scores, scores, atol=1e-4 * np.abs(scores).max())
    np.testing.assert_allclose(mine.maps, np.asarray(maps), atol=1e-4)
    assert mine.maps.max() == 1 and mine.layer == "layer4"
    np.testing.assert_allclose(mine.probabilities.sum(axis=1), 1, atol=1e-6)
    assert mine.labels(count=1)[0] == f"{mine.top_classes(1)[0, 0]}:{mine.probabilities[0].max():.2f}"


@pytest.mark.torch
def test_dff_method_is_the_top_concept_of_the_target_class_per_sample(resnet_dff):
    import xcam_torch

    model, x, _, _ = resnet_dff
    maps = xcam_torch.cam(model, x, "layer4", "dff", targets=[3, 7], options={"k": 4})
    alone = xcam_torch.concepts(model, x[1:], "layer4", 4)          # each sample is factorized alone
    np.testing.assert_allclose(maps[1], alone.maps[0, alone.scores[:, 7].argmax()], atol=1e-6)
    with pytest.raises(XcamError, match="not a linear layer"):
        xcam_torch.concepts(model, x, "layer4", 2, head="layer4")
    with pytest.raises(XcamError, match="512 features to classes, but the layer.s concepts have 256 channels"):
        xcam_torch.concepts(model, x, "layer3", 2)
    assert xcam_torch.concepts(model, x, "layer3", 2, head=False).scores is None


@pytest.mark.torch
@pytest.mark.tf
def test_concepts_and_dff_on_the_ported_tiny_net_are_the_same_on_torch_and_keras():
    from kits import make_kit

    kt, kk = make_kit("torch"), make_kit("tf")
    mine = [k.module.concepts(k.model, k.inputs, "conv2", 2, size=(8, 8)) for k in (kt, kk)]
    np.testing.assert_allclose(mine[0].vectors, mine[1].vectors, atol=1e-4)
    np.testing.assert_allclose(mine[0].scores, mine[1].scores, atol=1e-4)
    np.testing.assert_allclose(mine[0].maps, mine[1].maps, atol=1e-4)
    assert mine[0].sweeps == mine[1].sweeps
    maps = [k.cam("conv2", "dff", targets=[0, 1], options={"k": 2}) for k in (kt, kk)]
    assert maps[0].max() == 1
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-4)


# ---- LeGrad ---------------------------------------------------------------------------------------------------

def test_legrad_formula_by_hand_on_one_head():
    # one head, d = 1, identity projections: V = X, ds/dO = ds/dy = G, so ds/dA[q, k] = G_q X_k.
    # X = (1, 2, -1), G = (1, -1, 2): rows q of ReLU(G_q X_k) are (1, 2, 0), (0, 0, 1), (2, 4, 0); their mean
    # over q is (1, 2, 1/3); the prefix (class) token dropped leaves the 1x2 grid (2, 1/3).
    one = np.ones((1, 1, 1), np.float32)
    arrays = {"inputs": np.array([[[1.0], [2.0], [-1.0]]], np.float32), "value_kernel": one,
              "value_bias": np.zeros((1, 1), np.float32), "output_kernel": one,
              "output_gradients": np.array([[[1.0], [-1.0], [2.0]]], np.float32)}
    def cap(arrays):
        return Capture(activations=np.zeros((1, 1, 1, 2), np.float32), gradients=None,
                       scores=np.zeros((1, 3), np.float32), targets=np.array([0]), attention=arrays)

    np.testing.assert_allclose(xcam.raw_maps(cap(arrays), "legrad"), [[[2.0, 1 / 3]]], rtol=1e-6)
    # a bias on the values shifts every V_k: V = X + 1 = (2, 3, 0) -> rows (2, 3, 0), (0, 0, 0), (4, 6, 0)
    arrays["value_bias"] = np.ones((1, 1), np.float32)
    np.testing.assert_allclose(xcam.raw_maps(cap(arrays), "legrad"), [[[3.0, 0.0]]], atol=1e-6)
    with pytest.raises(XcamError, match="needs the attention arrays"):
        xcam.raw_maps(cap(None), "legrad")


def tiny_torch_vit():
    import torch
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                              num_classes=5)
    torch.nn.init.normal_(model.heads.head.weight, std=1.0)  # torchvision zero-initialises the head
    return model.eval()


BLOCKS = ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"]


@pytest.mark.torch
@pytest.mark.parametrize("layers", [BLOCKS[1:], BLOCKS], ids=["last-block", "two-blocks"])
def test_legrad_matches_torchcam_on_a_tiny_vision_transformer(layers):
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    methods = pytest.importorskip("torchcam.methods")
    import xcam_torch

    model = tiny_torch_vit()
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32))
    with methods.LeGrad(model, layers) as extractor:
        theirs = extractor(class_idx=[1, 3], scores=model(x))[0].detach().numpy()
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    mine = xcam_torch.cam(model, x.numpy(), layers, "legrad", targets=[1, 3], size=(4, 4))
    assert mine.max() == 1 and np.ptp(mine[0]) > 0
    np.testing.assert_allclose(mine, theirs, atol=1e-5)
    # the model is left as it was: no hooks, no .grad, eval mode
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == hooks == 0
    assert all(p.grad is None for p in model.parameters()) and not model.training
    # named options give the same: the block's own attention, torchvision's final norm and classifier
    named = xcam_torch.cam(model, x.numpy(), layers[-1], "legrad", targets=[1, 3], size=(4, 4),
                           options={"attention": layers[-1] + ".self_attention", "head": ["encoder.ln", "heads"]})
    alone = xcam_torch.cam(model, x.numpy(), layers[-1], "legrad", targets=[1, 3], size=(4, 4))
    np.testing.assert_allclose(named, alone, atol=1e-6)
    with pytest.raises(XcamError, match="one class per sample"):
        xcam_torch.cam(model, x.numpy(), layers[-1], "legrad", classes=[0, 1])


def keras_token_layers(keras):
    """(ClassToken, TakeClass): Keras layers that prepend a learned class token (a (1, 1, E) weight, which
    ``xcam.layouts`` counts as a prefix token) and take it back after the blocks."""

    class ClassToken(keras.layers.Layer):
        def build(self, shape):
            self.cls_token = self.add_weight(shape=(1, 1, shape[-1]), initializer="random_normal", name="cls")

        def call(self, x):
            token = keras.ops.broadcast_to(self.cls_token, (keras.ops.shape(x)[0], 1, x.shape[-1]))
            return keras.ops.concatenate([token, x], axis=1)

    class TakeClass(keras.layers.Layer):
        def call(self, x):
            return x[:, 0]

    return ClassToken, TakeClass


def keras_vit_with_torch_twin():
    """A one-block ViT in Keras (patch conv, class token, layer norm, MultiHeadAttention 2 heads x 4, residual
    "add" = the block's output, layer norm, class token -> dense) and the same in PyTorch with
    nn.MultiheadAttention (weights ported; Keras layer norms' eps 1e-3)."""
    keras = pytest.importorskip("keras")
    torch = pytest.importorskip("torch")

    ClassToken, TakeClass = keras_token_layers(keras)
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    t = ClassToken(name="class_token")(keras.layers.Reshape((16, 8), name="flat")(
        keras.layers.Conv2D(8, 4, strides=4, name="patch")(inp)))
    y = keras.layers.LayerNormalization(name="ln1")(t)
    z = keras.layers.Add(name="add")([t, keras.layers.MultiHeadAttention(2, 4, name="attn")(y, y)])
    head = keras.layers.Dense(3, name="head", kernel_initializer=keras.initializers.RandomNormal(0, 2))
    kmodel = keras.Model(inp, head(TakeClass(name="take")(keras.layers.LayerNormalization(name="ln2")(z))))

    w = lambda a: torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(a, np.float32)))  # noqa: E731
    layers = {layer.name: layer for layer in kmodel.layers}

    class Add(torch.nn.Module):
        def forward(self, a, b):
            return a + b

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            pk, pb = layers["patch"].get_weights()
            self.patch = torch.nn.Conv2d(3, 8, 4, stride=4)
            self.patch.weight, self.patch.bias = w(pk.transpose(3, 2, 0, 1)), w(pb)
            self.cls_token = w(layers["class_token"].get_weights()[0])
            self.ln1, self.ln2 = torch.nn.LayerNorm(8, eps=1e-3), torch.nn.LayerNorm(8, eps=1e-3)
            for name in ("ln1", "ln2"):
                getattr(self, name).weight, getattr(self, name).bias = map(w, layers[name].get_weights())
            att = layers["attn"]
            dense = (att._query_dense, att._key_dense, att._value_dense)
            self.attn = torch.nn.MultiheadAttention(8, 2, batch_first=True)
            self.attn.in_proj_weight = w(np.concatenate([d.kernel.numpy().reshape(8, 8).T for d in dense]))
            self.attn.in_proj_bias = w(np.concatenate([d.bias.numpy().reshape(8) for d in dense]))
            self.attn.out_proj.weight = w(att._output_dense.kernel.numpy().reshape(8, 8).T)
            self.attn.out_proj.bias = w(att._output_dense.bias.numpy())
            self.add = Add()
            hk, hb = layers["head"].get_weights()
            self.head = torch.nn.Linear(8, 3)
            self.head.weight, self.head.bias = w(hk.T), w(hb)

        def forward(self, x):
            t = self.patch(x).flatten(2).transpose(1, 2)
            t = torch.cat([self.cls_token.expand(len(x), -1, -1), t], dim=1)
            y = self.ln1(t)
            z = self.add(t, self.attn(y, y, y, need_weights=False)[0])
            return self.head(self.ln2(z)[:, 0])

    return kmodel, Twin().eval()


@pytest.mark.torch
@pytest.mark.tf
def test_legrad_is_the_same_on_keras_and_its_torch_twin():
    torch = pytest.importorskip("torch")
    import xcam_tf
    import xcam_torch

    kmodel, twin = keras_vit_with_torch_twin()
    x = np.random.default_rng(3).normal(size=(2, 16, 16, 3)).astype(np.float32)
    xt = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    with torch.no_grad():
        np.testing.assert_allclose(twin(torch.from_numpy(xt)).numpy(), np.asarray(kmodel(x, training=False)),
                                   atol=1e-4)
    theirs = xcam_tf.cam(kmodel, x, "add", "legrad", targets=[0, 2])
    mine = xcam_torch.cam(twin, xt, "add", "legrad", targets=[0, 2])
    assert mine.shape == (2, 16, 16) and mine.max() == 1 and np.ptp(mine[1]) > 0
    np.testing.assert_allclose(mine, theirs, atol=1e-4)
    assert not any("call" in vars(layer) for layer in kmodel.layers)  # every wrap removed
    with pytest.raises(XcamError, match="not a MultiHeadAttention"):
        xcam_tf.cam(kmodel, x, "add", "legrad", options={"attention": "ln1"})


def keras_two_block_vit():
    """Two Keras transformer blocks (MultiHeadAttention 2 heads x 4, residual "add_0" / "add_1") on 4x4 patches
    with a class token, then layer norm, class token -> dense."""
    keras = pytest.importorskip("keras")

    ClassToken, TakeClass = keras_token_layers(keras)
    keras.utils.set_random_seed(1)
    inp = keras.Input((16, 16, 3))
    t = ClassToken(name="class_token")(
        keras.layers.Reshape((16, 8), name="flat")(keras.layers.Conv2D(8, 4, strides=4, name="patch")(inp)))
    for i in range(2):
        y = keras.layers.LayerNormalization(name=f"ln_{i}")(t)
        t = keras.layers.Add(name=f"add_{i}")([t, keras.layers.MultiHeadAttention(2, 4, name=f"attn_{i}")(y, y)])
    head = keras.layers.Dense(3, name="head", kernel_initializer=keras.initializers.RandomNormal(0, 2))
    return keras.Model(inp, head(TakeClass(name="take")(keras.layers.LayerNormalization(name="ln")(t))))


@pytest.mark.torch
@pytest.mark.tf
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_legrad_runs_one_forward_for_all_its_blocks(framework):
    """LeGrad's arrays come with the capture (``Capture.attention``): PyTorch from the capture's own forward
    (the patch layer runs once for a whole ``cam`` call over two blocks), Keras from one eager forward for
    both blocks; the arrays equal those of one capture per block, and the model is left as it was."""
    asks = {"head": None, "attention": None}
    if framework == "torch":
        torch = pytest.importorskip("torch")
        import xcam_torch as adapter
        model, x = tiny_torch_vit(), np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
        blocks, runs = BLOCKS, []
        model.conv_proj.register_forward_hook(lambda m, a, o: runs.append(1))
        target = xcam.targets.Class([1, 3])
        alone = [adapter.capture(model, x, b, target, gradients=False, attention=asks).attention for b in blocks]
        assert len(runs) == 2
        shared = [c.attention for c in adapter.capture(model, x, blocks, target, gradients=False, attention=asks)]
        assert len(runs) == 3   # one forward for the two blocks
        fused = adapter.cam(model, x, blocks, "legrad", targets=target)
        assert len(runs) == 4   # the whole method: one forward, no probe
        assert all(p.grad is None for p in model.parameters())
        assert torch.is_grad_enabled()
    else:
        pytest.importorskip("torch")
        import xcam_tf as adapter
        from xcam_tf._attention import block_arrays
        from xcam_tf._capture import as_inputs
        model, x = keras_two_block_vit(), np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype(np.float32)
        blocks, runs = ["add_0", "add_1"], []
        patch = model.get_layer("patch")
        call = patch.call
        object.__setattr__(patch, "call", lambda *a, **k: runs.append(1) or call(*a, **k))
        target = xcam.targets.Class([1, 2])
        layers = [model.get_layer(b) for b in blocks]
        alone = [block_arrays(model, as_inputs(x, model), [b], target)[0] for b in layers]
        assert len(runs) == 2
        shared = block_arrays(model, as_inputs(x, model), layers, target)
        assert len(runs) == 3   # one forward for the two blocks
        object.__delattr__(patch, "call")
        assert not any("call" in vars(layer) for layer in model.layers)
        captured = adapter.capture(model, x, blocks, target, gradients=False, attention=asks)
        for cap, one in zip(captured, alone):
            np.testing.assert_allclose(cap.attention["output_gradients"], one["output_gradients"], atol=1e-6)
        fused = adapter.cam(model, x, blocks, "legrad", targets=target)
    for one, both in zip(alone, shared):
        assert set(one) == set(both)
        for key in one:
            np.testing.assert_allclose(both[key], one[key], atol=1e-6, err_msg=key)
    assert np.abs(shared[0]["output_gradients"]).max() > 0
    assert not np.allclose(shared[0]["output_gradients"], shared[1]["output_gradients"])
    assert fused.max() == 1 and np.ptp(fused[0]) > 0


@pytest.mark.torch
@pytest.mark.tf
def test_legrad_bad_blocks_are_one_line_errors_on_both_frameworks():
    """A layer whose output is not tokens, and a token layer before any attention ran, are one-line errors."""
    pytest.importorskip("torch")
    import xcam_tf
    import xcam_torch

    model = tiny_torch_vit()
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    with pytest.raises(XcamError, match=r"needs a block whose output is tokens \(N, T, E\); this layer gave "
                                        r"\(2, 16, 4, 4\)"):
        xcam_torch.cam(model, x, "conv_proj", "legrad", targets=[1, 3])
    with pytest.raises(XcamError, match="^no multi-head attention ran before the block's output"):
        xcam_torch.cam(model, x, "encoder.dropout", "legrad", targets=[1, 3])
    kmodel, _ = keras_vit_with_torch_twin()
    xk = np.random.default_rng(3).normal(size=(2, 16, 16, 3)).astype(np.float32)
    with pytest.raises(XcamError, match=r"needs a block whose output is tokens \(N, T, E\); this layer gave "
                                        r"\(2, 4, 4, 8\)"):
        xcam_tf.cam(kmodel, xk, "patch", "legrad", targets=[0, 2])
    with pytest.raises(XcamError, match="^no multi-head attention ran before the block's output"):
        xcam_tf.cam(kmodel, xk, "ln1", "legrad", targets=[0, 2])
    assert not any("call" in vars(layer) for layer in kmodel.layers)  # every wrap removed after the error
