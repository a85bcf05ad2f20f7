"""Average Drop, Increase in Confidence (Chattopadhay et al., Grad-CAM++, WACV 2018) and Average Gain."""

import numpy as np

from xcam.metrics._common import MetricResult, prepare, target_score


def confidence_metrics(predict, inputs, maps, targets, *, scores=None, batch_size: int = 64) -> dict:
    """Average Drop, Increase in Confidence and Average Gain from one extra forward per image.

    The explanation map is E = M * x (the map, in [0, 1], broadcast over the channels). With Y = p_t(x) and
    O = p_t(E) the target class's softmax probabilities, per image (in %):

        Average Drop            AD = max(0, Y - O) / Y * 100                       (Chattopadhay et al., 2018)
        Increase in Confidence  IC = [O > Y] * 100                                 (Chattopadhay et al., 2018)
        Average Gain            AG = max(0, O - Y) / (1 - Y) * 100    (Zhang et al., Opti-CAM, CVIU 2024; xplique)

    the reported value being the mean over images (AD, lower is better; IC and AG, higher). Edge cases, no epsilon:
    AD = 0 where Y = 0 and AG = 0 where Y = 1 (nothing can drop or be gained). Forwards: N, batched; the
    unperturbed forward is ``scores`` when given, else computed once here. Returns {"average_drop": MetricResult,
    "increase_in_confidence": ..., "average_gain": ...}, all three sharing the same forwards.
    """
    x, m, t, logits, fwd = prepare(predict, inputs, maps, targets, scores, batch_size, unit=True)
    masked = m.astype(np.float32)[:, None]
    o = target_score(fwd.jobs(x.shape[0], lambda a, b: x[a:b] * masked[a:b]), t)
    y = target_score(logits, t)
    ad = np.where(y > 0, np.maximum(y - o, 0) / np.where(y > 0, y, 1), 0.0) * 100
    ic = (o > y).astype(np.float64) * 100
    ag = np.where(y < 1, np.maximum(o - y, 0) / np.where(y < 1, 1 - y, 1), 0.0) * 100
    f = fwd.forwards
    return {"average_drop": MetricResult("average_drop", ad, forwards=f),
            "increase_in_confidence": MetricResult("increase_in_confidence", ic, forwards=f),
            "average_gain": MetricResult("average_gain", ag, forwards=f)}


def average_drop(predict, inputs, maps, targets, *, scores=None, batch_size: int = 64) -> MetricResult:
    """Average Drop (Chattopadhay et al., Grad-CAM++, WACV 2018): mean of max(0, Y - O) / Y * 100, Y = p_t(x),
    O = p_t(M * x) (softmax probabilities; lower is better). See ``confidence_metrics``."""
    return confidence_metrics(predict, inputs, maps, targets, scores=scores, batch_size=batch_size)["average_drop"]


def increase_in_confidence(predict, inputs, maps, targets, *, scores=None, batch_size: int = 64) -> MetricResult:
    """Increase in Confidence (Chattopadhay et al., Grad-CAM++, WACV 2018): mean of [O > Y] * 100, Y = p_t(x),
    O = p_t(M * x) (higher is better). See ``confidence_metrics``."""
    return confidence_metrics(predict, inputs, maps, targets, scores=scores,
                              batch_size=batch_size)["increase_in_confidence"]


def average_gain(predict, inputs, maps, targets, *, scores=None, batch_size: int = 64) -> MetricResult:
    """Average Gain (Zhang et al., Opti-CAM, CVIU 2024): mean of max(0, O - Y) / (1 - Y) * 100, Y = p_t(x),
    O = p_t(M * x) (higher is better). See ``confidence_metrics``."""
    return confidence_metrics(predict, inputs, maps, targets, scores=scores, batch_size=batch_size)["average_gain"]
