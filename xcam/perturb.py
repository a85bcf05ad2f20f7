"""Perturbation methods' work in NumPy: Score-CAM masks and scores, Ablation-CAM ablations. The adapter's
probe only runs the batched forwards these functions ask for."""

import numpy as np

from .ops import normalize_minmax, resize_bilinear, softmax


def _per_sample(x):
    """Activations as (N, C, h, w) (dropping the class axis of several-class captures)."""
    a = x.activations
    return a[:, 0] if a.ndim == 5 else a


def _pick(scores_per_channel: np.ndarray, targets_n) -> np.ndarray:
    """(C, classes) -> (C,) for one target, or (K, C) for several."""
    return scores_per_channel[:, targets_n].T if np.ndim(targets_n) else scores_per_channel[:, targets_n]


def scorecam_weights(x, mode: str, batch_size: int) -> np.ndarray:
    """Score-CAM weights (N, C) or (N, K, C); one forward per distinct mask (constant channels share one)."""
    acts = _per_sample(x)
    n, c, h, w = acts.shape
    size = x.inputs.shape[-2:]
    out = []
    for i in range(n):
        # minmax(Up(a)) depends only on minmax(a) (bilinear weights sum to 1), so equal normalized low-res
        # channels give equal masks: one forward each
        low = normalize_minmax(acts[i]).reshape(c, -1)
        uniq, inverse = np.unique(low, axis=0, return_inverse=True)
        logits = np.empty((len(uniq), x.scores.shape[1]), np.float32)
        for start in range(0, len(uniq), batch_size):
            part = uniq[start:start + batch_size].reshape(-1, h, w)
            masks = normalize_minmax(resize_bilinear(part, size))                   # (B, H, W) in [0, 1]
            logits[start:start + len(part)] = x.probe.predict(x.inputs[i][None] * masks[:, None])
        per_channel = logits[inverse.reshape(-1)]                                      # (C, classes)
        if mode == "probability":
            out.append(_pick(softmax(per_channel, axis=1), x.targets[i]))
        else:  # softmax over channels of the target logit
            out.append(softmax(_pick(per_channel, x.targets[i]), axis=-1))
    return np.stack(out).astype(np.float32)


def ablation_weights(x, batch_size: int) -> np.ndarray:
    """Ablation-CAM weights (N, C) or (N, K, C); all-zero channels get 0 without a forward."""
    acts = _per_sample(x)
    n, c = acts.shape[:2]
    out = []
    for i in range(n):
        live = np.flatnonzero(np.abs(acts[i]).reshape(c, -1).max(axis=1) > 0)
        base = x.probe.predict_from_layer(i, acts[i][None])[0]                        # (classes,)
        ablated = np.tile(base, (c, 1))
        for start in range(0, len(live), batch_size):
            idx = live[start:start + batch_size]
            batch = np.repeat(acts[i][None], len(idx), axis=0)
            batch[np.arange(len(idx)), idx] = 0
            ablated[idx] = x.probe.predict_from_layer(i, batch)
        drop = base[None, :] - ablated                                                 # (C, classes)
        scale = np.abs(base)
        drop = np.divide(drop, scale, out=drop.copy(), where=scale > 1e-12)
        out.append(_pick(drop, x.targets[i]))
    return np.stack(out).astype(np.float32)
