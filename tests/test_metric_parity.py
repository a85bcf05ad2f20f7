"""Every model-running metric on PyTorch and on Keras from the same (ported) weights: the same numbers, through the
application's path (``xcam.app.jobs.metric_runs.run_batch``: each adapter's probe, its maps, its randomization)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tensorflow")

from xcam.app.jobs import synthetic as S  # noqa: E402
from xcam.app.jobs.metric_runs import GROUPS, Settings, run_batch  # noqa: E402
from xcam.app.models.frameworks import load_framework  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.tf]
MODEL_METRICS = [m for m in GROUPS["all"] if m not in GROUPS["localization"]]


@pytest.fixture(scope="module")
def both(synthetic_model):
    tmodel = synthetic_model  # trained: its probabilities move when the object's pixels are removed
    kmodel = S.keras_twin(tmodel)
    images, labels, masks = S.make_dataset(3, seed=5)
    batch = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
    settings = Settings(step=0.1, road_percentiles=(20, 50, 80), sensitivity_samples=3, cascade_top=3)
    out = {}
    for name, model in (("torch", tmodel), ("tf", kmodel)):
        fw = load_framework(name)
        targets = fw.probe(model, batch, S.LAYER).predict(images).argmax(axis=1)
        out[name] = run_batch(fw, model, batch, S.LAYER, ["gradcam", "scorecam", "saliency", "centre"],
                              MODEL_METRICS + list(GROUPS["localization"]), targets, masks=masks,
                              settings=settings)[1]
        out[name]["targets"] = targets
    return out


def test_targets_agree(both):
    np.testing.assert_array_equal(both["torch"]["targets"], both["tf"]["targets"])


@pytest.mark.parametrize("metric", MODEL_METRICS + list(GROUPS["localization"]))
def test_metric_agrees_across_frameworks(both, metric):
    moved = 0.0
    for method, t in both["torch"][metric].items():
        k = both["tf"][metric][method]
        # probabilities, percentages and similarities of float32 networks: the frameworks differ by rounding only
        # (Average Drop / Gain are in %: 1e-3 % is 1e-5 of a probability)
        atol = 1e-3 if metric in ("average_drop", "average_gain") else 1e-4
        np.testing.assert_allclose(t.per_image, k.per_image, atol=atol, equal_nan=True, err_msg=f"{metric} {method}")
        if t.curves is not None:
            np.testing.assert_allclose(t.curves, k.curves, atol=1e-4, equal_nan=True, err_msg=f"{metric} {method}")
            moved = max(moved, float(np.nanmax(np.ptp(t.curves, axis=1))))
        assert t.forwards == k.forwards
    if metric in ("deletion", "insertion", "road_morf", "road_lerf"):
        assert moved > 0.05, "the curves must move for the comparison to mean something"


def test_randomization_steps_agree(both):
    for method in ("gradcam", "scorecam", "saliency"):
        t, k = both["torch"]["cascade"][method], both["tf"]["cascade"][method]
        assert t.layers == k.layers == ("fc", "conv3", "conv2")
        np.testing.assert_allclose(t.spearman, k.spearman, atol=1e-4, equal_nan=True)
        np.testing.assert_allclose(t.ssim, k.ssim, atol=1e-4)
    # a baseline ignores the model: it stays identical through the cascade
    np.testing.assert_allclose(both["torch"]["cascade"]["centre"].ssim, 1.0)
