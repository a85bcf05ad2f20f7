"""Each metric against the anchor that defines it the same way, on the same maps and the same model (the synthetic
benchmark's trained CNN): torchcam's Average Drop / Increase in Confidence and deletion / insertion, pytorch-grad-cam's
confidence change and ROAD, Quantus' pointing game, relevance mass, relevance rank and MPRT, captum's sensitivity_max.
A missing anchor skips its tests. Deliberate differences are written next to each tolerance."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import xcam_torch  # noqa: E402
from xcam import metrics as M  # noqa: E402
from xcam.app.jobs import synthetic as S  # noqa: E402
from xcam.app.jobs.sanity import model_randomization  # noqa: E402

# the anchors call numpy functions on torch tensors, which numpy 2 warns about
pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")]


@pytest.fixture(scope="module")
def case(synthetic_model):
    model = synthetic_model
    images, labels, masks = S.make_dataset(4, seed=7)
    x = torch.from_numpy(images)
    maps = xcam_torch.cam(model, x, S.LAYER, "gradcampp", targets=labels.tolist())
    probe = xcam_torch.probe(model, images, S.LAYER)
    return model, images, labels, masks, maps, probe


class FixedMaps:
    """A torchcam CAM extractor that hands torchcam our maps, so both sides score the very same maps."""

    def __init__(self, model, maps):
        self.model, self.maps = model, torch.from_numpy(maps)

    def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs):
        return [self.maps]

    def fuse_cams(self, cams):
        return cams[0]

    def _hooks_off(self):
        import contextlib

        return contextlib.nullcontext()


def softmax_rows(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------- torchcam


def test_average_drop_and_increase_match_torchcam(case):
    metrics = pytest.importorskip("torchcam.metrics")
    model, images, labels, _, maps, probe = case
    ours = M.confidence_metrics(probe.predict, images, maps, labels)
    for i in range(len(images)):  # one image per update: torchcam only reports means
        tc = metrics.ClassificationMetric(FixedMaps(model, maps[i:i + 1]), lambda z: torch.softmax(z, -1))
        tc.update(torch.from_numpy(images[i:i + 1]), class_idx=[int(labels[i])])
        s = tc.summary()
        # torchcam: relu(Y - O) / (Y + 1e-7) as a fraction; xcam: in % and without the epsilon
        assert ours["average_drop"].per_image[i] / 100 == pytest.approx(s["avg_drop"], abs=1e-5)
        assert ours["increase_in_confidence"].per_image[i] / 100 == s["conf_increase"]


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_deletion_and_insertion_match_torchcam(case, mode):
    metrics = pytest.importorskip("torchcam.metrics")
    if not hasattr(metrics, "DeletionInsertionMetric"):
        pytest.skip("this torchcam has no DeletionInsertionMetric")
    model, images, labels, _, maps, probe = case
    fn = M.deletion if mode == "deletion" else M.insertion
    # torchcam: 20 steps of ceil(P / 20) positions, one zero baseline for both curves, torch.trapezoid over the
    # perturbed fraction, ties in a stable descending sort: the same definition as xcam's step 0.05 with zeros
    ours = fn(probe.predict, images, maps, labels, step=0.05, substrate="zeros")
    spread = float(np.ptp(ours.curves, axis=1).max())
    assert spread > 0.1  # the curves really move
    for i in range(len(images)):
        tc = metrics.DeletionInsertionMetric(FixedMaps(model, maps[i:i + 1]), lambda z: torch.softmax(z, -1),
                                             steps=20)
        tc.update(torch.from_numpy(images[i:i + 1]), class_idx=[int(labels[i])])
        assert ours.per_image[i] == pytest.approx(tc.summary()[f"{mode}_auc"], abs=1e-5)


# ---------------------------------------------------------------- pytorch-grad-cam


def test_confidence_change_matches_pytorch_grad_cam(case):
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model, images, labels, _, maps, probe = case
    targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in labels]
    diff = CamMultImageConfidenceChange()(torch.from_numpy(images), maps, targets, model)  # p(M x) - p(x)
    y = softmax_rows(probe.predict(images))[np.arange(len(labels)), labels]
    ours = M.confidence_metrics(probe.predict, images, maps, labels)
    np.testing.assert_allclose(ours["average_drop"].per_image, np.maximum(-diff, 0) / y * 100, atol=1e-3)
    np.testing.assert_array_equal(ours["increase_in_confidence"].per_image, (diff > 0) * 100.0)
    np.testing.assert_allclose(ours["average_gain"].per_image, np.maximum(diff, 0) / (1 - y) * 100, atol=1e-3)


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_road_matches_pytorch_grad_cam(case, order):
    pytest.importorskip("pytorch_grad_cam")
    pytest.importorskip("scipy")
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model, images, labels, _, maps, probe = case
    # pytorch-grad-cam removes every pixel at or above the percentile, ties included (a Grad-CAM++ map's zeros tie:
    # at p = 10..40 it removes them all), xcam exactly round(p P / 100) pixels in a stable order: compared on the
    # same maps with their ties broken by a tiny fixed noise
    maps = (maps + 1e-4 * np.random.default_rng(0).random(maps.shape)).astype(np.float32)
    targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in labels]
    remover = RemoveMostRelevantFirst if order == "morf" else RemoveLeastRelevantFirst
    pcts = (10, 20, 30, 40, 50, 60, 70, 80, 90)
    # pytorch-grad-cam's ROAD(p) keeps the pixels below np.percentile(map, p), i.e. removes the top (100 - p)%:
    # its percentile p is xcam's 100 - p. Noise off on both sides (torch.randn vs numpy draws); its imputer is
    # scipy's exact sparse solve, xcam's a conjugate-gradient solve to 1e-6.
    theirs = np.stack([PerturbationConfidenceMetric(remover(p, NoisyLinearImputer(noise=0.0)))(
        torch.from_numpy(images), maps, targets, model, return_diff=False) for p in pcts], axis=1)
    # np.percentile interpolates linearly, so pytorch-grad-cam removes P - ceil(p (P - 1) / 100) pixels, one more or
    # fewer than round((100 - p) P / 100) at p = 10 and 90 (922 vs 921 of 1,024): xcam is given those exact shares
    # per image: where the interpolated percentile rounds onto a float32 neighbour the count moves by one (measured:
    # 308 of 1,024 in image 0 and 307 in images 1 and 3 at p = 70, a 0.03 change of probability on this network)
    ranked = maps if order == "morf" else 1 - maps
    per = []
    for i in range(len(images)):
        shares = [100 * int((ranked[i] >= np.percentile(ranked[i], p)).sum()) / maps[i].size for p in pcts]
        per.append(M.road(probe.predict, images[i:i + 1], maps[i:i + 1], labels[i:i + 1], order=order,
                          percentiles=shares, noise=0.0, tol=1e-9))
    curves, per_image = np.concatenate([r.curves for r in per]), np.concatenate([r.per_image for r in per])
    assert float(np.ptp(curves)) > 0.05
    # what is left: the imputation, scipy's exact sparse solve against xcam's conjugate gradient, here to 1e-9 (at
    # the default 1e-6, lerf's 90% hole in image 1 moves a probability by 5.8e-5)
    np.testing.assert_allclose(curves, theirs, atol=5e-5)
    np.testing.assert_allclose(per_image, theirs.mean(axis=1), atol=5e-5)


# ---------------------------------------------------------------- captum


def test_max_sensitivity_matches_captum_on_the_same_noise(case):
    metrics = pytest.importorskip("captum.metrics")
    model, images, labels, _, _, _ = case
    n, samples, radius = len(images), 4, 0.02

    def explain_np(x):  # k perturbed copies of each image, image-major (as captum's repeat_interleave)
        return xcam_torch.cam(model, torch.from_numpy(np.ascontiguousarray(x)), S.LAYER, "gradcam",
                              targets=np.repeat(labels, len(x) // n).tolist())

    ours = M.max_sensitivity(explain_np, images, radius=radius, samples=samples, seed=3)
    # the same noise: xcam draws sample s for all images from Generator(3); captum repeats each image `samples`
    # times (repeat_interleave) and perturbs the expanded batch once
    rng = np.random.default_rng(3)
    noise = np.stack([rng.uniform(-radius, radius, size=images.shape).astype(np.float32) for _ in range(samples)])
    noise = torch.from_numpy(noise.transpose(1, 0, 2, 3, 4).reshape(n * samples, *images.shape[1:]))

    def perturb(inputs, perturb_radius):
        return inputs + noise

    def explain_t(inputs):
        x = (inputs[0] if isinstance(inputs, tuple) else inputs).numpy()
        t = np.repeat(labels, len(x) // n)
        return (torch.from_numpy(xcam_torch.cam(model, torch.from_numpy(x), S.LAYER, "gradcam", targets=t.tolist())),)

    theirs = metrics.sensitivity_max(explain_t, torch.from_numpy(images), perturb_func=perturb,
                                     perturb_radius=radius, n_perturb_samples=samples).numpy()
    assert ours.per_image.max() > 1e-3
    np.testing.assert_allclose(ours.per_image, theirs, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- Quantus


def quantus_or_skip():
    try:
        import quantus
    except ImportError as exc:  # Quantus 0.6.0 needs scikit-image and cachetools (not in the anchors extra)
        pytest.skip(f"Quantus cannot be imported: {exc}")
    return quantus


def test_localization_matches_quantus(case):
    quantus = quantus_or_skip()
    model, images, labels, masks, maps, _ = case
    a, s = maps[:, None].astype(np.float64), masks[:, None].astype(np.float64)
    kw = dict(abs=False, normalise=False, disable_warnings=True)
    pg = quantus.PointingGame(**kw)(model=None, x_batch=images, y_batch=labels, a_batch=a, s_batch=s)
    mass = quantus.RelevanceMassAccuracy(**kw)(model=None, x_batch=images, y_batch=labels, a_batch=a, s_batch=s)
    rank = quantus.RelevanceRankAccuracy(**kw)(model=None, x_batch=images, y_batch=labels, a_batch=a, s_batch=s)
    # Quantus' pointing game has no tolerance: xcam's with tolerance 0 (Quantus counts a hit when any of several
    # tied maxima is in the mask, xcam takes the first in row-major order: equal for maps without tied maxima)
    np.testing.assert_array_equal(M.pointing_game(maps, masks, tolerance=0).per_image, np.asarray(pg, float))
    np.testing.assert_allclose(M.relevance_mass(maps, masks).per_image, mass, rtol=1e-6)
    np.testing.assert_allclose(M.relevance_rank(maps, masks).per_image, rank, rtol=1e-6)
    assert 0 < np.mean(mass) < 1


def test_mprt_matches_quantus_on_the_same_randomized_weights(case, monkeypatch):
    quantus = quantus_or_skip()
    from quantus.helpers.model.pytorch_model import PyTorchModel

    model, images, labels, _, _, _ = case
    ours = model_randomization(xcam_torch, model, torch.from_numpy(images), S.LAYER, "gradcam", labels)

    def generator(self, order="top_down", seed=42):  # Quantus' cascade, with xcam's random values
        twin = copy.deepcopy(self.model)
        for k in range(1, len(ours.layers) + 1):
            with xcam_torch.randomized(twin, list(ours.layers[:k])):
                yield ours.layers[k - 1], twin

    monkeypatch.setattr(PyTorchModel, "get_random_layer_generator", generator)

    def explain(model, inputs, targets, **kwargs):
        x = torch.from_numpy(np.asarray(inputs, dtype=np.float32))
        return xcam_torch.cam(model, x, S.LAYER, "gradcam", targets=[int(t) for t in targets])[:, None]

    a = ours_maps = xcam_torch.cam(model, torch.from_numpy(images), S.LAYER, "gradcam", targets=labels.tolist())
    scores = quantus.MPRT(abs=False, normalise=False, disable_warnings=True)(
        model=model, x_batch=images, y_batch=labels, a_batch=a[:, None], explain_func=explain, device="cpu")
    assert list(scores)[1:] == list(ours.layers) and ours_maps.max() == 1.0
    for k, name in enumerate(ours.layers):  # Quantus: scipy.stats.spearmanr per sample, as xcam
        np.testing.assert_allclose(ours.spearman[k], scores[name], atol=1e-6, equal_nan=True)
