"""Perturbation attributions at the input: Occlusion and Feature Ablation. The windows, segments, baselines and
averages are made here; the adapter's probe only scores the batched perturbed inputs (``Probe.score``).

The core functions return the SIGNED attribution, float32, channels first, (N, C_in, *S) (or (N, K, C_in, *S)
for several classes). Until the pixel-method contract carries signed attributions, the registered functions
reduce it with max_c |.| (the pixel methods' channel reduction) for ``cam``.
"""

import itertools

import numpy as np

from ..errors import XcamError
from ..ops import aligned_empty, matmul_inline
from .registry import MethodArgs, choice, register


def _spatial_tuple(value, rank: int, name: str) -> tuple:
    """An int or a tuple of ``rank`` positive ints."""
    values = (value,) * rank if np.isscalar(value) else tuple(value)
    if len(values) != rank or any(int(v) < 1 for v in values):
        raise XcamError(f"option {name}={value!r} is not valid; give a positive int or {rank} positive ints")
    return tuple(int(v) for v in values)


def channels_last_rows(n: int, channels: int, size: tuple) -> np.ndarray:
    """An empty float32 (n, channels, *size) array whose memory is channels last ((n, *size, channels)
    underneath). Both adapters hand their frameworks that memory (Keras's own layout, PyTorch's channels_last),
    so perturbed rows made in it cross without a transpose copy (0.83 -> 0.15 ms per 32 rows of 64x64x3); it is
    aligned (``xcam.ops.aligned_empty``), so TensorFlow takes it without copying it either."""
    return np.moveaxis(aligned_empty((n, *size, channels)), -1, 1)


def masked_rows(image: np.ndarray, masks: np.ndarray, fill=0.0, out=None) -> np.ndarray:
    r"""x \odot M_b + fill (1 - M_b) for each mask: image (C, *S), masks (B, *S), fill a number or (C, *S);
    (B, C, *S) float32 in channels-last memory (``channels_last_rows``, or written into ``out``), one channel at
    a time. A fill of 0 adds nothing (the same values as x M + 0 (1 - M))."""
    rows = channels_last_rows(len(masks), len(image), image.shape[1:]) if out is None else out
    scalar = np.ndim(fill) == 0
    rest = None if scalar and fill == 0 else np.float32(1) - masks
    for c in range(len(image)):
        out = rows[:, c]
        np.multiply(image[c], masks, out=out)
        if rest is not None:
            out += (fill if scalar else fill[c]) * rest
    return rows


def rows_per_call(x: MethodArgs, default: int) -> int:
    """Rows per model call: option batch_size, else the call's ``batch_size=``, else the method's default."""
    value = x.options.get("batch_size")
    value = value if value is not None else (x.batch_size if x.batch_size is not None else default)
    if int(value) < 1:
        raise XcamError(f"batch_size={value} is not valid; give a positive number of rows per model call")
    return int(value)


def _score_batches(x, inputs: np.ndarray, sample: int, batch_size: int) -> np.ndarray:
    """The target's scores (B,) or (B, K) of perturbed copies of input ``sample``, in batches."""
    parts = [x.probe.score(inputs[s:s + batch_size], x.target, np.full(len(inputs[s:s + batch_size]), sample))
             for s in range(0, len(inputs), batch_size)]
    return np.concatenate(parts).astype(np.float32)


def score_inputs(x, batch_size: int) -> np.ndarray:
    """The target's scores (N,) or (N, K) of the unperturbed inputs, ``batch_size`` inputs a model call."""
    inputs = x.model_inputs.astype(np.float32)
    parts = [x.probe.score(inputs[s:s + batch_size], x.target, np.arange(s, min(s + batch_size, len(inputs))))
             for s in range(0, len(inputs), batch_size)]
    return np.concatenate(parts).astype(np.float32)


