"""RISE, Sobol and HSIC (xcam.methods.masks): closed forms on NumPy models, the Sobol sequence and the resampling
against TensorFlow's, agreement with xplique 2.0.2 (numbers stored by benchmarks/xplique_masks_reference.py, run in
a side venv: xplique pins tensorflow<=2.20), and torch-vs-Keras parity on ported weights."""

import sys
from pathlib import Path

import numpy as np
import pytest

import xcam
from xcam.errors import XcamError
from xcam.methods import masks as mk
from xcam.methods.registry import MethodArgs, get_method, resolve_options
from xcam.targets import Class

DATA = Path(__file__).parent / "data" / "xplique_masks.npz"


class Linear(xcam.contract.ScoresFromOutputs):
    """logits_k = <W_k, x> + bias_k (or any NumPy ``fn``); counts the rows and the calls."""

    def __init__(self, inputs, w, bias=0.0, fn=None):
        self.inputs, self.w, self.bias, self.fn, self.rows, self.calls = inputs, w, bias, fn, 0, 0

    def predict(self, inputs):
        self.rows += len(inputs)
        self.calls += 1
        if self.fn is not None:
            return self.fn(inputs).astype(np.float32)
        return (inputs.reshape(len(inputs), -1) @ self.w.reshape(len(self.w), -1).T + self.bias).astype(np.float32)


def args(name, inputs, classes, probe, **options):
    return MethodArgs(np.zeros((len(inputs), 1, 1, 1), np.float32), None, np.asarray(classes), model_inputs=inputs,
                      probe=probe, options=resolve_options(get_method(name), options),
                      target=Class(np.asarray(classes)), rank=2)


RNG = np.random.default_rng(5)


# ---------------------------------------------------------------------------------------------------- RISE


def test_rise_one_cell_and_p1_closed_forms():
    x = RNG.standard_normal((2, 2, 6, 6)).astype(np.float32)
    w = RNG.standard_normal((2, 2, 6, 6)).astype(np.float32)
    f = np.einsum("bchw,kchw->bk", x, w) + 0.5
    # p = 1: every mask keeps everything, S = N f(x) / (N * 1) = f(x) at every position and channel
    probe = Linear(x, w, 0.5)
    out = mk.rise_attribution(args("rise", x, [0, 1], probe, p=1.0, n_masks=40, batch_size=16))
    np.testing.assert_allclose(out, np.broadcast_to(f[[0, 1], [0, 1]][:, None, None, None], out.shape), rtol=1e-5)
    assert probe.rows == 2 * 40 and probe.calls == 2 * 3                     # batches of 16 masks
    # one cell: a mask is all on (M = 1) or all off (M = 0, so f(b) M = 0), so S = f(x) k / (N p), k the masks on;
    # normalize coverage: sum_i f M_i / (sum_i M_i + 1e-4) = f(x) k / (k + 1e-4)
    for normalize in ("expectation", "coverage"):
        a = args("rise", x, [1, 0], Linear(x, w, 0.5), grid=1, n_masks=50, p=0.3, seed=2, normalize=normalize)
        out = mk.rise_attribution(a)
        k = mk.rise_masks(np.random.default_rng(2), 50, (1, 1), 0.3).sum()
        fx = f[[0, 1], [1, 0]]
        want = fx * k / (50 * 0.3) if normalize == "expectation" else fx * k / (k + 1e-4)
        np.testing.assert_allclose(out[:, 0, 0, 0], want, rtol=1e-5)
        np.testing.assert_allclose(out, np.broadcast_to(want[:, None, None, None], out.shape), rtol=1e-5)


