"""Perturbation methods: Score-CAM masks the input, Ablation-CAM zeroes channels of the layer. The masks,
ablations and weights are made here; the adapter's probe only runs the batched forwards asked for."""

import numpy as np

from ..errors import XcamError
from ..ops import normalize_minmax, resize, softmax
from .occlusion import masked_rows
from .registry import MethodArgs, choice, register


def _per_sample(x):
    """Activations as (N, C, *s) (dropping the class axis of several-class captures)."""
    a = x.activations
    return a[:, 0] if a.ndim == x.rank + 3 else a


def _channels_last_axis(per_channel: np.ndarray) -> np.ndarray:
    """(C,) stays; (C, K) scores of several classes -> (K, C)."""
    return per_channel.T if per_channel.ndim == 2 else per_channel


def input_size(x) -> tuple:
    """The inputs' spatial size, where Score-CAM's masks are made; the layer's rank must be the input's."""
    if x.input_rank != x.rank:
        raise XcamError(f"Score-CAM masks the input with the layer's upsampled channels, but the layer's maps are "
                        f"{x.rank}-D and the input is {x.input_rank}-D; use ablationcam for this layer")
    return tuple(x.model_inputs.shape[2:])


def scorecam_weights(x, mode: str, batch_size: int) -> np.ndarray:
    """Score-CAM weights (N, C) or (N, K, C); one forward per distinct mask (constant channels share one).
    The masked inputs are scored with the explained target (its probability form for mode "probability")."""
    acts = _per_sample(x)
    n, c, spatial = acts.shape[0], acts.shape[1], acts.shape[2:]
    size = input_size(x)
    target = x.target.as_probability() if mode == "probability" else x.target
    out = []
    for i in range(n):
        # minmax(Up(a)) depends only on minmax(a) (bilinear weights sum to 1), so equal normalized low-res
        # channels give equal masks: one forward each
        low = normalize_minmax(acts[i]).reshape(c, -1)
        uniq, inverse = np.unique(low, axis=0, return_inverse=True)
        parts = []
        for start in range(0, len(uniq), batch_size):
            part = uniq[start:start + batch_size].reshape(-1, *spatial)
            masks = normalize_minmax(resize(part, size))                             # (B, *S) in [0, 1]
            parts.append(x.probe.score(masked_rows(x.model_inputs[i], masks), target,
                                       np.full(len(part), i)))
        per_channel = np.concatenate(parts)[inverse.reshape(-1)]                       # (C,) or (C, K)
        if mode == "probability":
            out.append(_channels_last_axis(per_channel))
        else:  # softmax over channels of the target's score
            out.append(softmax(_channels_last_axis(per_channel), axis=-1))
    return np.stack(out).astype(np.float32)


def _layer_minmax(acts: np.ndarray) -> np.ndarray:
    """torchcam's mask source: each channel min-max scaled at the layer's size, (a - min) / (max - min + 1e-8)."""
    flat = acts.reshape(acts.shape[0], -1)
    lo = flat.min(axis=1, keepdims=True)
    return ((flat - lo) / (flat.max(axis=1, keepdims=True) - lo + 1e-8)).reshape(acts.shape).astype(np.float32)


def _masks(low: np.ndarray, size: tuple, normalize: str) -> np.ndarray:
    """Masks (B, *S) from the layer's channels (B, *s): minmax(Up(a)) ("input") or Up(minmax(a)) ("layer")."""
    if normalize == "input":
        return normalize_minmax(resize(low, size))
    return resize(_layer_minmax(low), size)


def _mask_weights(scores: np.ndarray, mode: str) -> np.ndarray:
    """(C,) or (C, K) mean scores per channel -> weights (C,) or (K, C): probabilities as they are, logits
    softmaxed over the channels."""
    per_channel = _channels_last_axis(scores)
    return per_channel if mode == "probability" else softmax(per_channel, axis=-1)


def iscam_weights(x, mode: str, normalize: str, num_samples: int, batch_size: int) -> np.ndarray:
    """IS-CAM weights (N, C) or (N, K, C): the mean target score over X * c_i M_k, c_i = sum_{j<=i} j / n_s.
    One forward per distinct masked input: channels with equal masks share, the all-zero mask is scored once."""
    acts = _per_sample(x)
    n, c, spatial = acts.shape[0], acts.shape[1], acts.shape[2:]
    size = input_size(x)
    target = x.target.as_probability() if mode == "probability" else x.target
    coeffs = np.cumsum(np.arange(1, num_samples + 1) / num_samples).astype(np.float32)
    out = []
    for i in range(n):
        low = acts[i] if normalize == "layer" else normalize_minmax(acts[i])
        uniq, inverse = np.unique(low.reshape(c, -1), axis=0, return_inverse=True)
        span = uniq.max(axis=1) - uniq.min(axis=1)
        zero = ~(span > 0) if normalize == "layer" else ~uniq.any(axis=1)          # masks that are all zero
        reps = np.where(zero, 1, num_samples)                                       # forwards per distinct mask
        rows, steps = np.repeat(np.arange(len(uniq)), reps), np.concatenate([np.arange(r) for r in reps])
        scores = []
        for start in range(0, len(rows), batch_size):
            r, k = rows[start:start + batch_size], steps[start:start + batch_size]
            masks = _masks(uniq[r].reshape(-1, *spatial), size, normalize) * coeffs[k].reshape(-1, *(1,) * len(size))
            scores.append(x.probe.score(masked_rows(x.model_inputs[i], masks), target, np.full(len(r), i)))
        scores = np.concatenate(scores).astype(np.float64)
        sums = np.zeros((len(uniq),) + scores.shape[1:])
        np.add.at(sums, rows, scores)
        mean = sums / reps.reshape(-1, *(1,) * (scores.ndim - 1))                   # a zero mask: one score
        out.append(_mask_weights(mean[inverse.reshape(-1)], mode))
    return np.stack(out).astype(np.float32)