def score_copies(x, count: int, write_rows, batch_size: int) -> list:
    """The target's scores of ``count`` perturbed copies of every input, ``batch_size`` rows a model call whatever
    input they come from (captum's way: every call full but the last). ``write_rows(i, a, b, out)`` writes copies
    a..b of input i into ``out`` (b - a, C, *S), channels-last memory. Per input, (count,) or (count, K)."""
    inputs = x.model_inputs
    n, total = len(inputs), len(inputs) * count
    parts = [[] for _ in range(n)]
    for g0 in range(0, total, batch_size):
        g1 = min(g0 + batch_size, total)
        rows = channels_last_rows(g1 - g0, inputs.shape[1], inputs.shape[2:])
        owners, spans = np.empty(g1 - g0, np.int64), []
        for i in range(g0 // count, (g1 - 1) // count + 1):
            a, b = max(g0 - i * count, 0), min(g1 - i * count, count)
            k = i * count + a - g0
            write_rows(i, a, b, rows[k:k + b - a])
            owners[k:k + b - a] = i
            spans.append((i, k, b - a))
        scores = np.asarray(x.probe.score(rows, x.target, owners), np.float32)
        for i, k, length in spans:
            parts[i].append(scores[k:k + length])
    return [np.concatenate(p) for p in parts]


def ablate_masks(x, masks: np.ndarray, baseline, batch_size: int, average: bool) -> np.ndarray:
    r"""A_i = \sum_m (f(x) - f(x \odot (1 - M_m) + b M_m)) M_m  [/ \sum_m M_m where covered, if ``average``].
    masks: (M, *S) binary, shared over channels; returns (N, C_in, *S) or (N, K, C_in, *S). The unperturbed
    inputs go first (one call of up to batch_size inputs), then every input's M copies, batch_size rows a call."""
    inputs = x.model_inputs.astype(np.float32)
    keep = 1 - masks.astype(np.float32)                                      # binary: 1 - (1 - M) = M below
    fill = np.float32(baseline)
    base = score_inputs(x, batch_size)                                       # (N,) or (N, K)
    scores = score_copies(x, len(keep), lambda i, a, b, out: masked_rows(inputs[i], keep[a:b], fill, out),
                          batch_size)
    flat = masks.reshape(len(masks), -1).astype(np.float32)
    count = flat.sum(axis=0)
    shape = inputs.shape[2:]
    out = []
    for i, y in enumerate(scores):
        diff = base[i][None] - y                                             # (M,) or (M, K)
        total = matmul_inline(diff.reshape(len(flat), -1).T, flat)                        # (1 or K, prod(S))
        if average:
            total = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
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
    window = tuple(min(w, d) for w, d in zip(_spatial_tuple(x.options["window"], len(size), "window"), size,
                                             strict=True))   # a window larger than the input covers all of it
    stride = _spatial_tuple(x.options["stride"], len(size), "stride")
    return ablate_masks(x, occlusion_masks(size, window, stride), float(x.options["baseline"]),
                        rows_per_call(x, 64), average=True)


def featureablation_attribution(x: MethodArgs) -> np.ndarray:
    """Signed Feature Ablation attribution (N, C_in, *S) or (N, K, C_in, *S)."""
    return ablate_masks(x, segment_masks(x), float(x.options["baseline"]), rows_per_call(x, 64),
                        average=False)


@register("occlusion", title="Occlusion", kind="pixel", relu=False, needs_gradients=False, needs_forwards=True,
          needs_capture=False,
          options={"window": 8, "stride": 4, "baseline": 0.0, "batch_size": None},
          paper="Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014, arXiv:1311.2901")
def occlusion(x: MethodArgs) -> np.ndarray:
    r"""A_i = mean over the windows W containing i of f(x) - f(x with W set to the baseline b), every input
    channel occluded together (captum's Occlusion with sliding_window_shapes (C, w, w) and strides (C, s, s));
    options window (8; clipped to the input's size on a smaller input), stride (4), baseline (0.0), batch_size
    (rows per forward; default the call's batch_size=, else 64). Positions no window covers get 0 (captum: 0/0).
    cam() reduces with max_c |A|."""
    return occlusion_attribution(x)


@register("featureablation", title="Feature Ablation", kind="pixel", relu=False, needs_gradients=False,
          needs_forwards=True, needs_capture=False,
          options={"mask": None, "cells": 4, "baseline": 0.0, "batch_size": None},
          paper="captum FeatureAblation (Kokhlikyan et al., Captum, arXiv:2009.07896)")
def featureablation(x: MethodArgs) -> np.ndarray:
    r"""A_i = f(x) - f(x with i's superpixel set to the baseline), the same value over the superpixel and every
    input channel (captum's FeatureAblation with a feature_mask shared over channels). Superpixels: option mask
    (an int array of the input's spatial shape) or a grid of ``cells`` (4) cells per axis; baseline (0.0),
    batch_size (rows per forward; default the call's batch_size=, else 64). cam() reduces with max_c |A|."""
    return featureablation_attribution(x)


def _lime_weights(x, inputs: np.ndarray, perturbed: np.ndarray, sample: int, z: np.ndarray) -> np.ndarray:
    r"""LIME's similarity exp(-d^2 / (2 w^2)) of each perturbed copy to input ``sample`` (captum's default
    ``get_exp_kernel_similarity_function``): d = 1 - cos(x, x') (``distance`` cosine) or ||x - x'||_2."""
    mode = choice(x.options, "distance", ("cosine", "euclidean"))
    width = float(x.options["kernel_width"])
    a = inputs[sample].reshape(-1).astype(np.float64)
    b = perturbed.reshape(len(perturbed), -1).astype(np.float64)
    if mode == "cosine":
        norms = np.maximum(np.sqrt(np.einsum("i,i->", a, a) * np.einsum("bi,bi->b", b, b)), 1e-8)
        d = 1.0 - matmul_inline(b, a) / norms                    # einsum, not BLAS (see ``matmul_inline``)
    else:
        d = np.sqrt(np.einsum("bi,bi->b", b - a[None], b - a[None]))
    return np.exp(-d ** 2 / (2 * width ** 2))


def _shapley_weights(x, inputs, perturbed, sample, z: np.ndarray) -> np.ndarray:
    """KernelSHAP's weights as captum's: 1 for every sample (the Shapley kernel is in the sampling), 1e6 for the
    all-on and all-off samples (the endpoint constraints)."""
    k = z.sum(axis=1)
    return np.where((k == 0) | (k == z.shape[1]), 1e6, 1.0)


def lime_samples(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """(n, m) binary interpretable samples, each superpixel on with probability 1/2 (captum's Lime)."""
    return (rng.random((n, m)) < 0.5).astype(np.float32)


def shapley_samples(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    r"""(n, m) binary samples as captum's KernelShap: all on, all off, then k ~ p(k) \propto (M-1)/(k(M-k)),
    k = 1..M-1, and k superpixels on uniformly at random (so the sample frequency is the Shapley kernel)."""
    z = np.zeros((n, m), np.float32)
    z[0] = 1
    if n > 2 and m > 1:
        ks = np.arange(1, m)
        p = (m - 1) / (ks * (m - ks))
        k = rng.choice(ks, size=n - 2, p=p / p.sum())
        order = np.argsort(-rng.standard_normal((n - 2, m)), axis=1)
        z[2:] = (np.argsort(order, axis=1) < k[:, None]).astype(np.float32)
    return z[:n]


def weighted_linear_fit(z: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    r"""argmin_{c, b} \sum_s w_s (y_s - b - z_s c)^2, the intercept b unpenalised (sklearn LinearRegression with
    sample_weight: weighted centering, then least squares, the minimum-norm c if rank deficient). z (S, M),
    y (S,) or (S, K); returns c (M,) or (M, K)."""
    w = w.astype(np.float64)
    zw = (w @ z) / w.sum()
    yw = (w @ y) / w.sum()
    r = np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(r * (z - zw), (r if y.ndim == 2 else r[:, 0]) * (y - yw), rcond=None)
    return coef


def surrogate_attribution(x, sampler, weigh) -> np.ndarray:
    r"""A_i = c_{s(i)}, the coefficient of i's superpixel s(i) in the weighted linear fit of f(x_z) on z, where
    x_z = x \odot M(z) + b (1 - M(z)) keeps the superpixels z switches on. (N, C_in, *S) or (N, K, C_in, *S)."""
    inputs = x.model_inputs.astype(np.float32)
    masks = segment_masks(x)
    flat = masks.reshape(len(masks), -1).astype(np.float32)                  # (M, prod S)
    n_samples, batch = int(x.options["n_samples"]), rows_per_call(x, 64)
    if n_samples < 1:
        raise XcamError(f"option n_samples={n_samples} is not valid; give a positive int")
    baseline = np.float32(x.options["baseline"])
    rng = np.random.default_rng(x.options["seed"])
    size = inputs.shape[2:]
    zs = [sampler(rng, n_samples, len(masks)) for _ in inputs]              # input by input, as drawn before
    weights = [np.empty(n_samples) for _ in inputs]

    def write_rows(i, a, b, rows):
        masked_rows(inputs[i], matmul_inline(zs[i][a:b], flat).reshape((-1,) + size), baseline, rows)
        weights[i][a:b] = weigh(x, inputs, rows, i, zs[i][a:b])

    out = []
    for i, y in enumerate(score_copies(x, n_samples, write_rows, batch)):
        y = y.astype(np.float64)
        coef = weighted_linear_fit(zs[i].astype(np.float64), y, weights[i])     # (M,) or (M, K)
        per_pos = matmul_inline(coef.reshape(len(masks), -1).T, flat).reshape((-1,) + size)
        attr = np.broadcast_to(per_pos[:, None], (len(per_pos), inputs.shape[1]) + size)
        out.append(attr[0] if y.ndim == 1 else attr)
    return np.ascontiguousarray(np.stack(out)).astype(np.float32)


def lime_attribution(x: MethodArgs) -> np.ndarray:
    """Signed LIME attribution (N, C_in, *S) or (N, K, C_in, *S)."""
    return surrogate_attribution(x, lime_samples, _lime_weights)


def kernelshap_attribution(x: MethodArgs) -> np.ndarray:
    """Signed KernelSHAP attribution (N, C_in, *S) or (N, K, C_in, *S)."""
    return surrogate_attribution(x, shapley_samples, _shapley_weights)


@register("lime", title="LIME", kind="pixel", relu=False, needs_gradients=False, needs_forwards=True,
          needs_capture=False,
          options={"mask": None, "cells": 4, "baseline": 0.0, "n_samples": 25, "kernel_width": 1.0,
                   "distance": "cosine", "seed": 0, "batch_size": None},
          paper="Ribeiro et al., \"Why Should I Trust You?\": Explaining the Predictions of Any Classifier, KDD 2016, "
                "arXiv:1602.04938")
def lime(x: MethodArgs) -> np.ndarray:
    r"""A_i = c_{s(i)} of argmin_{c,b} \sum_z \pi(z) (f(x_z) - b - z c)^2 over n_samples (25, captum's) binary
    samples z ~ Bernoulli(1/2)^M of the M superpixels (option mask or a grid of ``cells`` per axis), x_z = x on the
    kept superpixels and the baseline (0.0) elsewhere, \pi = exp(-d(x, x_z)^2 / (2 kernel_width^2)) with d the
    cosine distance (``distance`` euclidean: the L2 distance), as captum's Lime defaults. Difference: captum's
    default surrogate is sklearn Lasso(alpha=0.01); here the fit is weighted least squares with an unpenalised
    intercept (captum's Lime with interpretable_model=SkLearnLinearRegression()). Samples from NumPy's
    default_rng(seed), so not captum's torch draws. cam() reduces with max_c |A|."""
    return lime_attribution(x)


@register("kernelshap", title="Kernel SHAP", kind="pixel", relu=False, needs_gradients=False, needs_forwards=True,
          needs_capture=False,
          options={"mask": None, "cells": 4, "baseline": 0.0, "n_samples": 25, "seed": 0, "batch_size": None},
          paper="Lundberg & Lee, A Unified Approach to Interpreting Model Predictions, NeurIPS 2017, "
                "arXiv:1705.07874")
def kernelshap(x: MethodArgs) -> np.ndarray:
    r"""A_i = c_{s(i)} of the weighted least-squares fit (unpenalised intercept) of f(x_z) on z, with the Shapley
    kernel \pi(z) = (M-1) / (C(M,|z|) |z| (M-|z|)) realised as captum's KernelShap does: z all on and all off
    (weight 1e6, the endpoint constraints), then |z| = k ~ (M-1)/(k(M-k)) and k superpixels chosen uniformly
    (weight 1). Options as lime's: mask / cells (4), baseline (0.0), n_samples (25, captum's), seed, batch_size
    (rows per forward; default the call's batch_size=, else 64).
    Samples from NumPy's default_rng(seed), not captum's torch draws. cam() reduces with max_c |A|."""
    return kernelshap_attribution(x)
