"""Non-negative matrix factorization in NumPy, and deep feature factorization of a layer's activations
(Collins et al., Deep Feature Factorization For Concept Discovery, ECCV 2018, arXiv:1806.10206).

``nmf`` is scikit-learn's ``NMF(init="random", solver="cd")`` (what pytorch-grad-cam's ``dff`` calls) written
out: the same random start drawn from ``RandomState(seed)``, the same coordinate-descent sweeps (Cichocki &
Phan 2009; W then H, coordinates in order, no regularization) and the same stopping rule (the summed
projected gradient falls to ``tol`` times its first value, or ``max_iter`` sweeps).
"""

import numpy as np

from .errors import XcamError


def _sweep(a: np.ndarray, b: np.ndarray, x: np.ndarray) -> float:
    """One coordinate-descent pass over the rows of ``a`` (k, n) for min ||X - a^T b||^2, a >= 0, updated in
    place (x is X (n, m), b is (k, m)); returns the summed |projected gradient| of each entry just before its
    update. Row t of ``a`` is updated for every n at once (entries of one row are independent given the other
    rows), rows in order: scikit-learn's ``_update_cdnmf_fast`` with its inner loop vectorized."""
    bbt = b @ b.T
    grads = b @ x.T                      # (k, n); row t becomes the gradient g_t = (b b^T)_t a - (b X^T)_t
    before = a.copy()                    # row t is unchanged until its own update
    diagonal = np.diagonal(bbt).copy()
    for t in range(a.shape[0]):
        g, row = grads[t], a[t]
        np.subtract(bbt[t] @ a, g, out=g)
        if diagonal[t] != 0:
            row -= g / diagonal[t]
            np.maximum(row, 0, out=row)
    projected = np.where(before == 0, np.minimum(grads, 0), grads)
    return float(np.abs(projected).sum(dtype=np.float64))


def nmf(x: np.ndarray, k: int, *, max_iter: int = 200, tol: float = 1e-4, seed: int = 0):
    r"""X (n, m) >= 0 ~ W (n, k) H (k, m), W, H >= 0, minimizing the Frobenius error ||X - WH||_F^2.

    Start: with a = sqrt(mean(X) / k), H = a |z_H|, then W = a |z_W|, z ~ N(0, 1) from
    ``np.random.RandomState(seed)`` (H drawn first; scikit-learn's ``init="random"``). Then sweeps of
    coordinate descent (each entry w_it <- max(0, w_it - g_it / (H H^T)_tt), g = W H H^T - X H^T, columns in
    order; then the same for H^T), until sum |projected gradient| <= tol * its value at the first sweep or
    ``max_iter`` sweeps. Returns (W, H, sweeps). Float32 input stays float32 (as scikit-learn)."""
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if x.ndim != 2 or not x.size:
        raise XcamError(f"nmf needs a non-empty matrix (n, m), got shape {x.shape}")
    if not np.isfinite(x).all() or (x < 0).any():
        raise XcamError("nmf needs a finite matrix with no negative entry")
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise XcamError(f"the number of components k must be an integer >= 1, got {k!r}")
    k = int(k)
    rng = np.random.RandomState(seed)
    scale = np.sqrt(x.mean() / k)
    h = np.abs(scale * rng.standard_normal(size=(k, x.shape[1])).astype(x.dtype, copy=False))
    w = np.abs(scale * rng.standard_normal(size=(x.shape[0], k)).astype(x.dtype, copy=False))
    wt = np.ascontiguousarray(w.T)
    xt = np.ascontiguousarray(x.T)
    sweeps, first = 0, None
    while sweeps < int(max_iter):
        sweeps += 1
        violation = _sweep(wt, h, x) + _sweep(h, wt, xt)
        first = violation if first is None else first
        if first == 0 or violation / first <= tol:
            break
    return np.ascontiguousarray(wt.T), h, sweeps


def factorize(activations: np.ndarray, k: int, **options):
    r"""Deep feature factorization (Collins et al. 2018) of activations (N, C, *s), as pytorch-grad-cam's ``dff``:
    the channels x (all positions of all N samples) matrix A, shifted per channel by its minimum
    (A' = A - min_p A, so that A' >= 0), factorized A' ~ W H (``nmf``, ``options`` passed on); the concepts are
    W + min (C, k): each concept's activation vector, back in the layer's units; the maps are H (N, k, *s): where
    each concept is, per sample. The factorization is joint over the batch (concepts shared by all N samples).
    Returns (concepts (C, k), maps (N, k, *s), sweeps)."""
    a = np.asarray(activations, dtype=np.float32)
    if a.ndim < 3:
        raise XcamError(f"activations must be (N, C, *s), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise XcamError("the activations hold NaN or infinite values: a factorization needs finite activations")
    n, c, spatial = a.shape[0], a.shape[1], a.shape[2:]
    matrix = np.moveaxis(a, 1, 0).reshape(c, -1)
    offset = matrix.min(axis=1)
    w, h, sweeps = nmf((matrix - offset[:, None]).astype(np.float64), k, **options)
    maps = np.moveaxis(h.reshape(h.shape[0], n, *spatial), 1, 0)
    return (w + offset[:, None]).astype(np.float32), np.ascontiguousarray(maps, dtype=np.float32), sweeps


def concept_scores(concepts: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    r"""The concepts' class scores through a linear head: S = concepts^T W^T + b, (k, K) logits, for concepts
    (C, k), weight (K, C) and bias (K,) (pytorch-grad-cam's ``computation_on_concepts`` with the model's
    classifier, e.g. ResNet's ``fc``)."""
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 2 or w.shape[1] != concepts.shape[0]:
        raise XcamError(f"the head maps {w.shape[-1]} features to classes, but the layer's concepts have "
                        f"{concepts.shape[0]} channels: give the head that follows this layer (its global "
                        "average pooling), or head=False")
    scores = concepts.T.astype(np.float32) @ w.T
    return scores + np.asarray(bias, dtype=np.float32) if bias is not None else scores
