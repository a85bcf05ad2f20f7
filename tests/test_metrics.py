"""Golden tests of xcam.metrics: closed-form values on tiny cases, forward counts, and every bad input."""

import cv2
import numpy as np
import pytest

from xcam.errors import XcamError
from xcam.metrics import (
    average_drop,
    boxes_to_masks,
    cascading_randomization,
    centre_gaussian,
    confidence_metrics,
    deletion,
    energy_pointing_game,
    impute_linear,
    impute_noisy_linear,
    insertion,
    max_sensitivity,
    pointing_game,
    random_map,
    relevance_mass,
    relevance_rank,
    road,
    sobel_map,
    spearman,
    ssim,
)
from xcam.metrics.deletion import step_counts
from xcam.metrics.road import STENCIL


class SumModel:
    """logits = [sum of every input value, 0]: class 0's logit is the pixel sum, its probability sigmoid(sum)."""

    def __init__(self):
        self.batches = []

    def __call__(self, x):
        assert x.dtype == np.float32 and x.ndim == 4
        self.batches.append(x.copy())
        return np.stack([x.sum(axis=(1, 2, 3)), np.zeros(len(x))], axis=1)

    @property
    def sizes(self):
        return [len(b) for b in self.batches]


def sigmoid(z):
    return 1 / (1 + np.exp(-np.asarray(z, dtype=np.float64)))


IMAGE = np.array([[[[1, 2], [3, 4]]]], dtype=np.float32)  # (1, 1, 2, 2)
# order by the map: (0,1)=0.9, then the tie 0.5 in row-major order (1,0) before (1,1), then (0,0)
MAP = np.array([[[0.1, 0.9], [0.5, 0.5]]])


# ---------------------------------------------------------------- deletion / insertion


def test_deletion_golden_logit_with_stable_ties():
    model = SumModel()
    r = deletion(model, IMAGE, MAP, [0], step=0.25, score="logit")
    np.testing.assert_allclose(r.curves, [[10, 8, 5, 1, 0]])
    np.testing.assert_allclose(r.x, [0, 0.25, 0.5, 0.75, 1])
    assert r.per_image[0] == pytest.approx(0.25 * (9 + 6.5 + 3 + 0.5))  # 4.75
    assert r.forwards == 5 and model.sizes == [1, 4]  # the unperturbed forward once, then the 4 steps together


def test_insertion_golden_logit_zeros():
    r = insertion(SumModel(), IMAGE, MAP, [0], step=0.25, substrate="zeros", score="logit")
    np.testing.assert_allclose(r.curves, [[0, 2, 5, 9, 10]])
    assert r.per_image[0] == pytest.approx(0.25 * (1 + 3.5 + 7 + 9.5))  # 5.25


def test_deletion_probability_is_the_softmax_of_the_target():
    r = deletion(SumModel(), IMAGE, MAP, [0], step=0.25)
    expected = sigmoid([10, 8, 5, 1, 0])
    np.testing.assert_allclose(r.curves[0], expected, rtol=1e-6)
    assert r.per_image[0] == pytest.approx(np.sum((expected[1:] + expected[:-1]) / 2 * 0.25), rel=1e-6)
    other = deletion(SumModel(), IMAGE, MAP, [1], step=0.25)  # class 1: probability 1 - sigmoid(sum)
    np.testing.assert_allclose(other.curves[0], 1 - expected, rtol=1e-6)


def test_reused_scores_save_the_unperturbed_forward():
    model = SumModel()
    scores = SumModel()(IMAGE)
    r = deletion(model, IMAGE, MAP, [0], step=0.25, score="logit", scores=scores)
    assert r.forwards == 4 and model.sizes == [4]
    assert r.per_image[0] == pytest.approx(4.75)
    model = SumModel()
    r = insertion(model, IMAGE, MAP, [0], step=0.25, substrate="zeros", score="logit", scores=scores)
    assert r.forwards == 4 and model.sizes == [4]
    assert not np.any(np.all(np.stack(model.batches[0]) == IMAGE[0], axis=(1, 2, 3)))  # the image is never re-run


