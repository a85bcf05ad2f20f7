"""Running the metrics on a model: every method's maps and the baselines at the input size, then each metric of
``xcam.metrics`` through the adapter's probe (one unperturbed forward per image, shared by every metric).

A batch here is channels-last NumPy (N, H, W, C) as the application preprocesses it; the framework object moves it
to the adapter's layout, the metrics get it channels first from the probe.
"""

from dataclasses import dataclass, field

import numpy as np

from xcam import metrics as M
from xcam.app.jobs.sanity import model_randomization
from xcam.errors import XcamError
from xcam.methods import get_method

BASELINES = ("random", "centre", "sobel")


@dataclass(frozen=True)
class MetricSpec:
    """A metric as the evaluation shows it: its name, which way is better, and what it needs (``model``: forwards
    through the probe; ``masks``: ground truth; ``explain``: the method run again; ``randomize``: the cascade)."""

    name: str
    title: str
    better: str
    needs: str
    curve: bool = False


SPECS = {s.name: s for s in (
    MetricSpec("deletion", "Deletion AUC", "lower", "model", curve=True),
    MetricSpec("insertion", "Insertion AUC", "higher", "model", curve=True),
    MetricSpec("average_drop", "Average Drop %", "lower", "model"),
    MetricSpec("increase_in_confidence", "Increase in Confidence %", "higher", "model"),
    MetricSpec("average_gain", "Average Gain %", "higher", "model"),
    MetricSpec("road_morf", "ROAD MoRF", "lower", "model", curve=True),
    MetricSpec("road_lerf", "ROAD LeRF", "higher", "model", curve=True),
    MetricSpec("pointing_game", "Pointing game", "higher", "masks"),
    MetricSpec("energy_pointing_game", "Energy pointing game", "higher", "masks"),
    MetricSpec("relevance_mass", "Relevance mass", "higher", "masks"),
    MetricSpec("relevance_rank", "Relevance rank", "higher", "masks"),
    MetricSpec("max_sensitivity", "Max-sensitivity", "lower", "explain"),
    MetricSpec("mprt_spearman", "Randomization: Spearman", "lower", "randomize", curve=True),
    MetricSpec("mprt_ssim", "Randomization: SSIM", "lower", "randomize", curve=True),
)}
GROUPS = {
    "confidence": ("average_drop", "increase_in_confidence", "average_gain"),
    "road": ("road_morf", "road_lerf"),
    "localization": ("pointing_game", "energy_pointing_game", "relevance_mass", "relevance_rank"),
    "randomization": ("mprt_spearman", "mprt_ssim"),
    "all": tuple(SPECS),
}
DEFAULT_METRICS = ("deletion", "insertion", "confidence")


def parse_metrics(tokens) -> list[str]:
    """Metric names and groups (confidence, road, localization, randomization, all) -> metric names in table
    order, each once; an unknown name is a one-line error listing the valid ones."""
    wanted = set()
    for tok in tokens:
        if tok in GROUPS:
            wanted.update(GROUPS[tok])
        elif tok in SPECS:
            wanted.add(tok)
        else:
            raise XcamError(f"unknown metric {tok!r}; valid: {', '.join(SPECS)}, or a group: {', '.join(GROUPS)}")
    return [name for name in SPECS if name in wanted]


@dataclass
class Settings:
    """The metrics' settings (defaults as in ``xcam.metrics``): deletion/insertion step, ROAD percentages, the
    max-sensitivity samples, the cascade's depth (None: every layer with parameters), the pointing game's
    tolerance in pixels and one seed for everything
    random (the random baseline, ROAD's noise, max-sensitivity's noise, the randomized weights)."""

    step: float = 0.05
    road_percentiles: tuple = (10, 20, 30, 40, 50, 60, 70, 80, 90)
    sensitivity_samples: int = 10
    sensitivity_radius: float = 0.02
    cascade_top: int | None = None
    tolerance: float = 15
    seed: int = 0
    batch_size: int = 64
    options: dict = field(default_factory=dict)  # method name -> its options


def baseline_maps(name: str, inputs_nchw: np.ndarray, seed: int = 0) -> np.ndarray:
    """A baseline's maps (N, H, W) for channels-first inputs: ``random`` (uniform noise, ``seed``), ``centre`` (a
    centred Gaussian), ``sobel`` (edges of the input)."""
    n, _, h, w = inputs_nchw.shape
    if name == "random":
        return M.random_map((n, h, w), seed)
    if name == "centre":
        return M.centre_gaussian((n, h, w))
    if name == "sobel":
        return M.sobel_map(inputs_nchw)
    raise XcamError(f"unknown baseline {name!r}; valid: {', '.join(BASELINES)}")


