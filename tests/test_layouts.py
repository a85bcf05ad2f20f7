"""Layer layouts (xcam.layouts): tokens, channels-last and custom reshapes to channels first and back, prefix
tokens counted from parameters, and the detection rule, on hand-made arrays (no framework)."""

import numpy as np
import pytest

from xcam import Capture, Layout, XcamError, compute_cam
from xcam.layouts import as_layout, channel_axis, count_prefix, detect, token_grid


def tokens(n=2, prefix=1, side=2, c=3):
    return np.arange(n * (prefix + side * side) * c, dtype=np.float32).reshape(n, prefix + side * side, c)


def test_tokens_drop_the_prefix_and_lie_on_the_grid_row_major():
    a = tokens()                                                                 # (2, 1 + 4, 3)
    out = Layout("tokens", 1, (2, 2)).to_canonical(a)
    assert out.shape == (2, 3, 2, 2)
    # patch token t (after the class token) is grid cell (t // 2, t % 2); channel c is its c-th feature
    for t in range(4):
        np.testing.assert_array_equal(out[:, :, t // 2, t % 2], a[:, 1 + t, :])


def test_tokens_back_keep_the_prefix_tokens_of_the_original():
    a = tokens(n=1, prefix=2)
    layout = Layout("tokens", 2, (2, 2))
    np.testing.assert_array_equal(layout.from_canonical(layout.to_canonical(a), a), a)
    changed = layout.to_canonical(a) * 0 + 7                                    # a batch of one ablated copy
    back = layout.from_canonical(np.repeat(changed, 3, axis=0), a)
    assert back.shape == (3, 6, 3)
    np.testing.assert_array_equal(back[:, :2], np.repeat(a[:, :2], 3, axis=0))  # class + distillation token kept
    assert (back[:, 2:] == 7).all()


@pytest.mark.parametrize("spatial", [(5,), (3, 4), (2, 3, 4)])
def test_channels_last_round_trip_every_rank(spatial):
    a = np.random.default_rng(0).normal(size=(2, *spatial, 6)).astype(np.float32)
    layout = Layout("channels_last")
    out = layout.to_canonical(a)
    assert out.shape == (2, 6, *spatial) and layout.canonical_shape(a.shape) == out.shape
    np.testing.assert_array_equal(out[:, 4], a[..., 4])
    np.testing.assert_array_equal(layout.from_canonical(out, a[:1]), a)


def vit_reshape(a):
    """pytorch-grad-cam's ViT reshape_transform, written for NumPy."""
    return a[:, 1:].reshape(a.shape[0], 2, 2, a.shape[2]).transpose(0, 3, 1, 2)


def test_custom_reshape_matches_tokens_and_its_inverse_is_read_off_the_indices():
    a = tokens(n=1)
    custom, builtin = Layout("custom", reshape=vit_reshape), Layout("tokens", 1, (2, 2))
    np.testing.assert_array_equal(custom.to_canonical(a), builtin.to_canonical(a))
    values = np.random.default_rng(1).normal(size=(4, 3, 2, 2)).astype(np.float32)
    np.testing.assert_array_equal(custom.from_canonical(values, a), builtin.from_canonical(values, a))
    assert custom.canonical_shape((5, 5, 3)) == (5, 3, 2, 2)


def test_custom_reshape_that_computes_cannot_be_written_back():
    layout = Layout("custom", reshape=lambda a: vit_reshape(a) * 2)
    with pytest.raises(XcamError, match="must only move and select elements"):
        layout.from_canonical(np.zeros((1, 3, 2, 2), np.float32), tokens(n=1))


def test_token_grid_is_square_for_images_and_a_line_for_signals():
    assert token_grid(197, 1, 2) == (14, 14)
    assert token_grid(198, 2, 2) == (14, 14)                                    # DeiT: class + distillation
    assert token_grid(50, 1, 1) == (49,)
    with pytest.raises(XcamError, match=r"197 tokens = 0 prefix .* 197 is not a square grid; pass reshape="):
        token_grid(197, 0, 2)                                                   # uncounted class token
    with pytest.raises(XcamError, match="no patch tokens left"):
        token_grid(1, 1, 2)


def test_prefix_tokens_are_counted_from_parameters():
    torchvision_vit = {"class_token": (1, 1, 768), "encoder.pos_embedding": (1, 197, 768),
                       "conv_proj.weight": (768, 3, 16, 16)}
    assert count_prefix(torchvision_vit) == 1
    timm = {"cls_token": (1, 1, 192), "reg_token": (1, 4, 192), "pos_embed": (1, 196, 192)}
    assert count_prefix(timm) == 5
    hf_deit = {"deit.embeddings.cls_token": (1, 1, 192), "deit.embeddings.distillation_token": (1, 1, 192)}
    assert count_prefix(hf_deit) == 2
    assert count_prefix({"vit/class_token/cls": (1, 1, 16)}) == 1               # a Keras variable path
    assert count_prefix({"conv.weight": (8, 3, 3, 3)}) == 0
    assert count_prefix(timm, declared=1) == 1                                  # timm's num_prefix_tokens wins


@pytest.mark.parametrize("shape, kwargs, expected", [
    # torchvision ViT block: its last linear layer is 768 wide, on the last axis -> tokens, class token counted
    ((2, 197, 768), dict(default="channels_first", input_rank=2, own=("last", 768), prefix=1), "tokens 1+14x14"),
    # a dropout inside the ViT (no own size): 768 is a model width, 197 is not -> tokens
    ((2, 197, 768), dict(default="channels_first", input_rank=2, sizes={768, 3072}, prefix=1), "tokens 1+14x14"),
    # Swin stage (N, h, w, C) and torchvision Swin's final permute (N, C, h, w)
    ((2, 7, 7, 768), dict(default="channels_first", input_rank=2, own=("last", 768)), "channels_last"),
    ((2, 768, 7, 7), dict(default="channels_first", input_rank=2, sizes={96, 768}), "channels_first"),
    # PyTorch Conv1d / Conv3d; a ReLU after them (channels are a model size, positions are not)
    ((2, 16, 50), dict(default="channels_first", input_rank=1, own=("first", 16)), "channels_first"),
    ((2, 16, 50), dict(default="channels_first", input_rank=1, sizes={16, 32}), "channels_first"),
    ((2, 8, 4, 7, 7), dict(default="channels_first", input_rank=3, own=("first", 8)), "channels_first"),
    # Keras: channels last for every rank; a (N, T, C) output under an image input is tokens
    ((2, 50, 16), dict(default="channels_last", input_rank=1), "channels_last"),
    ((2, 4, 7, 7, 8), dict(default="channels_last", input_rank=3), "channels_last"),
    ((2, 17, 16), dict(default="channels_last", input_rank=2, prefix=1), "tokens 1+4x4"),
    # a 1-D transformer with a class token: tokens on a line
    ((2, 51, 16), dict(default="channels_last", input_rank=1, prefix=1), "tokens 1+50"),
])
def test_detection_rule(shape, kwargs, expected):
    assert detect(shape, **kwargs).describe() == expected


def test_detection_refuses_outputs_without_spatial_axes():
    with pytest.raises(XcamError, match=r"shape \(2, 10\) has no spatial axes"):
        detect((2, 10), default="channels_first", input_rank=2)


def test_channel_axis_ties_fall_back_to_the_framework_default():
    assert channel_axis((2, 8, 8), "channels_first", sizes={8}) == "first"
    assert channel_axis((2, 8, 8), "channels_last", sizes={8}) == "last"
    assert channel_axis((2, 8, 9), "channels_last", own=("first", 3), sizes=()) == "last"  # own size must match


def test_reshape_override():
    assert as_layout(vit_reshape, (2, 5, 3), 2).kind == "custom"
    assert as_layout("tokens", (2, 5, 3), 2, prefix=1).describe() == "tokens 1+2x2"
    assert as_layout(Layout("tokens", 1), (2, 5, 3), 2).grid == (2, 2)
    assert as_layout("channels_last", (2, 4, 4, 3), 2).kind == "channels_last"
    with pytest.raises(XcamError, match="reshape= takes a callable"):
        as_layout(3, (2, 5, 3), 2)
    with pytest.raises(XcamError, match="unknown layout 'nchw'"):
        as_layout("nchw", (2, 5, 3), 2)
    assert Layout("tokens", 1, (14, 14)).to_json() == {"kind": "tokens", "prefix": 1, "grid": [14, 14]}


def test_gradcam_on_tokens_equals_gradcam_on_the_grid():
    # the same activations and gradients handed over as tokens give the map of the grid they lie on
    rng = np.random.default_rng(2)
    a, g = rng.normal(size=(2, 1 + 9, 4)).astype(np.float32), rng.normal(size=(2, 1 + 9, 4)).astype(np.float32)
    layout = detect(a.shape, default="channels_last", input_rank=2, prefix=1)
    cap = Capture(activations=layout.to_canonical(a), gradients=layout.to_canonical(g),
                  scores=np.zeros((2, 3), np.float32), targets=np.array([0, 1]))
    w = g[:, 1:].mean(axis=1)                                                     # (N, C)
    raw = np.maximum(np.einsum("nc,ntc->nt", w, a[:, 1:]), 0).reshape(2, 3, 3)
    lo, hi = raw.min(axis=(1, 2), keepdims=True), raw.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(compute_cam(cap, "gradcam"), (raw - lo) / (hi - lo), atol=1e-6)
