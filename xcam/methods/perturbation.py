"""Perturbation methods: Score-CAM masks the input, Ablation-CAM zeroes channels of the layer. The masks,
ablations and weights are made here; the adapter's probe only runs the batched forwards asked for."""

import numpy as np

from ..errors import XcamError
from ..ops import normalize_minmax, resize, softmax
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
            parts.append(x.probe.score(x.model_inputs[i][None] * masks[:, None], target,
                                       np.full(len(part), i)))
        per_channel = np.concatenate(parts)[inverse.reshape(-1)]                       # (C,) or (C, K)
        if mode == "probability":
            out.append(_channels_last_axis(per_channel))
        else:  # softmax over channels of the target's score
            out.append(softmax(_channels_last_axis(per_channel), axis=-1))
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
