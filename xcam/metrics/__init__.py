"""Faithfulness, localization and sanity metrics for saliency maps, in NumPy.

Model-running metrics take ``predict(x) -> logits``: a float32 (B, C, H, W) channels-first batch in, (B, K)
logits out (the adapters' probe). They get ``inputs`` (N, C, H, W), ``maps`` (N, H, W) at the input size,
``targets`` (N,) class indices, ``scores`` (the (N, K) logits of the unperturbed inputs, computed once when not
given) and ``batch_size``; every perturbed copy is run ``batch_size`` at a time. Each returns a ``MetricResult``
(per-image values, curves where the metric has one, and the number of images run through the model).
"""

from xcam.metrics._common import MetricResult
from xcam.metrics.baselines import centre_gaussian, random_map, sobel_map
from xcam.metrics.confidence import average_drop, average_gain, confidence_metrics, increase_in_confidence
from xcam.metrics.deletion import deletion, insertion, substrate_of
from xcam.metrics.localization import (
    boxes_to_masks,
    energy_pointing_game,
    pointing_game,
    relevance_mass,
    relevance_rank,
)
from xcam.metrics.road import impute_linear, impute_noisy_linear, road
from xcam.metrics.sanity import CascadeResult, cascading_randomization, spearman, ssim
from xcam.metrics.sensitivity import max_sensitivity

__all__ = [
    "CascadeResult", "MetricResult", "average_drop", "average_gain", "boxes_to_masks", "cascading_randomization",
    "centre_gaussian", "confidence_metrics", "deletion", "energy_pointing_game", "impute_linear",
    "impute_noisy_linear", "increase_in_confidence", "insertion", "max_sensitivity", "pointing_game", "random_map",
    "relevance_mass", "relevance_rank", "road", "sobel_map", "spearman", "ssim", "substrate_of",
]