def test_forwards_are_batched_across_images_and_steps():
    rng = np.random.default_rng(0)
    x = rng.random((3, 2, 4, 4), dtype=np.float32)
    m = rng.random((3, 4, 4))
    model = SumModel()
    r = deletion(model, x, m, [0, 1, 0], step=0.25, scores=SumModel()(x), batch_size=5)
    assert model.sizes == [5, 5, 2] and r.forwards == 12  # 3 images x 4 steps, 5 at a time
    one = deletion(SumModel(), x, m, [0, 1, 0], step=0.25, batch_size=1)
    np.testing.assert_allclose(r.per_image, one.per_image, rtol=1e-12)
    # each image's curve equals the same image run alone
    alone = deletion(SumModel(), x[1:2], m[1:2], [1], step=0.25)
    np.testing.assert_allclose(r.curves[1], alone.curves[0], rtol=1e-12)


def test_step_counts_and_short_last_step():
    np.testing.assert_array_equal(step_counts(10, 0.3), [0, 3, 6, 9, 10])
    np.testing.assert_array_equal(step_counts(400, 0.05), np.arange(0, 401, 20))
    r = deletion(SumModel(), np.ones((1, 1, 2, 5), np.float32), np.linspace(1, 0, 10).reshape(1, 2, 5), [0],
                 step=0.3, score="logit")
    np.testing.assert_allclose(r.x, [0, 0.3, 0.6, 0.9, 1])
    np.testing.assert_allclose(r.curves, [[10, 7, 4, 1, 0]])
    assert r.per_image[0] == pytest.approx(0.3 * 8.5 + 0.3 * 5.5 + 0.3 * 2.5 + 0.1 * 0.5)


def test_blur_substrate_is_the_rise_gaussian():
    rng = np.random.default_rng(1)
    x = rng.random((1, 2, 12, 12), dtype=np.float32)
    model = SumModel()
    r = insertion(model, x, np.zeros((1, 12, 12)), [0], step=1.0, score="logit")  # steps: substrate, image
    blurred = np.stack([cv2.GaussianBlur(x[0, c], (11, 11), 5) for c in range(2)])
    np.testing.assert_allclose(model.batches[1][0], blurred, atol=1e-6)
    np.testing.assert_allclose(r.curves[0], [blurred.sum(), x.sum()], rtol=1e-5)


# ---------------------------------------------------------------- Average Drop / Increase / Gain


class FirstPixelModel:
    """logits = [x[0, 0, 0], 0]: the probability of class 0 is sigmoid(first pixel)."""

    def __init__(self):
        self.sizes = []

    def __call__(self, x):
        self.sizes.append(len(x))
        return np.stack([x[:, 0, 0, 0], np.zeros(len(x))], axis=1)


def test_average_drop_increase_gain_golden():
    logit = np.log(4.0)  # sigmoid(+-ln 4) = 0.8 / 0.2; with the map at 0.5: sigmoid(+-ln 2) = 2/3 / 1/3
    x = np.zeros((3, 1, 2, 2), np.float32)
    x[:, 0, 0, 0] = [logit, -logit, logit]
    maps = np.ones((3, 2, 2))
    maps[:, 0, 0] = [0.5, 0.5, 1.0]
    model = FirstPixelModel()
    res = confidence_metrics(model, x, maps, [0, 0, 0], batch_size=2)
    np.testing.assert_allclose(res["average_drop"].per_image, [(0.8 - 2 / 3) / 0.8 * 100, 0, 0], atol=1e-4)
    np.testing.assert_allclose(res["increase_in_confidence"].per_image, [0, 100, 0])
    np.testing.assert_allclose(res["average_gain"].per_image, [0, (1 / 3 - 0.2) / 0.8 * 100, 0], atol=1e-4)
    assert res["average_drop"].mean == pytest.approx(50 / 9, abs=1e-4)
    assert res["increase_in_confidence"].mean == pytest.approx(100 / 3)
    assert model.sizes == [2, 1, 2, 1] and res["average_gain"].forwards == 6
    model = FirstPixelModel()
    ad = average_drop(model, x, maps, [0, 0, 0], scores=np.stack([x[:, 0, 0, 0], np.zeros(3)], axis=1))
    assert model.sizes == [3] and ad.forwards == 3
    assert ad.mean == pytest.approx(50 / 9, abs=1e-4)


