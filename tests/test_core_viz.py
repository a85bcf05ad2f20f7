"""Overlay, colormaps and feature grids: pixel values, not just shapes."""

import cv2
import numpy as np
import pytest

import xcam
from xcam import XcamError


def test_jet_endpoints_and_overlay_mix():
    # OpenCV's JET: 0 -> dark blue (0, 0, 128), 1 -> dark red (128, 0, 0)
    np.testing.assert_array_equal(xcam.colorize(np.array([[0.0, 1.0]])), [[[0, 0, 128], [128, 0, 0]]])
    img = np.full((2, 2, 3), 100, np.uint8)
    out = xcam.overlay(img, np.ones((2, 2)), alpha=0.5)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], [114, 50, 50])  # 0.5*100 + 0.5*(128, 0, 0)
    np.testing.assert_array_equal(xcam.overlay(img, np.zeros((2, 2)), alpha=0.0), img)


def test_overlay_resizes_map_and_accepts_float_and_gray_images():
    gray = np.full((4, 6), 0.5, np.float32)
    out = xcam.overlay(gray, np.zeros((2, 3)), alpha=1.0, colormap="gray")
    assert out.shape == (4, 6, 3) and (out == 0).all()


def test_overlay_rejects_bad_input():
    with pytest.raises(XcamError, match="alpha must be in"):
        xcam.overlay(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2)), alpha=2)
    with pytest.raises(XcamError, match="unknown colormap 'nope'; valid: jet"):
        xcam.overlay(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2)), colormap="nope")
    with pytest.raises(XcamError, match="NaN"):
        xcam.colorize(np.array([[np.nan]]))


def test_feature_grid_layout_and_per_channel_scaling():
    acts = np.zeros((20, 2, 2), np.float32)
    acts[0] = [[0, 1], [2, 3]]   # scaled to 0, 85, 170, 255
    acts[17] = 7.0               # constant -> black
    grid = xcam.feature_grid(acts, per_row=16, tile=2, pad=1)
    assert grid.shape == (2 * 3 + 1, 16 * 3 + 1, 3)   # 2 rows of 16 tiles of 2 px, 1 px padding
    np.testing.assert_array_equal(grid[1:3, 1:3, 0], [[0, 85], [170, 255]])
    np.testing.assert_array_equal(grid[4:6, 4:6, 0], 0)        # channel 17: row 1, col 1
    np.testing.assert_array_equal(grid[4:6, 7 * 3 + 1:7 * 3 + 3], 255)  # past the last channel: padding white



def test_gray_feature_grid_is_one_channel_of_the_rgb_grid_and_a_png_of_the_same_pixels(tmp_path):
    """``feature_grid_gray`` is the gray ``feature_grid`` as (H, W): every RGB pixel repeats it; the jet grid
    (tiles through the packed-RGB path) keeps its layout; ``write_png`` writes a gray picture as a
    grayscale PNG that reads back as the same RGB pixels."""
    from xcam.app.outputs.files import write_png

    acts = np.zeros((3, 2, 3), np.float32)
    acts[0] = [[0, 1, 2], [3, 4, 5]]   # scaled to 0, 51, 102, 153, 204, 255
    acts[2] = [[1, 1, 1], [1, 1, 2]]   # 0 ... 255 at the last cell
    gray = xcam.viz.feature_grid_gray(acts, per_row=2, tile=3, pad=1)
    # tiles of 3 x 2 px (w > h: the long side is 3), 2 rows x 2 columns, 1 px pad
    assert gray.shape == (2 * 3 + 1, 2 * 4 + 1) and gray.dtype == np.uint8
    np.testing.assert_array_equal(gray[1:3, 1:4], [[0, 51, 102], [153, 204, 255]])
    np.testing.assert_array_equal(gray[4:6, 1:4], [[0, 0, 0], [0, 0, 255]])
    np.testing.assert_array_equal(gray[4:6, 5:8], 255)   # no fourth channel: white
    rgb = xcam.feature_grid(acts, per_row=2, tile=3, pad=1)
    np.testing.assert_array_equal(rgb, np.repeat(gray[..., None], 3, axis=2))
    jet = xcam.feature_grid(acts, per_row=2, tile=3, pad=1, colormap="jet")
    np.testing.assert_array_equal(jet[1:3, 1:4], xcam.colorize(acts[0] / 5))
    np.testing.assert_array_equal(jet[4:6, 5:8], 255)
    write_png(tmp_path / "gray.png", gray)
    write_png(tmp_path / "rgb.png", rgb)
    assert cv2.imread(str(tmp_path / "gray.png"), cv2.IMREAD_UNCHANGED).ndim == 2
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "gray.png"), cv2.IMREAD_COLOR),
                                  cv2.imread(str(tmp_path / "rgb.png"), cv2.IMREAD_COLOR))

