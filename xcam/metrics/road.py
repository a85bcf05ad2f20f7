"""ROAD: RemOve And Debias with the noisy linear imputer (Rong et al., ICML 2022, arXiv:2202.00449)."""

import cv2
import numpy as np

from xcam.errors import XcamError
from xcam.metrics._common import (
    _CV2_MAX_CHANNELS,
    SCORES,
    MetricResult,
    choice,
    per_plane,
    prepare,
    ranks_from_order,
    target_score,
)

# the reference's neighbour weights: 1/6 for the 4 direct neighbours, 1/12 for the 4 diagonal ones (sum 1)
STENCIL = np.array([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]])
ORDERS = ("morf", "lerf")
_SWEEPS, _COARSEST, _COARSEST_SWEEPS = 2, 8, 30  # Jacobi sweeps per side, coarsest grid side, its sweeps


def _neighbours(planes: np.ndarray) -> np.ndarray:
    """sum over the 8 neighbours q of p of w_q * v[q] for every (H, W, M) plane; outside the image counts 0."""
    planes = np.ascontiguousarray(planes)
    out = np.empty_like(planes)
    for start in range(0, planes.shape[2], _CV2_MAX_CHANNELS):  # OpenCV takes at most 128 channels a call
        part = planes[:, :, start:start + _CV2_MAX_CHANNELS]
        res = cv2.filter2D(part if part.flags.c_contiguous else np.ascontiguousarray(part), -1, STENCIL,
                           borderType=cv2.BORDER_CONSTANT)
        out[:, :, start:start + _CV2_MAX_CHANNELS] = res.reshape(part.shape)
    return out


class _Level:
    """One grid of the multigrid preconditioner: the unknown pixels (H, W, M) as 0/1, the in-image weight sums D
    and the next coarser grid (2x2 blocks; a block is unknown when any of its pixels is), down to 8 pixels a side."""

    def __init__(self, unknown: np.ndarray):
        self.unknown = unknown
        h, w = unknown.shape[:2]
        ones = np.ones((h, w), unknown.dtype)
        self.diag = cv2.filter2D(ones, -1, STENCIL, borderType=cv2.BORDER_CONSTANT)[:, :, None]
        self.inverse = unknown / self.diag
        self.coarse = None
        if min(h, w) >= 2 * _COARSEST:
            u = np.pad(unknown, ((0, h % 2), (0, w % 2), (0, 0)))
            self.coarse = _Level(np.maximum(np.maximum(u[0::2, 0::2], u[1::2, 0::2]),
                                            np.maximum(u[0::2, 1::2], u[1::2, 1::2])))

    def apply(self, v: np.ndarray) -> np.ndarray:
        """(D - W) v on the unknown pixels (v is zero on the known ones)."""
        return self.unknown * (self.diag * v - _neighbours(v))

    def vcycle(self, r: np.ndarray) -> np.ndarray:
        """An approximate solution e of (D - W) e = r (r zero on the known pixels): a symmetric V-cycle, Jacobi
        smoothing (2 sweeps before and after; Jacobi damps every frequency above the grid's half by 3x for this
        stencil), the residual summed over 2x2 blocks to the coarser grid (whose operator is the same stencil
        at twice the spacing, hence the sum: 4 x the mean) and its correction interpolated back bilinearly."""
        # a Jacobi sweep e <- e + D^-1 (r - (D - W) e) is e <- (r + W e) / D on the unknown pixels (e is 0 elsewhere)
        e = r * self.inverse
        for _ in range((_SWEEPS if self.coarse is not None else _COARSEST_SWEEPS) - 1):
            e = (r + _neighbours(e)) * self.inverse
        if self.coarse is None:
            return e
        h, w = r.shape[:2]
        res = np.pad(r - self.diag * e + self.unknown * _neighbours(e), ((0, h % 2), (0, w % 2), (0, 0)))
        ec = self.coarse.vcycle(res[0::2, 0::2] + res[1::2, 0::2] + res[0::2, 1::2] + res[1::2, 1::2])
        up = per_plane(lambda p: cv2.resize(p, (2 * p.shape[1], 2 * p.shape[0]), interpolation=cv2.INTER_LINEAR),
                       ec.transpose(2, 0, 1)).transpose(1, 2, 0)
        e += self.unknown * up[:h, :w]
        for _ in range(_SWEEPS):
            e = (r + _neighbours(e)) * self.inverse
        return e


