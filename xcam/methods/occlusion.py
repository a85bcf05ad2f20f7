"""Perturbation attributions at the input: Occlusion and Feature Ablation. The windows, segments, baselines and
averages are made here; the adapter's probe only scores the batched perturbed inputs (``Probe.score``).

The core functions return the SIGNED attribution, float32, channels first, (N, C_in, *S) (or (N, K, C_in, *S)
for several classes). Until the pixel-method contract carries signed attributions, the registered functions
reduce it with max_c |.| (the pixel methods' channel reduction) for ``cam``.
"""

import itertools

import numpy as np

from ..errors import XcamError
from .registry import MethodArgs, register


def _spatial_tuple(value, rank: int, name: str) -> tuple:
    """An int or a tuple of ``rank`` positive ints."""
    values = (value,) * rank if np.isscalar(value) else tuple(value)
    if len(values) != rank or any(int(v) < 1 for v in values):
        raise XcamError(f"option {name}={value!r} is not valid; give a positive int or {rank} positive ints")
    return tuple(int(v) for v in values)


def _score_batches(x, inputs: np.ndarray, sample: int, batch_size: int) -> np.ndarray:
    """The target's scores (B,) or (B, K) of perturbed copies of input ``sample``, in batches."""
    parts = [x.probe.score(inputs[s:s + batch_size], x.target, np.full(len(inputs[s:s + batch_size]), sample))
             for s in range(0, len(inputs), batch_size)]
    return np.concatenate(parts).astype(np.float32)


def ablate_masks(x, masks: np.ndarray, baseline, batch_size: int, average: bool) -> np.ndarray:
    r"""A_i = \sum_m (f(x) - f(x \odot (1 - M_m) + b M_m)) M_m  [/ \sum_m M_m where covered, if ``average``].
    masks: (M, *S) binary, shared over channels; returns (N, C_in, *S) or (N, K, C_in, *S)."""
    inputs = x.model_inputs.astype(np.float32)
    n = len(inputs)
    m = masks.astype(np.float32)[:, None]                                   # (M, 1, *S)
    out = []
    for i in range(n):
        base = _score_batches(x, inputs[i][None], i, 1)[0]                    # () or (K,)
        diffs = []
        for s in range(0, len(m), batch_size):
            part = m[s:s + batch_size]
            perturbed = inputs[i][None] * (1 - part) + np.float32(baseline) * part
            diffs.append(base[None] - _score_batches(x, perturbed, i, batch_size))
        diff = np.concatenate(diffs)                                          # (M,) or (M, K)
        flat = m.reshape(len(m), -1)
        total = (diff.reshape(len(m), -1).T @ flat)                           # (1 or K, prod(S))
        if average:
            count = flat.sum(axis=0)
            total = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
        shape = inputs.shape[2:]
        per_pos = total.reshape((-1,) + shape)
        attr = np.broadcast_to(per_pos[:, None], (len(per_pos), inputs.shape[1]) + shape)
        out.append(attr[0] if diff.ndim == 1 else attr)
    return np.ascontiguousarray(np.stack(out)).astype(np.float32)


def occlusion_masks(size: tuple, window: tuple, stride: tuple) -> np.ndarray:
    """(M, *S) binary masks of every window position (captum's: floor((S - w) / s) + 1 per axis)."""
    starts = [range(0, dim - w + 1, st) for dim, w, st in zip(size, window, stride, strict=True)]
    if any(len(r) == 0 for r in starts):
        raise XcamError(f"occlusion window {window} is larger than the input {size}; give a smaller window")
    corners = np.array(list(itertools.product(*starts)))                     # (M, r)
    grids = np.ogrid[tuple(slice(0, d) for d in size)]
    masks = np.ones((len(corners),) + size, bool)
    for axis, g in enumerate(grids):
        lo = corners[:, axis].reshape((-1,) + (1,) * len(size))
        masks &= (g[None] >= lo) & (g[None] < lo + window[axis])
    return masks


def segment_masks(x) -> np.ndarray:
    """(M, *S) one mask per superpixel: option ``mask`` (an int array of the input's spatial shape, one label
    per superpixel) or else a grid of ``cells`` cells per axis."""
    size = tuple(x.model_inputs.shape[2:])
    given = x.options.get("mask")
    if given is not None:
        labels = np.asarray(given)
        if labels.shape != size:
            raise XcamError(f"option mask has shape {labels.shape}; it must be the input's spatial shape {size}")
    else:
        cells = _spatial_tuple(x.options.get("cells", 4), len(size), "cells")
        idx = [np.minimum(np.arange(d) * c // d, c - 1) for d, c in zip(size, cells, strict=True)]
        labels = np.zeros(size, np.int64)
        for axis, (ix, c) in enumerate(zip(idx, cells, strict=True)):
            labels = labels * c + ix.reshape([-1 if a == axis else 1 for a in range(len(size))])
    return labels[None] == np.unique(labels).reshape((-1,) + (1,) * len(size))


def occlusion_attribution(x: MethodArgs) -> np.ndarray:
    """Signed Occlusion attribution (N, C_in, *S) or (N, K, C_in, *S)."""
    size = tuple(x.model_inputs.shape[2:])
    window = _spatial_tuple(x.options["window"], len(size), "window")
    stride = _spatial_tuple(x.options["stride"], len(size), "stride")
    return ablate_masks(x, occlusion_masks(size, window, stride), float(x.options["baseline"]),
                        int(x.options["batch_size"]), average=True)


def featureablation_attribution(x: MethodArgs) -> np.ndarray:
    """Signed Feature Ablation attribution (N, C_in, *S) or (N, K, C_in, *S)."""
    return ablate_masks(x, segment_masks(x), float(x.options["baseline"]), int(x.options["batch_size"]),
                        average=False)


@register("occlusion", title="Occlusion", kind="pixel", relu=False, needs_gradients=False, needs_forwards=True,
          options={"window": 8, "stride": 4, "baseline": 0.0, "batch_size": 64},
          paper="Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014, arXiv:1311.2901")
def occlusion(x: MethodArgs) -> np.ndarray:
    r"""A_i = mean over the windows W containing i of f(x) - f(x with W set to the baseline b), every input
    channel occluded together (captum's Occlusion with sliding_window_shapes (C, w, w) and strides (C, s, s));
    options window (8), stride (4), baseline (0.0), batch_size (64). Positions no window covers get 0 (captum:
    0/0). cam() reduces with max_c |A|."""
    return occlusion_attribution(x)


@register("featureablation", title="Feature Ablation", kind="pixel", relu=False, needs_gradients=False,
          needs_forwards=True, options={"mask": None, "cells": 4, "baseline": 0.0, "batch_size": 64},
          paper="captum FeatureAblation (Kokhlikyan et al., Captum, arXiv:2009.07896)")
def featureablation(x: MethodArgs) -> np.ndarray:
    r"""A_i = f(x) - f(x with i's superpixel set to the baseline), the same value over the superpixel and every
    input channel (captum's FeatureAblation with a feature_mask shared over channels). Superpixels: option mask
    (an int array of the input's spatial shape) or a grid of ``cells`` (4) cells per axis; baseline (0.0),
    batch_size (64). cam() reduces with max_c |A|."""
    return featureablation_attribution(x)