# ---------------------------------------------------------------- ROAD


def dense_impute(img, removed):
    """The reference's system built explicitly and solved densely: (C, H, W) image, (H, W) removed mask."""
    c, h, w = img.shape
    idx = {p: k for k, p in enumerate(zip(*np.nonzero(removed)))}
    a = np.zeros((len(idx), len(idx)))
    b = np.zeros((len(idx), c))
    for (i, j), k in idx.items():
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                q = (i + di, j + dj)
                if (di, dj) == (0, 0) or not (0 <= q[0] < h and 0 <= q[1] < w):
                    continue  # neighbours outside the image are dropped, the weights renormalized
                wt = STENCIL[di + 1, dj + 1]
                a[k, k] += wt
                if removed[q]:
                    a[k, idx[q]] -= wt
                else:
                    b[k] += wt * img[:, q[0], q[1]]
    out = img.astype(np.float64).copy()
    sol = np.linalg.solve(a, b)
    for (i, j), k in idx.items():
        out[:, i, j] = sol[k]
    return out


def test_linear_imputer_matches_a_dense_solve():
    rng = np.random.default_rng(2)
    imgs = rng.normal(size=(4, 3, 6, 6)).astype(np.float32)
    removed = rng.random((4, 6, 6)) < np.array([0.2, 0.5, 0.8, 0.95])[:, None, None]
    removed[3, 0, 0] = False  # one kept pixel in a corner: everything else removed
    removed[3, 1:, :] = True
    got = impute_linear(imgs, removed, tol=1e-10)
    for i in range(4):
        np.testing.assert_allclose(got[i], dense_impute(imgs[i], removed[i]), atol=1e-5, rtol=0)
        assert np.array_equal(got[i][:, ~removed[i]], imgs[i][:, ~removed[i]])
    np.testing.assert_allclose(got[3], np.broadcast_to(imgs[3][:, :1, :1], (3, 6, 6)), atol=1e-5)  # a constant


def test_noisy_imputer_adds_noise_to_removed_pixels_only():
    rng = np.random.default_rng(3)
    imgs = rng.normal(size=(2, 3, 20, 20)).astype(np.float32)
    removed = rng.random((2, 20, 20)) < 0.5
    clean = impute_linear(imgs, removed)
    noisy = impute_noisy_linear(imgs, removed, noise=0.01, rng=0)
    assert np.array_equal(noisy[:, :, ~removed[0]][0], imgs[:, :, ~removed[0]][0])
    diff = (noisy - clean)[np.broadcast_to(removed[:, None], imgs.shape)]
    assert 0.008 < diff.std() < 0.012 and abs(diff.mean()) < 0.002
    assert np.array_equal(impute_noisy_linear(imgs, removed, noise=0.0), clean.astype(np.float32))


def test_road_golden_curve_and_forwards():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 2, 6, 6)).astype(np.float32)
    maps = rng.random((2, 6, 6))
    model = SumModel()
    r = road(model, x, maps, [0, 0], percentiles=(25, 50), noise=0.0, score="logit", batch_size=3, tol=1e-10)
    assert model.sizes == [3, 1] and r.forwards == 4  # 2 images x 2 percentages; no unperturbed forward
    for i in range(2):
        order = np.argsort(-maps[i].ravel(), kind="stable")
        for j, k in enumerate((9, 18)):  # 25 % and 50 % of 36 pixels
            removed = np.zeros(36, bool)
            removed[order[:k]] = True
            expected = dense_impute(x[i], removed.reshape(6, 6)).sum()
            assert r.curves[i, j] == pytest.approx(expected, abs=1e-4)
    np.testing.assert_allclose(r.per_image, r.curves.mean(axis=1))
    np.testing.assert_allclose(r.x, [0.25, 0.5])
    model = SumModel()
    d = road(model, x, maps, [0, 0], percentiles=(25, 50), noise=0.0, score="logit", difference=True,
             scores=SumModel()(x), tol=1e-10)
    np.testing.assert_allclose(d.per_image, r.per_image - x.sum(axis=(1, 2, 3)), atol=1e-4)
    assert d.forwards == 4


