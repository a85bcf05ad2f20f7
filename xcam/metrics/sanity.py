"""Sanity checks for saliency maps (Adebayo et al., NeurIPS 2018): rank correlation, SSIM and the cascading
model-parameter randomization test."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from xcam.errors import XcamError
from xcam.metrics._common import check_maps, check_pair, gaussian_blur

SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..P of each row of (N, P) values, ties given the mean of the ranks they span (scipy's "average")."""
    n, p = values.shape
    order = np.argsort(values, axis=1, kind="stable")
    ordered = np.take_along_axis(values, order, axis=1)
    starts = np.ones((n, p), dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = np.cumsum(starts.reshape(-1)) - 1  # group id per sorted element, rows never share a group
    first = np.flatnonzero(starts.reshape(-1)) % p  # position in its row of each group's first element
    size = np.bincount(group)
    mean_rank = first + (size - 1) / 2 + 1
    ranks = np.empty((n, p))
    np.put_along_axis(ranks, order, mean_rank[group].reshape(n, p), axis=1)
    return ranks


def spearman(a, b, *, absolute: bool = False) -> np.ndarray:
    """Spearman rank correlation per image of two (N, H, W) map batches: the Pearson correlation of the average
    ranks (ties share the mean rank, as scipy.stats.spearmanr). ``absolute=True`` ranks |a| and |b| (Adebayo et
    al.'s "absolute value" variant). NaN for an image where either map is constant (undefined, as scipy)."""
    a, b = check_pair(a, b)
    if absolute:
        a, b = np.abs(a), np.abs(b)
    ra = average_ranks(a.reshape(a.shape[0], -1))
    rb = average_ranks(b.reshape(b.shape[0], -1))
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(axis=1) / np.where(den > 0, den, 1), np.nan)


def ssim(a, b, *, data_range: float = 1.0) -> np.ndarray:
    """Structural similarity per image of two (N, H, W) map batches (Wang et al., IEEE TIP 2004):

        SSIM = mean over pixels of (2 mu_a mu_b + C1)(2 s_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(s_a^2 + s_b^2 + C2))

    with local means, variances and covariance from an 11x11 Gaussian window, sigma 1.5 (cv2.GaussianBlur),
    C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = ``data_range`` (1 for maps in [0, 1]), averaged over the pixels whose
    window lies inside the image (Wang's "valid" filtering; skimage crops the same 5-pixel border). Needs H, W >= 11.
    """
    a, b = check_pair(a, b)
    if min(a.shape[1:]) < SSIM_WINDOW:
        raise XcamError(f"ssim needs maps of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {a.shape[1]}x"
                        f"{a.shape[2]}")
    if isinstance(data_range, bool) or not isinstance(data_range, int | float) or not data_range > 0:
        raise XcamError(f"data_range must be a positive number, got {data_range!r}")
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2

    def blur(v):
        return gaussian_blur(v, SSIM_WINDOW, SSIM_SIGMA, cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    r = SSIM_WINDOW // 2
    return s[:, r:-r, r:-r].reshape(s.shape[0], -1).mean(axis=1)


@dataclass(frozen=True)
class CascadeResult:
    """Cascading randomization: ``spearman`` and ``ssim`` (L, N) for the top 1..L layers randomized against the
    original maps, ``layers`` the L names (row k-1 = the top k layers randomized)."""

    layers: tuple
    spearman: np.ndarray
    ssim: np.ndarray


def cascading_randomization(maps_for: Callable[[int], np.ndarray], layers: Sequence[str], *,
                            absolute: bool = False, maps=None) -> CascadeResult:
    """Cascading model-parameter randomization test (Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018).

    ``maps_for(k)`` returns the (N, H, W) maps of the model with its top k layers (``layers[:k]``, from the output
    down) re-initialized, k = 0..L, cumulatively; for k = 1..L the Spearman rank correlation (``absolute`` as in
    ``spearman``) and the SSIM against k = 0 are reported per image. A faithful method's similarity drops as
    layers are randomized. ``maps_for`` is called L + 1 times, in order 0..L; with ``maps`` (the original model's
    maps, already computed) the call for k = 0 is skipped and ``maps`` stands for it.
    """
    layers = tuple(layers)
    if not callable(maps_for):
        raise XcamError(f"maps_for must be a callable k -> maps (N, H, W), got {type(maps_for).__name__}")
    if not layers:
        raise XcamError("layers must name at least one layer to randomize")
    base = check_maps(maps_for(0), name="maps_for(0)") if maps is None else check_maps(maps, name="maps")
    rho, sim = [], []
    for k in range(1, len(layers) + 1):
        maps = check_maps(maps_for(k), name=f"maps_for({k})")
        rho.append(spearman(base, maps, absolute=absolute))
        sim.append(ssim(base, maps))
    return CascadeResult(layers, np.stack(rho), np.stack(sim))
