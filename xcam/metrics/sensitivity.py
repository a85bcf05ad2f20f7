"""Max-sensitivity of an explanation (Yeh et al., On the (In)fidelity and Sensitivity of Explanations, NeurIPS 2019)."""

from collections.abc import Callable

import numpy as np

from xcam.errors import XcamError
from xcam.metrics._common import MetricResult, check_inputs, check_maps, positive_int


def max_sensitivity(explain: Callable[[np.ndarray], np.ndarray], inputs, *, radius: float = 0.02, samples: int = 10,
                    seed: int = 0, maps=None, batch_size: int = 64) -> MetricResult:
    """Max-sensitivity (Yeh et al., NeurIPS 2019), estimated as captum's ``sensitivity_max``:

        SENS_max(E, x) = max_{s = 1..S} ||E(x + d_s) - E(x)||_F / ||E(x)||_F,   d_s ~ U[-r, r]^(C x H x W)

    (the norm of the original explanation replaced by 1 where it is 0, as captum; Yeh et al.'s definition has no
    division, so it equals this times ||E(x)||_F). ``explain(x) -> maps`` takes a (B, C, H, W) batch and returns
    (B, H, W) maps; it is called once on the inputs (skipped when ``maps`` = E(x) is given) and then on the
    perturbed images, k = max(1, batch_size // N) samples of all N images a call, image-major as captum's
    ``repeat_interleave`` (rows i k .. i k + k - 1 are image i: an explainer with per-image targets repeats each
    target k = B / N times). Defaults as captum: r = 0.02, S = 10 samples; noise from numpy's Generator(``seed``),
    sample s drawn for all N images before sample s + 1. Lower is better. ``curves`` (N, S) holds every sample's
    ratio; ``forwards`` counts the images explained.
    """
    if not callable(explain):
        raise XcamError(f"explain must be a callable x (B, C, H, W) -> maps (B, H, W), got {type(explain).__name__}")
    if isinstance(radius, bool) or not isinstance(radius, int | float) or not radius > 0:
        raise XcamError(f"radius must be a positive number, got {radius!r}")
    samples = positive_int("samples", samples)
    batch_size = positive_int("batch_size", batch_size)
    x = check_inputs(inputs)
    n = x.shape[0]
    forwards = 0
    if maps is None:
        maps, forwards = explain(x), n
    base = check_maps(maps, x, name="explain(x)" if forwards else "maps")
    rng = np.random.default_rng(seed)
    norm = np.linalg.norm(base.reshape(n, -1), axis=1)
    norm = np.where(norm == 0, 1.0, norm)
    ratios = np.empty((n, samples))
    per_call = max(1, batch_size // n)
    for first in range(0, samples, per_call):  # k samples of every image in one explain call
        k = min(per_call, samples - first)
        noise = rng.uniform(-radius, radius, size=(k, *x.shape)).astype(np.float32)  # (k, N, C, H, W)
        noisy = (x[:, None] + noise.transpose(1, 0, 2, 3, 4)).reshape(n * k, *x.shape[1:])
        moved = check_maps(explain(noisy), noisy, name="explain(x + d)").reshape(n, k, -1)
        ratios[:, first:first + k] = np.linalg.norm(moved - base.reshape(n, 1, -1), axis=2) / norm[:, None]
        forwards += n * k
    return MetricResult("max_sensitivity", ratios.max(axis=1), ratios, np.arange(1, samples + 1), forwards)