def test_road_morf_and_lerf_remove_the_top_and_bottom_pixels():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    maps = (np.arange(16) / 15).reshape(1, 4, 4)  # the highest values sit at the end
    for order, changed in (("morf", np.arange(12, 16)), ("lerf", np.arange(0, 4))):
        model = SumModel()
        road(model, x, maps, [0], order=order, percentiles=(25,), noise=0.01)
        moved = np.flatnonzero(model.batches[0][0, 0].ravel() != x.ravel())
        np.testing.assert_array_equal(moved, changed)


# ---------------------------------------------------------------- localization


def point_map(y, x, size=41):
    m = np.zeros((1, size, size))
    m[0, y, x] = 1
    return m


@pytest.mark.parametrize(("point", "hit"), [
    ((20, 34), 1), ((20, 35), 0), ((20, 36), 0),  # 14, 15 (TorchRay: distance < tolerance), 16 px
    ((30, 31), 1), ((29, 32), 0),  # diagonal: sqrt(221) = 14.87 hits, sqrt(225) = 15 misses
    ((20, 20), 1),
])
def test_pointing_game_tolerance_15(point, hit):
    mask = point_map(20, 20).astype(bool)
    assert pointing_game(point_map(*point), mask).per_image[0] == hit


def test_pointing_game_tolerance_zero_and_ties():
    mask = np.zeros((1, 5, 5), bool)
    mask[0, 2, 2] = True
    assert pointing_game(point_map(2, 2, 5), mask, tolerance=0).per_image[0] == 1
    assert pointing_game(point_map(2, 3, 5), mask, tolerance=0).per_image[0] == 0
    tie = np.zeros((1, 5, 5))
    tie[0, 0, 0] = tie[0, 2, 2] = 1  # two maxima: the first in row-major order, (0, 0), is the point
    assert pointing_game(tie, mask, tolerance=1).per_image[0] == 0
    r = pointing_game(np.concatenate([point_map(2, 2, 5), tie]), np.concatenate([mask, mask]), tolerance=1)
    np.testing.assert_array_equal(r.per_image, [1, 0])
    assert r.mean == 0.5


def test_energy_and_relevance_mass_and_rank():
    maps = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    top_row = np.array([[[True, True], [False, False]]])
    assert energy_pointing_game(maps, top_row).per_image[0] == pytest.approx(0.3)
    assert relevance_mass(maps, top_row).per_image[0] == pytest.approx(0.3)
    diagonal = np.array([[[True, False], [False, True]]])
    assert relevance_rank(maps, diagonal).per_image[0] == 0.5  # top-2 = {4, 3}: one of them in the mask
    assert relevance_rank(maps, top_row).per_image[0] == 0.0
    flat = np.ones((1, 2, 2))  # ties: row-major order, so the top 2 are the top row
    assert relevance_rank(flat, top_row).per_image[0] == 1.0
    assert relevance_mass(np.zeros((1, 2, 2)), top_row).per_image[0] == 0.0