def run_batch(framework, model, batch, layer, methods, metrics, targets, *, masks=None,
              settings: Settings | None = None, scores=None) -> tuple[dict, dict]:
    """Maps of every method (and baseline: names in ``BASELINES``) and every metric on one batch.

    Returns (maps {method: (N, H, W)}, results {metric: {method: MetricResult}}); ``mprt_*`` results also carry
    the cascade (``results["cascade"][method]``, an ``xcam.metrics.CascadeResult``). ``scores``: the batch's
    logits when the caller has them (else one forward here); every metric reuses them.
    """
    s = settings or Settings()
    probe = framework.probe(model, batch, layer)
    x = probe.inputs
    scores = probe.predict(x) if scores is None else np.asarray(scores)
    targets = np.asarray(targets, dtype=np.int64)
    maps = {}
    for m in methods:
        if m in BASELINES:
            maps[m] = baseline_maps(m, x, s.seed)
        else:
            maps[m] = framework.adapter.cam(model, framework.to_inputs(batch), layer, m, targets=targets,
                                            size=x.shape[2:], options=s.options.get(m))
    common = {"scores": scores, "batch_size": s.batch_size}
    results: dict = {name: {} for name in metrics}
    if any(SPECS[n].needs == "masks" for n in metrics) and masks is None:
        raise XcamError("the localization metrics need ground truth: give --masks or --boxes")
    bare = {}  # the all-substrate images' logits per substrate: they do not depend on the map, one forward per batch

    def bare_scores(substrate):
        if substrate not in bare:
            bare[substrate] = probe.predict(M.substrate_of(x, substrate))
        return bare[substrate]

    for m, mp in maps.items():
        if "deletion" in metrics:
            results["deletion"][m] = M.deletion(probe.predict, x, mp, targets, step=s.step,
                                                substrate_scores=bare_scores("zeros"), **common)
        if "insertion" in metrics:
            results["insertion"][m] = M.insertion(probe.predict, x, mp, targets, step=s.step,
                                                  substrate_scores=bare_scores("blur"), **common)
        if set(GROUPS["confidence"]) & set(metrics):
            conf = M.confidence_metrics(probe.predict, x, mp, targets, **common)
            for name in GROUPS["confidence"]:
                if name in metrics:
                    results[name][m] = conf[name]
        for order in ("morf", "lerf"):
            if f"road_{order}" in metrics:
                results[f"road_{order}"][m] = M.road(probe.predict, x, mp, targets, order=order,
                                                     percentiles=s.road_percentiles, seed=s.seed, **common)
        if "pointing_game" in metrics:
            results["pointing_game"][m] = M.pointing_game(mp, masks, tolerance=s.tolerance)
        for name, fn in (("energy_pointing_game", M.energy_pointing_game), ("relevance_mass", M.relevance_mass),
                         ("relevance_rank", M.relevance_rank)):
            if name in metrics:
                results[name][m] = fn(mp, masks)
        if "max_sensitivity" in metrics:
            results["max_sensitivity"][m] = M.max_sensitivity(
                _explainer(framework, model, layer, m, targets, s), x, radius=s.sensitivity_radius,
                samples=s.sensitivity_samples, seed=s.seed, maps=mp, batch_size=s.batch_size)
        if set(GROUPS["randomization"]) & set(metrics):
            cascade = _cascade(framework, model, batch, layer, m, targets, s, mp)
            results.setdefault("cascade", {})[m] = cascade
            for name, values in (("mprt_spearman", cascade.spearman), ("mprt_ssim", cascade.ssim)):
                if name in metrics:
                    results[name][m] = M.MetricResult(name, values[-1], values.T, np.arange(1, len(values) + 1),
                                                      forwards=0)
    return maps, results


def _explainer(framework, model, layer, method, targets, s: Settings):
    """x (B, C, H, W) channels first, B / N perturbed copies of each of the N images in a row -> the method's maps
    for the same targets (max-sensitivity's ``explain``)."""
    if method in BASELINES:
        def baseline(x):
            if method == "random":  # each image keeps its noise map whatever the perturbation (as one per call did)
                k = len(x) // len(targets)
                return np.repeat(baseline_maps(method, x[::k], s.seed), k, axis=0)
            return baseline_maps(method, x, s.seed)
        return baseline
    return lambda x: framework.adapter.cam(model, framework.to_inputs(np.moveaxis(x, 1, -1)), layer, method,
                                           targets=np.repeat(targets, len(x) // len(targets)), size=x.shape[2:],
                                           options=s.options.get(method))


class _ConstantAdapter:
    """Stands in for the adapter when the cascade runs a baseline: its maps do not depend on the weights."""

    def __init__(self, adapter, maps):
        self.adapter, self.maps = adapter, maps
        self.parameter_layers = adapter.parameter_layers
        self.randomized = adapter.randomized

    def cam(self, *args, **kwargs):
        return self.maps


def _cascade(framework, model, batch, layer, method, targets, s: Settings, maps):
    inputs = framework.to_inputs(batch)
    adapter = framework.adapter
    if method in BASELINES:  # a baseline ignores the model: similarity stays 1 (it fails the sanity check)
        adapter = _ConstantAdapter(adapter, baseline_maps(method, framework.probe(model, batch, layer).inputs, s.seed))
    return model_randomization(adapter, model, inputs, layer, method, targets, size=batch.shape[1:3],
                               top=s.cascade_top, seed=s.seed, options=s.options.get(method), maps=maps)


def merge(parts: list[dict]) -> dict:
    """Results of several batches (``run_batch``'s second value) as one: per-image values and curves
    concatenated over images, forwards summed."""
    out: dict = {}
    for name in parts[0]:
        out[name] = {}
        for m in parts[0][name]:
            items = [p[name][m] for p in parts]
            if name == "cascade":
                out[name][m] = M.CascadeResult(items[0].layers, np.concatenate([r.spearman for r in items], axis=1),
                                               np.concatenate([r.ssim for r in items], axis=1))
                continue
            curves = None if items[0].curves is None else np.concatenate([r.curves for r in items])
            out[name][m] = M.MetricResult(items[0].name, np.concatenate([r.per_image for r in items]), curves,
                                          items[0].x, sum(r.forwards for r in items))
    return out


def check_methods(methods) -> list[str]:
    """Method names (or baselines) checked against the registry."""
    for m in methods:
        if m not in BASELINES:
            get_method(m)
    return list(methods)
