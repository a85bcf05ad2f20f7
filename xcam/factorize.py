"""Non-negative matrix factorization in NumPy, and deep feature factorization of a layer's activations
(Collins et al., Deep Feature Factorization For Concept Discovery, ECCV 2018, arXiv:1806.10206).

``nmf`` is scikit-learn's ``NMF(init="random", solver="cd")`` (what pytorch-grad-cam's ``dff`` calls) written
out: the same random start drawn from ``RandomState(seed)``, the same coordinate-descent sweeps (Cichocki &
Phan 2009; W then H, coordinates in order, no regularization) and the same stopping rule (the summed
projected gradient falls to ``tol`` times its first value, or ``max_iter`` sweeps).
"""

import numpy as np

from .errors import XcamError


class _Rows:
    """Coordinate descent over the rows of ``a`` (k, n), or (B, k, n) for B problems, in place, for
    min ||X - a^T b||^2, a >= 0: scikit-learn's ``_update_cdnmf_fast`` with its inner loop vectorized (entries
    of one row are independent given the other rows; rows in order). Row t's update w_t <- max(0, w_t - g_t /
    d_t), g_t = (b b^T)_t a - (b X^T)_t, d_t = (b b^T)_tt, is written max(0, Q_t a + (b X^T)_t / d_t) with
    Q = -b b^T / d and a zero diagonal: three NumPy calls a row, on views made once (a row whose b is 0 stays
    as it is)."""

    def __init__(self, a: np.ndarray):
        self.a, self.k = a, a.shape[-2]
        self.before, self.new, self.shift = np.empty_like(a), np.empty_like(a), np.empty_like(a)
        self.q = np.empty((*a.shape[:-2], self.k, self.k), a.dtype)
        if a.ndim == 2:   # one problem: np.dot of a row (cheaper to call than np.matmul)
            self.product = np.dot
            self.rows = [(self.q[t], self.new[t], self.new[t], self.shift[t], a[t]) for t in range(self.k)]
        else:
            self.product = np.matmul
            self.rows = [(self.q[:, t:t + 1], self.new[:, t:t + 1], self.new[:, t], self.shift[:, t], a[:, t])
                         for t in range(self.k)]

    def __call__(self, b: np.ndarray, x: np.ndarray) -> np.ndarray:
        """One pass with b (k, m) and X (n, m) (or stacks of them); returns the summed |projected gradient| of
        the entries just before their update (one per problem)."""
        q, shift = self.q, self.shift
        d = np.einsum("...km,...km->...k", b, b)[..., None]          # (b b^T)_tt
        some_zero = 0.0 in d.ravel().tolist()                        # a zero row of b: its row of a is kept
        col = np.where(d == 0, 1, d) if some_zero else d
        scaled = b / col
        np.matmul(scaled, b.swapaxes(-1, -2), out=q)
        np.negative(q, out=q)
        q.reshape(*q.shape[:-2], -1)[..., ::self.k + 1] = 0
        np.matmul(scaled, x.swapaxes(-1, -2), out=shift)
        if some_zero:   # Q_t = e_t and no shift: the row is copied through
            zero = (d == 0)[..., 0]
            q[zero] = 0
            shift[zero] = 0
            *problem, t = np.nonzero(zero)
            q[(*problem, t, t)] = 1
        return self._pass(col)

    def _pass(self, d) -> np.ndarray:
        a, new, before = self.a, self.new, self.before
        np.copyto(before, a)
        product, maximum = self.product, np.maximum
        for q_t, new_t, new_row, shift_t, a_t in self.rows:
            product(q_t, a, out=new_t)
            new_row += shift_t
            maximum(new_row, 0, out=a_t)
        g = np.subtract(before, new, out=new)   # the gradient before the update is d_t (w_t - w'_t)
        np.minimum(g, 0, out=g, where=before == 0)  # projected
        g = np.abs(g, out=g).sum(axis=-1, dtype=np.float64)
        return g @ d[..., 0] if g.ndim == 1 else np.einsum("bk,bk->b", g, d[..., 0])