def test_boxes_to_masks_exclusive_and_clipped():
    m = boxes_to_masks(np.array([[1, 0, 3, 2]]), (1, 3, 4))
    np.testing.assert_array_equal(m[0], [[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
    m = boxes_to_masks([[(0, 0, 1, 1), (3, 2, 10, 10)], [(-5, -5, 1, 1)]], (3, 4))
    np.testing.assert_array_equal(m[0], [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]])
    np.testing.assert_array_equal(m[1], [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])


# ---------------------------------------------------------------- sanity checks


def test_spearman_hand_computed_with_ties():
    a = np.array([1.0, 2, 2, 3]).reshape(1, 2, 2)
    b = np.array([1.0, 3, 2, 4]).reshape(1, 2, 2)
    # ranks a = (1, 2.5, 2.5, 4), b = (1, 3, 2, 4): 4.5 / sqrt(4.5 * 5)
    assert spearman(a, b)[0] == pytest.approx(4.5 / np.sqrt(22.5))
    assert spearman(a, -b)[0] == pytest.approx(-4.5 / np.sqrt(22.5))
    assert np.isnan(spearman(np.ones((1, 2, 2)), b)[0])
    c = np.array([-3.0, 1, 2, 0]).reshape(1, 2, 2)
    assert spearman(c, np.abs(c), absolute=True)[0] == pytest.approx(1.0)
    assert spearman(c, np.abs(c))[0] == pytest.approx(-0.2)  # ranks (1,3,4,2) vs (4,2,3,1): 1 - 6*12/60
    two = spearman(np.concatenate([a, b]), np.concatenate([b, b]))
    np.testing.assert_allclose(two, [4.5 / np.sqrt(22.5), 1.0])


def reference_ssim(a, b, c1=1e-4, c2=9e-4):
    """Wang et al. 2004 written out: Gaussian-weighted statistics over every full 11x11 window."""
    k = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5 ** 2))
    g = np.outer(k, k) / np.outer(k, k).sum()
    vals = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            pa, pb = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
            ma, mb = (g * pa).sum(), (g * pb).sum()
            va, vb = (g * (pa - ma) ** 2).sum(), (g * (pb - mb) ** 2).sum()
            cov = (g * (pa - ma) * (pb - mb)).sum()
            vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return np.mean(vals)


def test_ssim_identity_and_reference():
    rng = np.random.default_rng(5)
    a = rng.random((2, 13, 14))
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    np.testing.assert_allclose(ssim(a, a), [1.0, 1.0], atol=1e-12)
    got = ssim(a, b)
    for i in range(2):
        assert got[i] == pytest.approx(reference_ssim(a[i], b[i]), abs=1e-9)
    assert got[0] < 0.9
    assert ssim(a, b, data_range=2.0)[0] == pytest.approx(reference_ssim(a[0], b[0], 4e-4, 36e-4), abs=1e-9)


def test_cascading_randomization_calls_in_order_and_compares_with_k0():
    rng = np.random.default_rng(6)
    base = rng.random((2, 12, 12))
    noise = rng.random((3, 2, 12, 12))
    calls = []

    def maps_for(k):
        calls.append(k)
        return base if k == 0 else (1 - k / 3) * base + k / 3 * noise[k - 1]

    r = cascading_randomization(maps_for, ["fc", "conv2", "conv1"])
    assert calls == [0, 1, 2, 3] and r.layers == ("fc", "conv2", "conv1")
    for k in (1, 2, 3):
        np.testing.assert_allclose(r.spearman[k - 1], spearman(base, maps_for(k)))
        np.testing.assert_allclose(r.ssim[k - 1], ssim(base, maps_for(k)))
    assert (r.spearman[0] > r.spearman[2]).all()
    np.testing.assert_allclose(r.spearman[2], spearman(base, noise[2]))


# ---------------------------------------------------------------- max-sensitivity