def _solve(img: np.ndarray, known: np.ndarray, tol: float, max_iter: int = 10000) -> np.ndarray:
    """Conjugate gradient preconditioned by one multigrid V-cycle (the flexible, Polak-Ribiere form, which
    tolerates the V-cycle's slight asymmetry) on (H, W, M) planes: the unknown pixels of img solved, known ones
    kept; each plane stops once ||r|| <= tol * ||b||."""
    level = _Level((1.0 - known).astype(np.float32))  # the preconditioner in float32 (the CG itself in float64)
    rhs = level.unknown * _neighbours(img * known)
    x = np.zeros_like(rhs)
    r = rhs.copy()
    z = level.vcycle(r.astype(np.float32)).astype(np.float64)
    p = z.copy()
    rz = (r * z).sum(axis=(0, 1))
    limit = tol * np.maximum(np.sqrt((rhs * rhs).sum(axis=(0, 1))), 1e-300)
    for _ in range(max_iter):
        active = np.sqrt((r * r).sum(axis=(0, 1))) > limit
        if not active.any():
            break
        ap = level.apply(p)
        pap = (p * ap).sum(axis=(0, 1))
        alpha = np.where(active & (pap > 0), rz / np.where(pap > 0, pap, 1), 0.0)
        x += alpha * p
        r_old = r
        r = r - alpha * ap
        z = level.vcycle(r.astype(np.float32)).astype(np.float64)
        rz_new = (r * z).sum(axis=(0, 1))
        beta = (z * (r - r_old)).sum(axis=(0, 1))
        beta = np.where(active & (rz > 0), beta / np.where(rz > 0, rz, 1), 0.0)
        p = z + beta * p
        rz = rz_new
    return np.where(known > 0, img, x)


def impute_linear(images: np.ndarray, removed: np.ndarray, *, tol: float = 1e-6, max_iter: int = 10000) -> np.ndarray:
    """ROAD's linear imputation without noise, for a batch: images (B, C, H, W), removed (B, H, W) bool.

    Every removed pixel p becomes the weighted mean of its neighbours, x_p = sum_q w_q x_q / sum_q w_q over the
    in-image neighbours q of p (w = 1/6 direct, 1/12 diagonal; neighbours outside the image are dropped and the
    weights renormalized, as the reference's ``sum_neighbors``), kept pixels fixed. That is the sparse symmetric
    positive-definite system (D - W_uu) x_u = W_uk x_k with D_p = sum of p's in-image weights; it is solved for all
    images and channels at once by conjugate gradient preconditioned with one geometric multigrid V-cycle (Jacobi
    smoothing, 2x2-block coarsening down to 8 pixels a side, bilinear interpolation; the stencil applied by
    cv2.filter2D, zero border; the V-cycle in float32, the CG in float64), until ||r|| <= tol * ||b|| for every
    image and channel (or ``max_iter``): about 15 iterations at the default tol = 1e-6, nearly independent of the
    size (Jacobi-CG: hundreds at 224x224). Measured on Grad-CAM ROAD masks of 224x224 photos: the imputed values
    within 2.1e-5 of scipy's exact sparse solve (image range 4.1). Needs at least one kept pixel per image.
    """
    b_, c, h, w = images.shape
    if removed.shape != (b_, h, w):
        raise XcamError(f"removed must be (B, H, W) = {(b_, h, w)}, got {removed.shape}")
    if (removed.reshape(b_, -1).all(axis=1)).any():
        raise XcamError("at least one pixel per image must be kept: the imputation needs known neighbours")
    img = images.astype(np.float64).transpose(2, 3, 0, 1).reshape(h, w, b_ * c)  # planes: image-major, channel
    known = 1.0 - np.repeat(removed.transpose(1, 2, 0), c, axis=2).astype(np.float64)
    return _solve(img, known, tol, max_iter).reshape(h, w, b_, c).transpose(2, 3, 0, 1)