def nmf(x: np.ndarray, k: int, *, max_iter: int = 200, tol: float = 1e-4, seed: int = 0):
    r"""X (n, m) >= 0 ~ W (n, k) H (k, m), W, H >= 0, minimizing the Frobenius error ||X - WH||_F^2; a stack
    X (B, n, m) gives B factorizations at once, each the same as alone (W (B, n, k), H (B, k, m), sweeps (B,)).

    Start: with a = sqrt(mean(X) / k), H = a |z_H|, then W = a |z_W|, z ~ N(0, 1) from
    ``np.random.RandomState(seed)`` (H drawn first; scikit-learn's ``init="random"``). Then sweeps of
    coordinate descent (each entry w_it <- max(0, w_it - g_it / (H H^T)_tt), g = W H H^T - X H^T, columns in
    order; then the same for H^T), until sum |projected gradient| <= tol * its value at the first sweep or
    ``max_iter`` sweeps. Returns (W, H, sweeps). Float32 input stays float32 (as scikit-learn)."""
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if x.ndim not in (2, 3) or not x.size:
        raise XcamError(f"nmf needs a non-empty matrix (n, m) or a stack of them (B, n, m), got shape {x.shape}")
    if not np.isfinite(x).all() or (x < 0).any():
        raise XcamError("nmf needs a finite matrix with no negative entry")
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise XcamError(f"the number of components k must be an integer >= 1, got {k!r}")
    k = int(k)
    stack = x if x.ndim == 3 else x[None]
    rng = np.random.RandomState(seed)
    z_h = rng.standard_normal(size=(k, stack.shape[2]))
    z_w = rng.standard_normal(size=(stack.shape[1], k))
    wt = np.empty((len(stack), k, stack.shape[1]), x.dtype)
    h = np.empty((len(stack), k, stack.shape[2]), x.dtype)
    for i, one in enumerate(stack):
        scale = np.sqrt(one.mean() / k)
        h[i] = np.abs(scale * z_h.astype(x.dtype, copy=False))
        wt[i] = np.abs(scale * z_w.astype(x.dtype, copy=False)).T
    sweeps = np.zeros(len(stack), np.int64)
    live, count, first = np.arange(len(stack)) if int(max_iter) > 0 else np.arange(0), 0, None
    while len(live):   # the problems still running have all had the same sweeps and their first together
        done, count, first = _descend(wt, h, stack, live, int(max_iter), float(tol), count, first)
        sweeps[live[done]] = count
        live = live[~done]
    w = np.ascontiguousarray(wt.swapaxes(1, 2))
    return (w, h, sweeps) if x.ndim == 3 else (w[0], h[0], int(sweeps[0]))


def _descend(wt, h, stack, live, max_iter: int, tol: float, count: int, first):
    """Sweep the problems ``live`` together (their W^T, H updated in place in ``wt``, ``h``) until one or more
    of them stops, after ``count`` sweeps so far with first violations ``first`` (None before the first);
    returns (which of ``live`` stopped, the sweeps so far, the first violations of those that go on)."""
    a, b = np.ascontiguousarray(wt[live]), np.ascontiguousarray(h[live])
    x = np.ascontiguousarray(stack[live])
    xt = np.ascontiguousarray(x.swapaxes(1, 2))
    if len(live) == 1:   # one problem: 2-D arrays (views), the cheaper NumPy calls
        a, b, x, xt = a[0], b[0], x[0], xt[0]
    rows_w, rows_h = _Rows(a), _Rows(b)
    while True:
        count += 1
        violation = np.reshape(rows_w(b, x) + rows_h(a, xt), -1)
        first = violation if first is None else first
        if len(live) == 1:   # scikit-learn's test, on floats
            start, now = float(first[0]), float(violation[0])
            done = np.array([start == 0 or now / start <= tol])
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                done = (first == 0) | (violation / first <= tol)
        if count >= max_iter:
            done[:] = True
        if done.any():
            wt[live], h[live] = a.reshape(len(live), *a.shape[-2:]), b.reshape(len(live), *b.shape[-2:])
            return done, count, first[~done]


def factorize(activations: np.ndarray, k: int, *, each: bool = False, **options):
    r"""Deep feature factorization (Collins et al. 2018) of activations (N, C, *s), as pytorch-grad-cam's ``dff``:
    the channels x (all positions of all N samples) matrix A, shifted per channel by its minimum
    (A' = A - min_p A, so that A' >= 0), factorized A' ~ W H (``nmf``, ``options`` passed on); the concepts are
    W + min (C, k): each concept's activation vector, back in the layer's units; the maps are H (N, k, *s): where
    each concept is, per sample. The factorization is joint over the batch (concepts shared by all N samples).
    Returns (concepts (C, k), maps (N, k, *s), sweeps). ``each=True``: every sample factorized alone (its own
    minimum and concepts; the N problems swept together, ``nmf`` of a stack): (concepts (N, C, k), maps
    (N, k, *s), sweeps (N,)), each the same as ``factorize`` of that sample alone."""
    a = np.asarray(activations, dtype=np.float32)
    if a.ndim < 3:
        raise XcamError(f"activations must be (N, C, *s), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise XcamError("the activations hold NaN or infinite values: a factorization needs finite activations")
    n, c, spatial = a.shape[0], a.shape[1], a.shape[2:]
    if each:
        matrices = a.reshape(n, c, -1)
        offset = matrices.min(axis=2, keepdims=True)
        w, h, sweeps = nmf((matrices - offset).astype(np.float64), k, **options)
        maps = h.reshape(n, h.shape[1], *spatial)
        return (w + offset).astype(np.float32), np.ascontiguousarray(maps, dtype=np.float32), sweeps
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
