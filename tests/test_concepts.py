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
    for n, c in enumerate([3, 7]):
        alone = xcam_torch.concepts(model, x[n:n + 1], "layer4", 4)          # each sample factorized alone
        np.testing.assert_allclose(maps[n], alone.maps[0, alone.scores[:, c].argmax()], atol=1e-6)
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
