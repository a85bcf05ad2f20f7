"""Deletion and insertion AUC (Petsiuk et al., RISE, BMVC 2018, arXiv:1806.07421)."""

import math

import numpy as np

from xcam.errors import XcamError
from xcam.metrics._common import (
    SCORES,
    MetricResult,
    check_logits,
    choice,
    descending_order,
    gaussian_blur,
    prepare,
    ranks_from_order,
    target_score,
    trapezoid,
)

SUBSTRATES = ("zeros", "blur")
BLUR_KSIZE, BLUR_SIGMA = 11, 5.0


def substrate_of(inputs: np.ndarray, substrate) -> np.ndarray:
    """The substrate images (N, C, H, W): ``"zeros"``, ``"blur"`` (cv2.GaussianBlur, kernel 11, sigma 5, per channel,
    border reflect-101) or an array broadcastable to the inputs."""
    if isinstance(substrate, str):
        choice("substrate", substrate, SUBSTRATES)
        if substrate == "zeros":
            return np.zeros_like(inputs)
        return gaussian_blur(inputs, BLUR_KSIZE, BLUR_SIGMA).astype(np.float32)
    try:
        sub = np.broadcast_to(np.asarray(substrate, dtype=np.float32), inputs.shape)
    except (ValueError, TypeError):
        raise XcamError(f"substrate must be 'zeros', 'blur' or an array broadcastable to the inputs {inputs.shape}, "
                        f"got {getattr(substrate, 'shape', type(substrate).__name__)}") from None
    if not np.isfinite(sub).all():
        raise XcamError("substrate contains NaN or infinite values")
    return sub


def step_counts(pixels: int, step: float) -> np.ndarray:
    """Pixels changed after each step: 0, s, 2s, ..., P with s = ceil(step * P) (the last step may be shorter)."""
    if isinstance(step, bool) or not isinstance(step, int | float) or not 0 < step <= 1:
        raise XcamError(f"step must be a fraction of the pixels in (0, 1], got {step!r}")
    s = max(1, math.ceil(step * pixels - 1e-9))
    return np.array([*range(0, pixels, s), pixels], dtype=np.int64)


def _causal(mode, predict, inputs, maps, targets, *, step, substrate, score, scores, substrate_scores,
            batch_size) -> MetricResult:
    score = choice("score", score, SCORES)
    x, m, t, logits, fwd = prepare(predict, inputs, maps, targets, scores, batch_size)
    n, c, h, w = x.shape
    counts = step_counts(h * w, step)
    steps = len(counts) - 1
    sub = substrate_of(x, substrate)
    ranks = ranks_from_order(descending_order(m)).reshape(n, 1, h, w)
    # the unperturbed image is step 0 of deletion and the last step of insertion: its score is reused; the
    # all-substrate image (the other end) does not depend on the map: its logits are reused when given
    known = 0 if mode == "deletion" else steps
    bare = steps - known
    if substrate_scores is not None:
        substrate_scores = check_logits(substrate_scores, n, "substrate_scores", "all-substrate images",
                                        logits.shape[1])
    todo = [k for k in range(steps + 1) if k != known and (substrate_scores is None or k != bare)]
    image = np.repeat(np.arange(n), len(todo))
    count = np.tile(counts[todo], n)

    def make(a, b):
        changed = ranks[image[a:b]] < count[a:b, None, None, None]  # the first `count` pixels by the map
        if mode == "deletion":
            return np.where(changed, sub[image[a:b]], x[image[a:b]])
        return np.where(changed, x[image[a:b]], sub[image[a:b]])

    perturbed = fwd.jobs(len(image), make)
    curves = np.empty((n, steps + 1))
    curves[:, todo] = target_score(perturbed, t[image], score).reshape(n, len(todo))
    curves[:, known] = target_score(logits, t, score)
    if substrate_scores is not None:
        curves[:, bare] = target_score(substrate_scores, t, score)
    frac = counts / counts[-1]
    return MetricResult(mode, trapezoid(curves, frac), curves, frac, fwd.forwards)


def deletion(predict, inputs, maps, targets, *, step: float = 0.05, substrate="zeros", score: str = "probability",
             scores=None, substrate_scores=None, batch_size: int = 64) -> MetricResult:
    """Deletion AUC (Petsiuk et al., RISE, BMVC 2018): lower is better.

    Pixels are ordered by the map, highest first (ties: row-major order, a stable sort). After step k the first
    n_k = min(k * ceil(step * H * W), H * W) pixels hold the substrate (all channels), the rest the image; the
    curve is the score f_t(x_k) for k = 0..K (x_0 = the image, x_K = the substrate) and

        deletion = sum_k (n_{k+1} - n_k) / (H W) * (f_t(x_k) + f_t(x_{k+1})) / 2     (trapezoid rule on [0, 1]).

    Score f_t = softmax probability of the target class (``score="probability"``, default) or its logit
    (``"logit"``). Defaults: ``step=0.05`` (20 steps, as torchcam's ``steps=20``; RISE used 224 pixels a step on
    224x224 images), ``substrate="zeros"`` (RISE's deletion substrate; ``"blur"`` = cv2.GaussianBlur kernel 11,
    sigma 5; or an array). Forwards: K per image, batched ``batch_size`` at a time (step 0 reuses ``scores``,
    computed once here when not given); K - 1 with ``substrate_scores``, the (N, K) logits of the all-substrate
    images ``substrate_of(inputs, substrate)``, which do not depend on the map: one forward for every method's
    maps, and for insertion on the same substrate.
    """
    return _causal("deletion", predict, inputs, maps, targets, step=step, substrate=substrate, score=score,
                   scores=scores, substrate_scores=substrate_scores, batch_size=batch_size)


def insertion(predict, inputs, maps, targets, *, step: float = 0.05, substrate="blur", score: str = "probability",
              scores=None, substrate_scores=None, batch_size: int = 64) -> MetricResult:
    """Insertion AUC (Petsiuk et al., RISE, BMVC 2018): higher is better.

    Starts from the substrate and puts the image's pixels back in the map's order (highest first, ties row-major):
    after step k the first n_k = min(k * ceil(step * H * W), H * W) pixels hold the image, the rest the substrate;
    the curve is f_t(x_k) for k = 0..K (x_0 = the substrate, x_K = the image) and the AUC is the trapezoid rule
    over the fraction n_k / (H W) in [0, 1].

    Score f_t = softmax probability of the target class (default) or its logit (``score="logit"``). Defaults:
    ``step=0.05`` (20 steps), ``substrate="blur"`` (RISE's insertion substrate: Gaussian blur, kernel 11, sigma 5;
    ``"zeros"`` or an array also). Forwards: K per image, batched (step K reuses ``scores``; step 0 reuses
    ``substrate_scores`` when given, as for ``deletion``).
    """
    return _causal("insertion", predict, inputs, maps, targets, step=step, substrate=substrate, score=score,
                   scores=scores, substrate_scores=substrate_scores, batch_size=batch_size)