def test_max_sensitivity_golden_on_an_identity_explainer():
    rng = np.random.default_rng(7)
    x = rng.random((3, 2, 4, 4), dtype=np.float32) + 0.5
    calls = []

    def explain(batch):
        calls.append(len(batch))
        return batch[:, 0].astype(np.float64)  # E(x) = channel 0, so E(x + d) - E(x) = d[:, 0]

    r = max_sensitivity(explain, x, radius=0.1, samples=4, seed=11)
    gen = np.random.default_rng(11)
    ratios = np.stack([np.linalg.norm(gen.uniform(-0.1, 0.1, x.shape).astype(np.float32)[:, 0].reshape(3, -1)
                                      + x[:, 0].reshape(3, -1) - x[:, 0].reshape(3, -1), axis=1)
                       / np.linalg.norm(x[:, 0].reshape(3, -1), axis=1) for _ in range(4)], axis=1)
    np.testing.assert_allclose(r.curves, ratios, rtol=1e-5)
    np.testing.assert_allclose(r.per_image, ratios.max(axis=1), rtol=1e-5)
    assert calls == [3] * 5 and r.forwards == 15
    zero = max_sensitivity(lambda b: np.zeros((len(b), 4, 4)), x, maps=np.zeros((3, 4, 4)))
    np.testing.assert_array_equal(zero.per_image, 0)  # ||0 - 0|| / 1 (a zero norm is replaced by 1)


# ---------------------------------------------------------------- baselines


def test_baselines():
    r = random_map((2, 3, 4), seed=3)
    np.testing.assert_array_equal(r, np.random.default_rng(3).random((2, 3, 4), dtype=np.float32))
    assert r.min() >= 0 and r.max() < 1 and not np.array_equal(r, random_map((2, 3, 4), seed=4))
    g = centre_gaussian((3, 3), sigma=0.5)[0]
    edge, corner = np.exp(-0.5 * (1 / 1.5) ** 2), np.exp(-(1 / 1.5) ** 2)
    e = (edge - corner) / (1 - corner)
    np.testing.assert_allclose(g, [[0, e, 0], [e, 1, e], [0, e, 0]], atol=1e-6)
    step = np.tile(np.array([0, 0, 1, 1], np.float32), (4, 1))
    x = np.stack([step, step, 3 * step])[None]  # channel mean = 5/3 * step
    np.testing.assert_allclose(sobel_map(x)[0], np.tile([0, 1, 1, 0], (4, 1)), atol=1e-6)


# ---------------------------------------------------------------- bad input