def ablation_weights(x, batch_size: int) -> np.ndarray:
    """Ablation-CAM weights (N, C) or (N, K, C); all-zero channels get 0 without a forward."""
    acts = _per_sample(x)
    n, c = acts.shape[:2]
    out = []
    for i in range(n):
        live = np.flatnonzero(np.abs(acts[i]).reshape(c, -1).max(axis=1) > 0)
        base = np.asarray(x.probe.score_from_layer(i, acts[i][None], x.target)[0], np.float32)  # () or (K,)
        ablated = np.tile(base, (c,) + (1,) * base.ndim)
        for start in range(0, len(live), batch_size):
            idx = live[start:start + batch_size]
            batch = np.repeat(acts[i][None], len(idx), axis=0)
            batch[np.arange(len(idx)), idx] = 0
            ablated[idx] = x.probe.score_from_layer(i, batch, x.target)
        drop = base[None] - ablated                                                    # (C,) or (C, K)
        scale = np.broadcast_to(np.abs(base), drop.shape)
        drop = np.divide(drop, scale, out=drop.copy(), where=scale > 1e-12)
        out.append(_channels_last_axis(drop))
    return np.stack(out).astype(np.float32)


@register("scorecam", title="Score-CAM", needs_gradients=False, needs_forwards=True,
          options={"weighting": "probability", "batch_size": 64},
          paper="Wang et al., Score-CAM, CVPR Workshops 2020, arXiv:1910.01279")
def scorecam(x: MethodArgs) -> np.ndarray:
    r"""M_k = minmax(Up(A_k)) (linear / bilinear / trilinear to the input size), s_k^c = the target's score for
    X \odot M_k (class c's, or a segmentation, box, similarity ... target's); L^c = ReLU(\sum_k w_k^c A_k).
    weighting="probability" (default, the authors' code): w_k^c = softmax(f(X \odot M_k))_c (a Binary
    target: its sigmoid; targets without a probability form: their own score).
    weighting="logit-softmax" (pytorch-grad-cam, torch-cam): w^c = softmax over k of the logits f_c(X \odot M_k).
    Exact and cheaper: channels with the same mask (constant channels give the all-zero mask) share one
    forward. Forwards are batched (option batch_size)."""
    mode = choice(x.options, "weighting", ("probability", "logit-softmax"))
    return scorecam_weights(x, mode, int(x.options["batch_size"]))


@register("ablationcam", title="Ablation-CAM", needs_gradients=False, needs_forwards=True,
          options={"batch_size": 64},
          paper="Desai & Ramaswamy, Ablation-CAM, WACV 2020, doi:10.1109/WACV45572.2020.9093360")
def ablationcam(x: MethodArgs) -> np.ndarray:
    r"""y^c_k = score of class c with channel k of the layer set to 0; w_k^c = (y^c - y^c_k) / |y^c|;
    L^c = ReLU(\sum_k w_k^c A_k). The paper divides by y^c; |y^c| keeps the map's sign when y^c < 0 and is
    the same map otherwise. Exact and cheaper: an all-zero channel has w = 0 without a forward; the rest of
    the network runs on batches of ablated activations (option batch_size)."""
    return ablation_weights(x, int(x.options["batch_size"]))


@register("iscam", title="IS-CAM", needs_gradients=False, needs_forwards=True,
          options={"num_samples": 10, "weighting": "probability", "normalize": "input", "batch_size": 64},
          paper="Naidu et al., IS-CAM: Integrated Score-CAM for axiomatic-based explanations, arXiv:2010.03023")
