"""The synthetic ground-truth benchmark: exact masks where the shapes are drawn, a network that learns the task in
seconds, and every method's pointing game and energy on both frameworks from ported weights (the full table:
benchmarks/synthetic.py and the README)."""

import numpy as np
import pytest

from xcam.app.jobs import synthetic as S


def test_dataset_draws_each_shape_where_its_mask_is():
    images, labels, masks = S.make_dataset(30, seed=3)
    assert images.shape == (30, 3, 32, 32) and images.dtype == np.float32
    assert np.bincount(labels).tolist() == [10, 10, 10]
    for i in range(30):
        ys, xs = np.nonzero(masks[i])
        y0, x0 = ys.min(), xs.min()
        np.testing.assert_array_equal(masks[i, y0:y0 + 8, x0:x0 + 8], S._shape(int(labels[i])))
        colour = images[i][:, ys[0], xs[0]]
        assert any(np.allclose(colour, c) for c in S.PALETTE)
        np.testing.assert_array_equal(images[i][:, masks[i]], np.repeat(colour[:, None], masks[i].sum(), 1))
        # the distractor: exactly 16 other pixels of another palette colour, outside the shape's box
        other = np.zeros((32, 32), bool)
        for c in S.PALETTE:
            if not np.allclose(c, colour):
                other |= np.all(np.abs(images[i] - c[:, None, None]) < 1e-6, axis=0)
        assert other.sum() == 16 and not (other & masks[i]).any()
    assert [int(S._shape(k).sum()) for k in range(3)] == [64, 28, 48]


@pytest.mark.torch
@pytest.mark.tf
def test_both_frameworks_give_the_same_localization_scores(synthetic_model):
    pytest.importorskip("tensorflow")
    import xcam
    import xcam_tf
    import xcam_torch

    model = synthetic_model
    kmodel = S.keras_twin(model)
    held_out, truth, _ = S.make_dataset(100, seed=1000)
    assert S.accuracy(S._torch_predict(model), held_out, truth) >= 0.95  # the task is learned
    images, labels, masks = S.make_dataset(6, seed=4)
    t = S.localization(xcam_torch, model, images, labels, masks)
    k = S.localization(xcam_tf, kmodel, images, labels, masks)
    cnn = {m for m in xcam.method_names() if not xcam.get_method(m).needs_attention}  # legrad: transformers only
    assert set(t) == set(k) == cnn | {"random", "centre", "sobel"}
    for name in t:
        np.testing.assert_array_equal(t[name]["pointing_game"], k[name]["pointing_game"], err_msg=name)
        np.testing.assert_allclose(t[name]["energy_pointing_game"], k[name]["energy_pointing_game"], atol=1e-5,
                                   err_msg=name)
    # the energy of the centre baseline by its formula: the share of the Gaussian inside each mask
    d = (np.arange(32) - 15.5) / 8
    g = np.exp(-0.5 * (d[:, None] ** 2 + d[None, :] ** 2))
    g = (g - g.min()) / (g.max() - g.min())
    np.testing.assert_allclose(t["centre"]["energy_pointing_game"], (g * masks).sum((1, 2)) / g.sum(), rtol=1e-5)


def test_markdown_table_lists_every_row():
    row = {"pointing_game": {"torch": 0.5, "tf": 0.5, "max_diff": 0.0},
           "energy_pointing_game": {"torch": 0.25, "tf": 0.25, "max_diff": 1e-7}}
    text = S.markdown({"table": {"gradcam": row, "random": row}, "accuracy": {"torch": 1.0, "tf": 1.0},
                       "images": 10, "seed": 0, "tolerance": 2, "object_share": 0.05})
    lines = text.splitlines()
    assert lines[2] == "| `gradcam` | 0.500 | 0.500 | 0.250 | 0.250 | 1.0e-07 |"
    assert lines[3].startswith("| *random* (baseline) |") and "accuracy torch 1.000" in lines[-1]


def test_readme_table_lists_every_method_and_baseline():
    from pathlib import Path

    import xcam

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("<!-- synthetic-table -->")[1].split("<!-- /synthetic-table -->")[0]
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| `") or "(baseline)" in line]
    names = [r.split("`")[1] if r.startswith("`") else r.split("*")[1] for r in rows]
    cnn = [m for m in xcam.methods() if not xcam.get_method(m).needs_attention]  # legrad: transformers only
    assert names == cnn + ["random", "centre", "sobel"]