X4 = np.zeros((2, 1, 4, 4), np.float32)
M4 = np.full((2, 4, 4), 0.5)
T2 = [0, 1]
NAN_MAPS = M4.copy()
NAN_MAPS[1, 2, 2] = np.nan
BAD = {
    "inputs not 4-D": lambda: deletion(SumModel(), X4[0], M4, T2),
    "empty batch": lambda: deletion(SumModel(), X4[:0], M4[:0], []),
    "map size": lambda: deletion(SumModel(), X4, np.zeros((2, 3, 4)), T2),
    "map count": lambda: insertion(SumModel(), X4, M4[:1], T2),
    "maps not 3-D": lambda: road(SumModel(), X4, M4[0], T2),
    "NaN in maps": lambda: deletion(SumModel(), X4, NAN_MAPS, T2),
    "NaN in inputs": lambda: deletion(SumModel(), X4 * np.nan, M4, T2),
    "target out of range": lambda: deletion(SumModel(), X4, M4, [0, 2]),
    "target out of range with scores": lambda: average_drop(SumModel(), X4, M4, [0, -1], scores=np.zeros((2, 2))),
    "target out of range in road": lambda: road(SumModel(), X4, M4, [5, 0]),
    "targets length": lambda: deletion(SumModel(), X4, M4, [0]),
    "float targets": lambda: deletion(SumModel(), X4, M4, [0.0, 1.0]),
    "scores shape": lambda: deletion(SumModel(), X4, M4, T2, scores=np.zeros((3, 2))),
    "maps outside [0, 1]": lambda: average_drop(SumModel(), X4, M4 * 3, T2),
    "batch_size 0": lambda: deletion(SumModel(), X4, M4, T2, batch_size=0),
    "step 0": lambda: deletion(SumModel(), X4, M4, T2, step=0),
    "step above 1": lambda: deletion(SumModel(), X4, M4, T2, step=1.5),
    "unknown substrate": lambda: deletion(SumModel(), X4, M4, T2, substrate="noise"),
    "substrate shape": lambda: deletion(SumModel(), X4, M4, T2, substrate=np.zeros((3, 3))),
    "unknown score": lambda: deletion(SumModel(), X4, M4, T2, score="prob"),
    "predict not callable": lambda: deletion(None, X4, M4, T2),
    "predict output shape": lambda: deletion(lambda x: np.zeros(len(x)), X4, M4, T2),
    "predict NaN": lambda: deletion(lambda x: np.full((len(x), 2), np.nan), X4, M4, T2),
    "road percentile 100": lambda: road(SumModel(), X4, M4, T2, percentiles=(50, 100)),
    "road no percentile": lambda: road(SumModel(), X4, M4, T2, percentiles=()),
    "road order": lambda: road(SumModel(), X4, M4, T2, order="top"),
    "road noise": lambda: road(SumModel(), X4, M4, T2, noise=-1.0),
    "imputer without kept pixel": lambda: impute_linear(X4, np.ones((2, 4, 4), bool)),
    "mask shape": lambda: pointing_game(M4, np.ones((2, 4, 5), bool)),
    "empty mask": lambda: relevance_mass(M4, np.zeros((2, 4, 4), bool)),
    "mask values": lambda: relevance_rank(M4, np.full((2, 4, 4), 2)),
    "negative tolerance": lambda: pointing_game(M4, np.ones((2, 4, 4), bool), tolerance=-1),
    "negative energy": lambda: energy_pointing_game(-M4, np.ones((2, 4, 4), bool)),
    "empty box": lambda: boxes_to_masks([[(2, 2, 2, 3)]], (4, 4)),
    "box outside": lambda: boxes_to_masks([[(5, 5, 9, 9)]], (4, 4)),
    "box not 4 numbers": lambda: boxes_to_masks([[(1, 2, 3)]], (4, 4)),
    "boxes count": lambda: boxes_to_masks(np.zeros((2, 4)), (3, 4, 4)),
    "spearman shapes": lambda: spearman(M4, M4[:1]),
    "ssim too small": lambda: ssim(M4, M4),
    "ssim data range": lambda: ssim(np.zeros((1, 11, 11)), np.zeros((1, 11, 11)), data_range=0),
    "cascade no layers": lambda: cascading_randomization(lambda k: M4, []),
    "cascade maps NaN": lambda: cascading_randomization(lambda k: NAN_MAPS if k else M4, ["a"]),
    "sensitivity radius": lambda: max_sensitivity(lambda x: x[:, 0], X4, radius=-0.1),
    "sensitivity samples": lambda: max_sensitivity(lambda x: x[:, 0], X4, samples=0),
    "sensitivity explain shape": lambda: max_sensitivity(lambda x: x[:, 0, :2], X4),
    "baseline shape": lambda: random_map((4,)),
    "gaussian sigma": lambda: centre_gaussian((4, 4), sigma=0),
    "sobel inputs": lambda: sobel_map(M4),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_raises_one_line_xcam_error(case):
    with pytest.raises(XcamError) as info:
        BAD[case]()
    message = str(info.value)
    assert message and "\n" not in message


def test_more_planes_than_opencv_takes_in_one_call():
    # OpenCV 5 refuses a Mat of more than 128 channels (4.x: 512): batches are cut into chunks of 128 planes
    from xcam.metrics._common import gaussian_blur
    from xcam.ops import resize_bilinear

    rng = np.random.default_rng(0)
    maps = rng.random((300, 4, 5), dtype=np.float32)
    big = resize_bilinear(maps, (8, 10))
    np.testing.assert_allclose(big[257], cv2.resize(maps[257], (10, 8), interpolation=cv2.INTER_LINEAR), atol=1e-6)
    planes = rng.random((2, 150, 12, 12))
    blurred = gaussian_blur(planes, 11, 5.0)
    np.testing.assert_allclose(blurred[1, 149], cv2.GaussianBlur(planes[1, 149], (11, 11), 5.0), atol=1e-12)
