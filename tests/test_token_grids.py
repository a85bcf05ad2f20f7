"""Token grids of any shape (#21): a tiny ViT-like model (8x8/8 patch-embedding convolution, class and register
tokens, no fixed position embedding) on a non-square 32x48 input has 4x6 patch tokens; the grid comes from the
input size and the patch embedding, checked against a hand reshape, and Ablation-CAM writes back in that grid."""

import numpy as np
import pytest

from xcam.errors import XcamError
from xcam.layouts import patch_grid, token_grid

torch = pytest.importorskip("torch")
import xcam_torch  # noqa: E402


class TinyTokens(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.patch = torch.nn.Conv2d(3, 8, 8, stride=8)
        self.cls_token = torch.nn.Parameter(torch.randn(1, 1, 8))
        self.reg_token = torch.nn.Parameter(torch.randn(1, 2, 8))
        self.mix = torch.nn.Linear(8, 8)
        self.head = torch.nn.Linear(8, 4)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        n = len(t)
        t = torch.cat([self.cls_token.expand(n, -1, -1), self.reg_token.expand(n, -1, -1), t], 1)
        t = torch.tanh(self.mix(t))
        return self.head(t[:, 3:].mean(1) + t[:, 0])


def test_patch_grid_and_token_grid_closed_forms():
    assert patch_grid((224, 308), (16, 16), (16, 16)) == (14, 19)
    assert token_grid(3 + 24, 3, 2, (4, 6)) == (4, 6)
    assert token_grid(1 + 64, 1, 2, (4, 16)) == (4, 16)  # a square count, but the input's grid is 4x16
    assert token_grid(1 + 16, 1, 2, (4, 6)) == (4, 4)  # the patch grid does not hold them: square
    with pytest.raises(XcamError, match="not a square grid"):
        token_grid(1 + 24, 1, 2, (5, 5))


def test_non_square_tokens_follow_the_input_grid_against_a_hand_reshape():
    model = TinyTokens().eval()
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 48)).astype(np.float32)
    kept = {}
    h = model.mix.register_forward_hook(lambda m, a, o: kept.setdefault("o", o))
    logits = model(torch.from_numpy(x))
    h.remove()
    (g,) = torch.autograd.grad(logits[:, 1].sum(), kept["o"])
    cap = xcam_torch.capture(model, x, "mix", targets=1)
    assert cap.layout.describe() == "tokens 3+4x6"
    hand = lambda t: t[:, 3:].reshape(2, 4, 6, 8).permute(0, 3, 1, 2).detach().numpy()  # noqa: E731
    np.testing.assert_allclose(cap.activations, hand(kept["o"]), atol=1e-6)
    np.testing.assert_allclose(cap.gradients, hand(g), atol=1e-6)
    maps = xcam_torch.cam(model, x, "mix", "ablationcam", targets=1)
    assert maps.shape == (2, 32, 48) and np.ptp(maps) > 0


def test_keras_non_square_tokens_follow_the_input_grid_against_a_hand_reshape():
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    import xcam_tf

    class ClassToken(keras.layers.Layer):
        def build(self, shape):
            self.cls_token = self.add_weight(shape=(1, 1, shape[-1]), initializer="random_normal", name="cls_token")

        def call(self, x):
            token = keras.ops.broadcast_to(self.cls_token, (keras.ops.shape(x)[0], 1, x.shape[-1]))
            return keras.ops.concatenate([token, x], axis=1)

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 24, 3))
    t = ClassToken(name="class_token")(keras.layers.Reshape((24, 8))(keras.layers.Conv2D(8, 4, strides=4)(inp)))
    mid = keras.Model(inp, keras.layers.Dense(8, activation="tanh", name="mix")(t))
    model = keras.Model(inp, keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling1D()(mid.output)))
    x = np.random.default_rng(0).normal(size=(2, 16, 24, 3)).astype(np.float32)
    cap = xcam_tf.capture(model, x, "mix", targets=1)
    assert cap.layout.describe() == "tokens 1+4x6"
    a = mid(tf.constant(x)).numpy()
    np.testing.assert_allclose(cap.activations, a[:, 1:].reshape(2, 4, 6, 8).transpose(0, 3, 1, 2), atol=1e-6)
    maps = xcam_tf.cam(model, x, "mix", "ablationcam", targets=1)
    assert maps.shape == (2, 16, 24) and np.ptp(maps) > 0