def impute_noisy_linear(images: np.ndarray, removed: np.ndarray, *, noise: float = 0.01, rng=None,
                        tol: float = 1e-6) -> np.ndarray:
    """ROAD's noisy linear imputer (Rong et al., 2022): ``impute_linear`` plus N(0, noise^2) on the removed
    pixels only (every channel), kept pixels unchanged; float32 (B, C, H, W). ``rng``: a numpy Generator or seed."""
    rng = np.random.default_rng(rng)
    filled = impute_linear(images, removed, tol=tol)
    draw = rng.standard_normal(images.shape)  # drawn for every pixel so the stream does not depend on the masks
    return np.where(removed[:, None], filled + noise * draw, filled).astype(np.float32)


def road(predict, inputs, maps, targets, *, order: str = "morf", percentiles=(10, 20, 30, 40, 50, 60, 70, 80, 90),
         noise: float = 0.01, seed: int = 0, score: str = "probability", difference: bool = False, scores=None,
         batch_size: int = 64, tol: float = 1e-6) -> MetricResult:
    """ROAD (Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods", ICML 2022).

    For each percentage p the round(p / 100 * H * W) pixels ranked highest by the map (``order="morf"``, most
    relevant first; lower is better) or lowest (``"lerf"``, least relevant first; higher is better) are removed
    (ties: row-major order, a stable sort) and imputed by the noisy linear imputer (``impute_noisy_linear``: each
    removed pixel = the 1/6-1/12-weighted mean of its in-image neighbours, kept pixels fixed, plus N(0, noise^2));
    the curve is the target score f_t(x_p) per percentage and the per-image value its mean over the percentages:

        ROAD = 1/|P| sum_{p in P} f_t(impute(x, top_p(M)))     (with ``difference=True``: minus f_t(x))

    Score f_t = softmax probability of the target class (default) or its logit (``score="logit"``); the paper
    reports accuracy over a data set, the mean of [argmax = target], which the caller gets from ``curves`` with
    logits. Defaults: percentages 10..90 (as pytorch-grad-cam), noise 0.01, ``seed`` 0. Forwards: |P| per image,
    all images and percentages imputed and run ``batch_size`` at a time (the unperturbed forward only with
    ``difference=True``, reusing ``scores``).
    """
    choice("order", order, ORDERS)
    choice("score", score, SCORES)
    pcts = np.asarray(percentiles, dtype=np.float64).reshape(-1)
    if pcts.size == 0 or not np.isfinite(pcts).all() or (pcts <= 0).any() or (pcts >= 100).any():
        raise XcamError(f"percentiles must be percentages strictly between 0 and 100, got {percentiles!r}")
    if isinstance(noise, bool) or not isinstance(noise, int | float) or not noise >= 0:
        raise XcamError(f"noise must be a standard deviation >= 0, got {noise!r}")
    x, m, t, logits, fwd = prepare(predict, inputs, maps, targets, scores, batch_size, need_scores=difference)
    n, c, h, w = x.shape
    flat = m.reshape(n, -1)
    ranks = ranks_from_order(np.argsort(-flat if order == "morf" else flat, axis=1, kind="stable")).reshape(n, h, w)
    counts = np.rint(pcts / 100 * h * w).astype(np.int64)
    image = np.repeat(np.arange(n), len(pcts))
    count = np.tile(counts, n)
    rng = np.random.default_rng(seed)

    def make(a, b):
        removed = ranks[image[a:b]] < count[a:b, None, None]
        return impute_noisy_linear(x[image[a:b]], removed, noise=float(noise), rng=rng, tol=tol)

    out = fwd.jobs(len(image), make)
    curves = target_score(out, t[image], score).reshape(n, len(pcts))
    per_image = curves.mean(axis=1)
    if difference:
        per_image = per_image - target_score(logits, t, score)
    return MetricResult(f"road_{order}", per_image, curves, pcts / 100, fwd.forwards)