def iscam(x: MethodArgs) -> np.ndarray:
    r"""Integrated Score-CAM: M_k = minmax(Up(A_k)) as for Score-CAM, c_i = \sum_{j=1}^{i} j / n (i = 1..n,
    n = option num_samples, default 10 as torch-cam), s_k^c = (1/n) \sum_i score_c(X \odot c_i M_k);
    L^c = ReLU(\sum_k w_k^c A_k). The coefficients accumulate as in torch-cam's ISCAM (up to (n + 1) / 2).
    weighting="probability" (default, as Score-CAM here): w_k^c = s_k^c on the target's probability form;
    weighting="logit-softmax" (torch-cam): w^c = softmax over k of the mean logits (torch-cam subtracts the
    unmasked input's logit first, which a softmax over k does not change).
    normalize="input" (default): masks min-max scaled after upsampling, as Score-CAM here; normalize="layer"
    (torch-cam): each channel scaled at the layer's size ((a - min) / (max - min + 1e-8)), then upsampled.
    Exact and cheaper: channels with the same mask share forwards, the all-zero mask is scored once; forwards
    are batched over (mask, coefficient) pairs (option batch_size)."""
    mode = choice(x.options, "weighting", ("probability", "logit-softmax"))
    normalize = choice(x.options, "normalize", ("input", "layer"))
    num_samples = int(x.options["num_samples"])
    if num_samples < 1:
        raise XcamError(f"option num_samples={num_samples} is not valid; it must be a positive integer")
    return iscam_weights(x, mode, normalize, num_samples, int(x.options["batch_size"]))


def _count(options: dict, name: str) -> int:
    value = options[name]
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise XcamError(f"option {name}={value!r} is not valid; it must be a positive integer")
    return int(value)


def _spread(options: dict, name: str) -> np.float32:
    value = options[name]
    if not isinstance(value, (int, float, np.number)) or isinstance(value, bool) or value < 0:
        raise XcamError(f"option {name}={value!r} is not valid; it must be a number >= 0")
    return np.float32(value)


def sscam_weights(x, mode: str, normalize: str, perturb: str, batch_size: int) -> np.ndarray:
    """SS-CAM weights (N, C) or (N, K, C): the mean target score over n noisy masked inputs per channel, batched
    over (copy, channel) rows. The noise comes from ``default_rng(seed)``, input by input, then copy by copy,
    channel by channel: (n, C, *S) per input for perturb="mask", (n, C, C_in, *S) for perturb="input"."""
    acts = _per_sample(x)
    n, c = acts.shape[:2]
    size = input_size(x)
    num_samples, std = _count(x.options, "num_samples"), _spread(x.options, "std")
    rng = np.random.default_rng(int(x.options["seed"]))
    target = x.target.as_probability() if mode == "probability" else x.target
    out = []
    for i in range(n):
        masks = _masks(acts[i], size, normalize)                                       # (C, *S)
        image = x.model_inputs[i]
        scores = []
        for start in range(0, num_samples * c, batch_size):
            k = np.arange(start, min(start + batch_size, num_samples * c)) % c            # rows (copy, channel)
            if perturb == "mask":
                noisy = masks[k] + std * rng.standard_normal((len(k), *size), dtype=np.float32)
                batch = masked_rows(image, noisy)
            else:
                batch = masked_rows(image, masks[k])
                batch += std * rng.standard_normal((len(k), *image.shape), dtype=np.float32)
            scores.append(x.probe.score(batch, target, np.full(len(k), i)))
        scores = np.concatenate(scores).astype(np.float64)
        out.append(_mask_weights(scores.reshape(num_samples, c, *scores.shape[1:]).mean(axis=0), mode))
    return np.stack(out).astype(np.float32)


@register("sscam", title="SS-CAM", needs_gradients=False, needs_forwards=True,
          options={"num_samples": 35, "std": 2.0, "seed": 0, "perturb": "mask", "weighting": "probability",
                   "normalize": "input", "batch_size": 64},
          paper="Wang et al., SS-CAM: Smoothed Score-CAM for Sharper Visual Feature Localization, arXiv:2006.14255")
def sscam(x: MethodArgs) -> np.ndarray:
    r"""Smoothed Score-CAM: M_k = minmax(Up(A_k)) as for Score-CAM; n noisy copies of each masked input
    (n = option num_samples, default 35, and std 2.0 as torch-cam; noise from ``default_rng(seed)``):
    perturb="mask" (default, the paper's smoothing of the feature maps, as torch-cam's SSCAM): X \odot (M_k + d_i),
    d_i ~ N(0, std^2) per input position (shared by the input channels); perturb="input" (the paper's smoothing of
    the input): X \odot M_k + d_i, d_i ~ N(0, std^2) per input element. s_k^c = (1/n) \sum_i score_c(noisy copy i
    of channel k); L^c = ReLU(\sum_k w_k^c A_k).
    weighting="probability" (default, as Score-CAM here): w_k^c = s_k^c on the target's probability form;
    weighting="logit-softmax" (torch-cam): softmax over k of the mean logits (torch-cam subtracts the unmasked
    input's logit first, which a softmax over k does not change).
    normalize="input" (default): masks min-max scaled after upsampling; normalize="layer" (torch-cam): each channel
    scaled at the layer's size ((a - min) / (max - min + 1e-8)), then upsampled. Every noisy copy is a distinct
    input: n * C forwards per input, batched over (copy, channel) rows (option batch_size)."""
    mode = choice(x.options, "weighting", ("probability", "logit-softmax"))
    normalize = choice(x.options, "normalize", ("input", "layer"))
    perturb = choice(x.options, "perturb", ("mask", "input"))
    return sscam_weights(x, mode, normalize, perturb, _count(x.options, "batch_size"))