def test_overlay_of_a_large_image_works_in_bands():
    # 3000 x 3000: the overlay once held four float32 copies of the image (432 MB here; 6 GB peak RSS for a
    # 10,000 x 10,000 photo in `xcam explain`); in bands it holds the uint8 image, its output and the resized map
    import tracemalloc

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (3000, 3000, 3), dtype=np.uint8)
    heat = rng.random((7, 7)).astype(np.float32)
    tracemalloc.start()
    out = xcam.overlay(img, heat, alpha=0.4)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200e6, peak / 1e6  # measured 128 MB (before: 495 MB)
    up = cv2.resize(heat, (3000, 3000), interpolation=cv2.INTER_LINEAR)
    rows = slice(1000, 1010)  # the plain formula on a slice
    expected = np.floor(0.6 * img[rows].astype(np.float64) + 0.4 * xcam.colorize(up[rows]) + 0.5)
    np.testing.assert_allclose(out[rows], expected, atol=1)


def test_layer_recorder_never_takes_a_freed_output_for_a_copy():
    """A layer is marked as handing on an earlier layer's output only when it returns that very object: an
    output freed during the forward must not lend its id to a later, unrelated one (CPython reuses ids)."""
    from xcam.layers import LayerRecorder

    rec = LayerRecorder()
    rec.saw("drop", (1, 2, 3, 3), object())      # the only reference: freed at once without the recorder
    rec.saw("conv", (1, 2, 3, 3), object())      # would very likely get the same id
    kept = object()
    rec.saw("norm", (1, 2, 3, 3), kept)
    rec.saw("identity", (1, 2, 3, 3), kept)      # the same object: a copy of "norm"
    same = {r.name: r.same_as for r in rec.records({n: "X" for n in rec.order}, {"drop", "identity"})}
    assert same == {"drop": None, "conv": None, "norm": None, "identity": "norm"}


@pytest.mark.parametrize("alpha", [0.5, 0.25, 0.75, 37 / 256, 0.0, 1.0, 0.4, 1 / 3])
def test_overlay_is_the_rounded_float32_mix_for_every_pair_of_bytes(alpha):
    # every (image byte a, colour byte b): the gray colormap turns heat b / 255 into b; out = floor((1 - alpha) a
    # + alpha b + 0.5) in float32 (halves round up), whichever way overlay computes it (dyadic alphas: OpenCV)
    a = np.repeat(np.arange(256, dtype=np.uint8), 256).reshape(256, 256)
    b = np.tile(np.arange(256, dtype=np.uint8), 256).reshape(256, 256)
    img = np.stack([a, a, a], axis=2)
    mixed = a.astype(np.float32) * np.float32(1.0 - alpha) + np.float32(alpha) * b.astype(np.float32) + 0.5
    out = xcam.overlay(img, b.astype(np.float32) / 255.0, alpha=alpha, colormap="gray")
    np.testing.assert_array_equal(out, np.repeat(mixed.astype(np.uint8)[:, :, None], 3, axis=2))
    if alpha == 0.5:
        assert out[1, 0, 0] == 1 and out[3, 0, 0] == 2 and out[2, 1, 0] == 2   # (1+0)/2, (3+0)/2, (2+1)/2 up


@pytest.mark.parametrize("shape, per_row, tile, pad", [((37, 7, 7), 16, None, 1), ((5, 3, 4), 2, 11, 2),
                                                        ((6, 40, 20), 4, None, 0), ((3, 1, 1), 8, 5, 3)])
def test_gray_feature_grid_is_each_tile_resized_by_opencv_in_its_place(shape, per_row, tile, pad):
    from xcam.viz import feature_grid_gray
    acts = np.random.default_rng(len(shape) + per_row).standard_normal(shape).astype(np.float32)
    grid = feature_grid_gray(acts, per_row=per_row, tile=tile, pad=pad)
    c, h, w = shape
    side = tile or max(32, h)
    tw, th = max(1, round(side * w / max(h, w))), max(1, round(side * h / max(h, w)))
    cols = min(per_row, c)
    rows = -(-c // cols)
    expected = np.full((rows * (th + pad) + pad, cols * (tw + pad) + pad), 255, np.uint8)
    for k in range(c):                                     # one channel at a time: min-max, levels, resize
        a = acts[k]
        span = a.max() - a.min()
        levels = np.clip(((a - a.min()) / span if span > 0 else 0 * a) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        y, x = pad + (k // cols) * (th + pad), pad + (k % cols) * (tw + pad)
        expected[y:y + th, x:x + tw] = cv2.resize(levels, (tw, th), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(grid, expected)