def test_rise_masks_upsample_by_hand_and_definition():
    low = np.array([[[1, 0], [0, 0]]], np.float32)            # 2x2 grid, input 4x4: cell 2, upsampled to 6x6
    up = mk.rise_upsample(low, np.array([[1, 0]]), (4, 4))
    # half-pixel linear 2 -> 6 per axis, source (o + 1/2) / 3 - 1/2 clamped: (1, 1, 2/3, 1/3, 0, 0) for cell 0
    r = np.array([1, 1, 2 / 3, 1 / 3, 0, 0])
    np.testing.assert_allclose(up[0], np.outer(r, r)[1:5, 0:4], rtol=1e-6)
    # the attribution is (1 / (N p)) sum_i f(x M_i + b (1 - M_i)) M_i with the seeded masks, several classes
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    w = RNG.standard_normal((3, 3, 8, 8)).astype(np.float32)
    out = mk.rise_attribution(args("rise", x, [[2, 0]], Linear(x, w), n_masks=30, grid=3, p=0.4, baseline=0.2,
                                   seed=7))
    rng = np.random.default_rng(7)
    low, shifts = mk.rise_masks(rng, 30, (3, 3), 0.4), mk.rise_shifts(rng, 30, (8, 8), (3, 3))
    assert shifts.max() <= 2 and shifts.min() == 0                            # cell ceil(8 / 3) = 3
    m = mk.rise_upsample(low, shifts, (8, 8))
    y = np.einsum("bchw,kchw->bk", x * m[:, None] + 0.2 * (1 - m[:, None]), w)[:, [2, 0]]
    want = np.einsum("bk,bhw->khw", y, m) / (30 * 0.4)
    assert out.shape == (1, 2, 3, 8, 8)
    np.testing.assert_allclose(out[0], np.broadcast_to(want[:, None], (2, 3, 8, 8)), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------------- Sobol


def test_sobol_points_by_hand_and_designs():
    # the first Sobol points after 0 (Gray-code order), dimensions 1-3: Bratley & Fox's table
    np.testing.assert_array_equal(mk.sobol_points(4, 3), [[.5, .5, .5], [.75, .25, .25], [.25, .75, .75],
                                                         [.375, .375, .625]])
    pts = mk.sobol_points(64, 40, skip=0)
    assert all(len(np.unique(np.floor(pts[:, j] * 64))) == 64 for j in range(40))   # one point per 1/64 stratum
    scr = mk.design_points("scrambled", 256, 5, np.random.default_rng(0))
    assert all(len(np.unique(np.floor(scr[:, j] * 256))) == 256 for j in range(5))  # still a (0, m, s)-net
    assert not np.allclose(scr, mk.sobol_points(256, 5, skip=0))
    lhs = mk.design_points("lhs", 10, 3, np.random.default_rng(1))
    assert all(sorted(np.floor(lhs[:, j] * 10)) == list(range(10)) for j in range(3))
    d = mk.replicated_design(np.arange(12.0).reshape(3, 4))                # A = cols 0-1, B = cols 2-3
    np.testing.assert_array_equal(d, [[0, 1], [4, 5], [8, 9], [2, 3], [6, 7], [10, 11],
                                      [2, 1], [6, 5], [10, 9], [0, 3], [4, 7], [8, 11]])


def test_sobol_total_index_of_an_additive_model_closed_form():
    # inpainting on a linear model: f(x M) = sum_c M_c w_c with w_c = sum_ch W_c x_c, an additive function of the
    # cells; the input is the grid itself (2x2, one pixel per cell), so the cubic resize is the identity
    x = RNG.standard_normal((1, 2, 2, 2)).astype(np.float32)
    w = RNG.standard_normal((1, 2, 2, 2)).astype(np.float32)
    wc = (x[0] * w[0]).sum(0).reshape(-1).astype(np.float64)
    probe = Linear(x, w)
    out = mk.sobol_attribution(args("sobol", x, [0], probe, grid_size=2, nb_design=1024))
    assert probe.rows == 1024 * (4 + 2) and probe.calls == -(-1024 * 6 // 256)
    design = mk.replicated_design(mk.sobol_points(1024, 8))
    a, b = design[:1024], design[1024:2048]
    exact = wc ** 2 * ((a - b) ** 2).sum(0) / (2 * 1024 * (a @ wc).var(ddof=1))   # Jansen on this design
    np.testing.assert_allclose(out[0, 0].reshape(-1), exact, rtol=1e-4)
    np.testing.assert_allclose(out[0, 1], out[0, 0])
    # the limit: Var(sum_c w_c U_c) = sum_c w_c^2 / 12, so ST_c = w_c^2 / sum w^2 (no interactions)
    np.testing.assert_allclose(out[0, 0].reshape(-1), wc ** 2 / (wc ** 2).sum(), atol=0.01)


def test_jansen_estimator_by_hand():
    y = np.array([1.0, 3.0, 2.0, 0.0, 5.0, 1.0, 3.0, 3.0])[:, None]      # n = 2, d = 2: A, B, C_1, C_2
    var = np.var([1.0, 3.0], ddof=1)
    want = [((1 - 5) ** 2 + (3 - 1) ** 2) / (4 * var), ((1 - 3) ** 2 + 0) / (4 * var)]
    np.testing.assert_allclose(mk.jansen_total(y, 2, 2), [want])


def test_masked_rows_are_the_formula_in_channels_last_memory():
    from xcam.methods.occlusion import masked_rows
    image = RNG.standard_normal((3, 5, 6)).astype(np.float32)
    masks = RNG.random((4, 5, 6)).astype(np.float32)
    fill = RNG.standard_normal((3, 5, 6)).astype(np.float32)
    kept = image[None] * masks[:, None]
    for f, want in ((0.0, kept), (0.5, kept + 0.5 * (1 - masks[:, None])),
                    (fill, kept + fill[None] * (1 - masks[:, None]))):
        rows = masked_rows(image, masks, f)
        assert rows.shape == (4, 3, 5, 6) and rows.dtype == np.float32
        np.testing.assert_array_equal(rows, want)                          # the same float32 operations
        assert np.moveaxis(rows, 1, -1).flags.c_contiguous                  # (B, *S, C) underneath
    volume = masked_rows(RNG.standard_normal((2, 3, 4, 5)).astype(np.float32), np.ones((1, 3, 4, 5), np.float32))
    assert np.moveaxis(volume, 1, -1).flags.c_contiguous


def test_perturbations_resampling_and_blur_by_hand():
    x = RNG.standard_normal((1, 1, 4, 4)).astype(np.float32)
    m = np.full((1, 4, 4), 0.25, np.float32)                              # full-size masks (B, *S)
    a = args("sobol", x, [0], None, perturbation="amplitude", sigma=2.0)
    np.testing.assert_allclose(mk.perturbation(a, x[0])(m), x * (0.25 - 0.5) * 2.0)
    a = args("sobol", x, [0], None, perturbation="blurring", sigma=3)
    blurred = mk.box_blur(x[0], 3)
    p = np.pad(x[0, 0], 1, mode="reflect")                                # BORDER_REFLECT_101
    np.testing.assert_allclose(blurred[0, 1, 2], p[1:4, 2:5].mean(), rtol=1e-6)
    np.testing.assert_allclose(mk.perturbation(a, x[0])(m), x * 0.25 + 0.75 * blurred[None], rtol=1e-6)
    np.testing.assert_array_equal(mk.resample(np.array([[1.0, 2.0]]), (4,), "nearest"), [[1, 1, 2, 2]])
    np.testing.assert_allclose(mk.resample(np.array([[0.0, 1.0]]), (4,), "linear"), [[0, .25, .75, 1]])
    # Keys a = -0.5 at offsets 3/4 and 1/4, the tap outside the input dropped and the rest renormalised
    k = mk._interp_matrix(2, 4, "cubic")
    keys = {0.25: 0.8671875, 0.75: 0.2265625, 1.25: -0.0703125}               # Keys(d), a = -0.5
    np.testing.assert_allclose(k[0], np.array([keys[0.25], keys[1.25]]) / (keys[0.25] + keys[1.25]))
    np.testing.assert_allclose(k[1], np.array([keys[0.25], keys[0.75]]) / (keys[0.25] + keys[0.75]))
    np.testing.assert_allclose(k.sum(1), 1)
    np.testing.assert_allclose(k[::-1, ::-1], k)


def test_tensorflow_sobol_resize_and_opencv_blur_agree():
    tf = pytest.importorskip("tensorflow")
    import cv2

    for dim in (1, 7, 128, 512):
        np.testing.assert_array_equal(mk.sobol_points(32, dim), tf.math.sobol_sample(dim, 32, dtype=tf.float64))
    a = RNG.random((3, 4, 4)).astype(np.float32)
    for kind, method, sizes in (("linear", "bilinear", ((16, 16), (7, 9), (13, 16))),
                                ("nearest", "nearest", ((16, 16), (7, 9), (13, 16))),
                                ("cubic", "bicubic", ((16, 16), (8, 32)))):   # TF's cubic offsets are 1/1024 steps
        for size in sizes:
            want = tf.image.resize(a[..., None], size, method=method).numpy()[..., 0]
            np.testing.assert_allclose(mk.resample(a, size, kind), want, atol=3e-7)
    img = RNG.random((3, 16, 16)).astype(np.float32)
    want = cv2.blur(img.transpose(1, 2, 0), (10, 10)).transpose(2, 0, 1)
    np.testing.assert_allclose(mk.box_blur(img, 10), want, atol=1e-6)


# ---------------------------------------------------------------------------------------------------- HSIC


def test_hsic_of_a_function_of_one_cell_closed_form():
    # y = 1 + 2 M_c (c = cell 2 of a 2x2 grid, binary masks): L = e + (1 - e)[M_c = M_c'] with e = exp(-4 / (2 w^2)),
    # so H L H = 2 (1 - e) u_c u_c^T (u = centred mask values) and, with the binary kernel,
    # HSIC_i = tr(H K_i H L) / n = 2 u_i^T H L H u_i / n = 4 (1 - e) (u_i . u_c)^2 / n
    x = np.ones((1, 1, 2, 2), np.float32)
    probe = Linear(x, None, fn=lambda b: 1 + 2 * b[:, :, 1, 0].reshape(len(b), 1).repeat(2, 1))
    for sampler in ("lhs", "sobol"):
        out = mk.hsic_attribution(args("hsic", x, [0], probe, grid_size=2, nb_design=64, sampler=sampler))
        design = np.round(mk.design_points(sampler, 64, 4, np.random.default_rng(0)))
        y = 1 + 2 * design[:, 2]
        e = np.exp(-4 / (2 * np.median(y) ** 2))
        u = design - design.mean(0)
        want = 4 * (1 - e) * (u.T @ u[:, 2]) ** 2 / 64
        np.testing.assert_allclose(out[0, 0].reshape(-1), want, rtol=1e-5, atol=1e-9)
        assert out[0, 0].reshape(-1).argmax() == 2
    assert probe.rows == 2 * 64 and probe.calls == 2


def test_hsic_estimator_identity_and_kernels():
    design = np.round(RNG.random((20, 3)))
    y = RNG.standard_normal((20, 2))
    got = mk.hsic_scores(design, y, "binary")
    for k in range(2):   # the binary kernel's HSIC is 2 x^T H L H x / n
        h = np.eye(20) - 1 / 20
        lmat = np.exp(-(y[:, k, None] - y[None, :, k]) ** 2 / (2 * np.median(y[:, k]) ** 2))
        np.testing.assert_allclose(got[k], 2 * np.einsum("ji,jl,li->i", design, h @ lmat @ h, design) / 20,
                                   rtol=1e-6)
    pts = RNG.random((10, 2))
    k = mk._hsic_input_kernel("sobolev", pts.T)
    d = abs(pts[3, 1] - pts[7, 1])
    np.testing.assert_allclose(k[1, 3, 7], (d * d - d + 1 / 6) / 2 + (pts[3, 1] - .5) * (pts[7, 1] - .5))
    np.testing.assert_allclose(mk._hsic_input_kernel("rbf", pts.T)[0, 2, 5], np.exp(-(pts[2, 0] - pts[5, 0]) ** 2 / .5))


def test_mask_methods_errors():
    x = np.zeros((1, 1, 4, 4), np.float32)
    probe = Linear(x, np.ones((1, 1, 4, 4), np.float32))
    with pytest.raises(XcamError, match="power of two"):
        mk.sobol_attribution(args("sobol", x, [0], probe, nb_design=12))
    with pytest.raises(XcamError, match="perturbation='noise' is not valid"):
        mk.sobol_attribution(args("sobol", x, [0], probe, perturbation="noise", nb_design=2, grid_size=2))
    with pytest.raises(XcamError, match="smaller grid_size"):
        mk.sobol_attribution(args("sobol", x, [0], probe, grid_size=23))
    with pytest.raises(XcamError, match="probability"):
        mk.rise_attribution(args("rise", x, [0], probe, p=0.0))
    with pytest.raises(XcamError, match="estimator='hsic' is not valid"):
        mk.hsic_attribution(args("hsic", x, [0], probe, estimator="hsic"))
    with pytest.raises(XcamError, match="batch_size=0"):
        mk.rise_attribution(args("rise", x, [0], probe, batch_size=0))
    for name in ("rise", "sobol", "hsic"):
        m = get_method(name)
        assert m.kind == "pixel" and m.needs_forwards and m.reduce == "sum" and not m.relu


# ---------------------------------------------------------------------------------------------------- anchors


@pytest.fixture(scope="module")
def xplique_reference():
    """xplique's numbers and, for each case, xcam's on the same rebuilt Keras model (one fixture: one TF warm-up)."""
    pytest.importorskip("tensorflow")
    import xcam_tf

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    import xplique_masks_reference as ref

    data = np.load(DATA)
    model = ref.tiny_model({k: data[k] for k in data.files})
    cases = {**{k: ("sobol", v[0]) for k, v in ref.SOBOL.items()}, **{k: ("hsic", v[0]) for k, v in ref.HSIC.items()},
             "rise_coverage": ("rise", ref.RISE)}
    return {name: (xcam_tf.attribute(model, data["x"], method, data["targets"], options=opts), data[name])
            for name, (method, opts) in cases.items()}


@pytest.mark.tf
@pytest.mark.parametrize("case", ["sobol_inpainting", "sobol_blurring", "sobol_amplitude", "hsic_binary", "hsic_rbf",
                                  "hsic_sobolev", "rise_coverage"])
def test_agrees_with_xplique(xplique_reference, case):
    ours, ref = xplique_reference[case]
    assert ours.shape == (2, 16, 16, 3) and ref.shape == (2, 16, 16, 1)   # xplique: one map; xcam: per channel
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()            # measured: <= 4.2e-7 relative
    assert np.ptp(ref) > 0.1 * np.abs(ref).max()                           # a map with structure, not a constant


FAST = {"rise": {"n_masks": 64}, "sobol": {"grid_size": 4, "nb_design": 8}, "hsic": {"grid_size": 4, "nb_design": 64}}


@pytest.mark.torch
@pytest.mark.tf
@pytest.mark.parametrize("method", ["rise", "sobol", "hsic"])
def test_torch_and_keras_agree_on_ported_weights(method):
    from kits import make_kit

    t, k = make_kit("torch"), make_kit("tf")
    ta = t.module.attribute(t.model, t.inputs, method, [1, 0], options=FAST[method])
    ka = k.module.attribute(k.model, k.inputs, method, [1, 0], options=FAST[method])
    assert ta.shape == (2, 3, 8, 8) and ka.shape == (2, 8, 8, 3)
    scale = np.abs(ta).max()
    assert scale > 0 and np.abs(ta - ka.transpose(0, 3, 1, 2)).max() <= 1e-4 * scale   # measured: <= 4e-6 relative
    tm = t.cam(None, method, [1, 0], options=FAST[method])
    np.testing.assert_allclose(tm, k.cam(None, method, [1, 0], options=FAST[method]), atol=1e-4)
    assert tm.max() == 1.0
