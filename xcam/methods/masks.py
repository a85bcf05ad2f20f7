r"""Mask-based black-box attributions at the input: RISE, Sobol and HSIC. The masks, quasi-Monte-Carlo designs,
perturbations, resampling and estimators are made here in NumPy; the adapter's probe only scores the batched
perturbed inputs (``Probe.score``), ``batch_size`` rows per call.

Each registered function returns the SIGNED attribution, float32, channels first, (N, C_in, *S) (or
(N, K, C_in, *S) for several classes), one value per position broadcast over the input channels (the masks are
shared over channels, as xplique's); ``cam()`` reduces it with the channel sum (C_in times the map, its sign
kept: a RISE map of negative logits is not flipped by an absolute value). Every rank works (signals (L,),
images (H, W), volumes (D, H, W)): the grids are one cell count per axis and the resampling is separable.

Resampling follows TensorFlow's ``tf.image.resize`` with half-pixel centres (what xplique calls): linear for the
RISE masks, nearest for the Sobol / HSIC masks, and Keys' cubic (a = -0.5; taps outside the input get weight 0
and the rest are renormalised) for the Sobol / HSIC cell indices. Difference: TensorFlow quantises the cubic
offset to 1/1024; here the weights are exact (the two agree where the offsets are multiples of 1/1024, e.g. an
input size a power-of-two multiple of the grid).
"""

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import XcamError
from ..ops import matmul_inline
from .occlusion import _score_batches, _spatial_tuple, masked_rows, rows_per_call
from .registry import MethodArgs, choice, register

BITS = 30  # bits of every Sobol point (TensorFlow's and scipy's default)
_DIRECTIONS = Path(__file__).with_name("sobol_directions.npz")  # Joe & Kuo (2008) new-joe-kuo-6.21201, 1024 dims
PERTURBATIONS = ("inpainting", "blurring", "amplitude")
SAMPLERS = ("sobol", "scrambled", "lhs", "random")


# --------------------------------------------------------------------------------------------------------------
# Quasi-Monte-Carlo points


@lru_cache(maxsize=8)
def sobol_directions(dim: int) -> np.ndarray:
    r"""(dim, BITS) uint64 direction numbers V_{j,k} = m_{j,k} 2^{BITS-k} of Sobol's sequence, from Joe & Kuo's
    primitive polynomials x^s + a_1 x^{s-1} + ... + a_{s-1} x + 1 and initial m_{j,1..s}, extended by
    m_k = 2 a_1 m_{k-1} \oplus ... \oplus 2^{s-1} a_{s-1} m_{k-s+1} \oplus 2^s m_{k-s} \oplus m_{k-s}
    (Bratley & Fox 1988; Joe & Kuo 2008). Dimension 0 is van der Corput's (every m = 1)."""
    with np.load(_DIRECTIONS) as data:
        poly, init = data["poly"], data["m"]
    if not 1 <= dim <= len(poly):
        raise XcamError(f"a Sobol design of {dim} dimensions is not available; give 1 to {len(poly)} "
                        "(a smaller grid_size)")
    out = np.zeros((dim, BITS), np.uint64)
    for j in range(dim):
        p = int(poly[j])
        s = p.bit_length() - 1
        if s == 0:
            m = [1] * BITS
        else:
            a = (p >> 1) & ((1 << (s - 1)) - 1)           # a_1 .. a_{s-1}, a_1 the most significant bit
            m = [int(c) for c in init[j, :s]]
            for k in range(s, BITS):
                new = m[k - s] ^ (m[k - s] << s)
                for lag in range(1, s):
                    if (a >> (s - 1 - lag)) & 1:
                        new ^= m[k - lag] << lag
                m.append(new)
        out[j] = [m[k] << (BITS - 1 - k) for k in range(BITS)]
    return out


def sobol_points(n: int, dim: int, *, skip: int = 1, rng: np.random.Generator | None = None) -> np.ndarray:
    r"""(n, dim) float64 points of the Sobol sequence in Gray-code order (Antonov & Saleev 1979),
    x_i = \bigoplus_b g_b(i) V_b / 2^{BITS} with g(i) = i \oplus (i >> 1), from point ``skip`` (1: the first point,
    all zeros, is left out, as ``tf.math.sobol_sample``). ``rng``: scrambled (Owen / Matousek's linear matrix
    scramble, a random lower-triangular binary matrix per dimension, and a random digital shift)."""
    v = sobol_directions(dim)
    shift = np.zeros(dim, np.uint64)
    if rng is not None:
        v, shift = _scramble(v, rng)
    idx = np.arange(skip, skip + n, dtype=np.uint64)
    gray = idx ^ (idx >> np.uint64(1))
    x = np.broadcast_to(shift, (n, dim)).copy()
    for b in range(BITS):
        on = ((gray >> np.uint64(b)) & np.uint64(1)).astype(bool)
        x[on] ^= v[:, b]
    return x.astype(np.float64) / float(1 << BITS)


def _scramble(v: np.ndarray, rng: np.random.Generator) -> tuple:
    """Linear matrix scramble L v (over GF(2), L lower triangular with a unit diagonal, per dimension) of the
    direction numbers, and a random digital shift."""
    dim = len(v)
    weights = (np.uint64(1) << np.arange(BITS - 1, -1, -1, dtype=np.uint64))       # bit i from the top
    bits = ((v[:, :, None] & weights[None, None]) > 0).astype(np.int64)             # (dim, k, i)
    lower = np.tril(rng.integers(0, 2, (dim, BITS, BITS)), -1) + np.eye(BITS, dtype=np.int64)
    mixed = np.einsum("dij,dkj->dki", lower, bits) % 2                              # (dim, k, i)
    scrambled = (mixed.astype(np.uint64) * weights[None, None]).sum(axis=2, dtype=np.uint64)
    shift = rng.integers(0, 1 << BITS, dim, dtype=np.uint64)
    return scrambled, shift


def design_points(sampler: str, n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """(n, dim) points in [0, 1): ``sobol`` (unscrambled, ``tf.math.sobol_sample``), ``scrambled`` (seeded
    scrambled Sobol), ``lhs`` (Latin hypercube: each axis's n strata once, a uniform point in each) or ``random``
    (plain Monte Carlo)."""
    if sampler == "sobol":
        return sobol_points(n, dim)
    if sampler == "scrambled":
        return sobol_points(n, dim, skip=0, rng=rng)
    if sampler == "lhs":
        strata = np.argsort(rng.random((dim, n)), axis=1).T                          # (n, dim) permutations
        return (strata + rng.random((n, dim))) / n
    return rng.random((n, dim))


def replicated_design(points: np.ndarray) -> np.ndarray:
    r"""Saltelli's design from (n, 2d) points: A (the first d columns), B (the last d), then C_1 .. C_d with C_i = A
    whose column i is B's; (n (d + 2), d) rows in the order A, B, C_1, ..., C_d."""
    d = points.shape[1] // 2
    a, b = points[:, :d], points[:, d:]
    c = np.repeat(a[None], d, axis=0)                                                # (d, n, d)
    c[np.arange(d), :, np.arange(d)] = b.T
    return np.concatenate([a, b, c.reshape(-1, d)])


# --------------------------------------------------------------------------------------------------------------
# Resampling (TensorFlow's half-pixel conventions), separable over the last axes


def _interp_matrix(n_in: int, n_out: int, kind: str) -> np.ndarray:
    """(n_out, n_in) weights of a 1-D resize with half-pixel centres: ``linear`` (edge-clamped), ``nearest``
    (floor((o + 1/2) n_in / n_out)) or ``cubic`` (Keys a = -0.5, outside taps dropped and renormalised)."""
    scale = n_in / n_out
    o = np.arange(n_out, dtype=np.float64)
    w = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    if kind == "nearest":
        w[rows, np.minimum(np.floor((o + 0.5) * scale).astype(int), n_in - 1)] = 1.0
        return w
    src = (o + 0.5) * scale - 0.5
    base = np.floor(src)
    t = src - base
    if kind == "linear":
        lo = np.clip(base, 0, n_in - 1).astype(int)
        hi = np.clip(base + 1, 0, n_in - 1).astype(int)
        np.add.at(w, (rows, lo), 1 - t)
        np.add.at(w, (rows, hi), t)
        return w
    for tap in (-1, 0, 1, 2):
        d = np.abs(t - tap)
        k = np.where(d <= 1, (1.5 * d - 2.5) * d * d + 1, np.where(d < 2, ((-0.5 * d + 2.5) * d - 4) * d + 2, 0))
        idx = (base + tap).astype(int)
        inside = (idx >= 0) & (idx < n_in)
        np.add.at(w, (rows[inside], idx[inside]), k[inside])
    return w / w.sum(axis=1, keepdims=True)


def resample(values: np.ndarray, size: tuple, kind: str) -> np.ndarray:
    """``values`` (..., *s) resized to (..., *size) over its last len(size) axes (``_interp_matrix`` per axis;
    nearest as an index gather)."""
    out = values
    for axis, n_out in zip(range(-len(size), 0), size):
        w = _interp_matrix(out.shape[axis], n_out, kind)
        if kind == "nearest":
            out = np.take(out, w.argmax(axis=1), axis=axis)
            continue
        w = w.astype(np.float32 if out.dtype == np.float32 else np.float64)
        out = np.moveaxis(np.tensordot(out, w, axes=([axis], [1])), -1, axis)
    return out


def box_blur(image: np.ndarray, width: int) -> np.ndarray:
    """The mean over a ``width`` box per position of each channel (C, *S), borders reflected without repeating the
    edge: OpenCV's ``cv2.blur`` (anchor at the centre, BORDER_REFLECT_101), for any rank."""
    out = image.astype(np.float64)
    for axis in range(1, image.ndim):
        n = out.shape[axis]
        before, after = width // 2, width - 1 - width // 2
        if max(before, after) >= n:
            raise XcamError(f"blurring width {width} needs inputs larger than {max(before, after)} along every axis")
        pad = [(0, 0)] * out.ndim
        pad[axis] = (before, after)
        padded = np.pad(out, pad, mode="reflect")
        c = np.cumsum(padded, axis=axis)
        c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
        out = (np.take(c, np.arange(width, width + n), axis=axis) - np.take(c, np.arange(n), axis=axis)) / width
    return out.astype(np.float32)


# --------------------------------------------------------------------------------------------------------------
# Scoring: every input's perturbed copies, mask batch by mask batch


def _masked_scores(x: MethodArgs, masks: np.ndarray, make, perturbs: list, batch: int) -> list:
    """Per input i, the scores (M, K') under each mask: ``make(masks_batch) -> (B, *S)`` full-size masks, made
    once per batch for all inputs, ``perturbs[i](full (B, *S)) -> (B, C_in, *S)`` input i's perturbed copies,
    scored ``batch`` rows a call."""
    parts = [[] for _ in perturbs]
    for s in range(0, len(masks), batch):
        full = make(masks[s:s + batch])
        for i, perturb in enumerate(perturbs):
            parts[i].append(_score_batches(x, perturb(full), i, batch))
    return [np.concatenate(p).reshape(len(masks), -1) for p in parts]


def _per_position(x: MethodArgs, maps: list, one_class: bool) -> np.ndarray:
    """(N, C_in, *S) or (N, K, C_in, *S) from per-input maps (K', *S), broadcast over the input channels."""
    c_in = x.model_inputs.shape[1]
    out = [np.broadcast_to(m[:, None], (m.shape[0], c_in) + m.shape[1:]) for m in maps]
    out = [m[0] if one_class else m for m in out]
    return np.ascontiguousarray(np.stack(out)).astype(np.float32)


def _one_class(x: MethodArgs) -> bool:
    """Whether the targets are one class per input ((N,), not (N, K))."""
    return np.asarray(x.targets).ndim < 2


# --------------------------------------------------------------------------------------------------------------
# RISE


def rise_masks(rng: np.random.Generator, n: int, grid: tuple, p: float) -> np.ndarray:
    """(n, *grid) low-resolution binary masks, each cell kept (1) with probability p."""
    return (rng.random((n,) + grid) < p).astype(np.float32)


def rise_shifts(rng: np.random.Generator, n: int, size: tuple, grid: tuple) -> np.ndarray:
    """(n, r) random shifts of each upsampled mask, uniform in [0, cell) per axis, cell = ceil(S / grid)."""
    cells = [int(np.ceil(s / g)) for s, g in zip(size, grid)]
    return np.stack([rng.integers(0, c, n) for c in cells], axis=1)


def rise_upsample(low: np.ndarray, shifts: np.ndarray, size: tuple) -> np.ndarray:
    """(B, *S) smooth masks: each (grid) mask bilinearly upsampled to (grid + 1) cell per axis, cell =
    ceil(S / grid), then cropped to S at its shift (Petsiuk et al.'s masks). The crop is taken from the
    interpolation weights (rows shift .. shift + S of each axis's matrix), so the large mask is never made."""
    grid = low.shape[1:]
    out = low.astype(np.float32)
    for axis, (g, n) in enumerate(zip(grid, size)):
        w = _interp_matrix(g, (g + 1) * int(np.ceil(n / g)), "linear").astype(np.float32)
        rows = w[shifts[:, axis, None] + np.arange(n)]                                 # (B, S_axis, g)
        moved = np.moveaxis(out, axis + 1, -1)                                         # (B, ..., g)
        flat = moved.reshape(len(out), -1, g)
        done = np.matmul(flat, rows.transpose(0, 2, 1)).reshape(moved.shape[:-1] + (n,))   # many small: unthreaded
        out = np.moveaxis(done, -1, axis + 1)
    return np.ascontiguousarray(out)


def rise_attribution(x: MethodArgs) -> np.ndarray:
    """Signed RISE attribution (N, C_in, *S) or (N, K, C_in, *S) (see ``rise``)."""
    inputs = x.model_inputs.astype(np.float32)
    size = tuple(inputs.shape[2:])
    grid = _spatial_tuple(x.options["grid"], len(size), "grid")
    n, p = int(x.options["n_masks"]), float(x.options["p"])
    if n < 1:
        raise XcamError(f"option n_masks={n} is not valid; give a positive int")
    if not 0 < p <= 1:
        raise XcamError(f"option p={p} is not valid; give a probability in (0, 1]")
    normalize = choice(x.options, "normalize", ("expectation", "coverage"))
    batch = rows_per_call(x, 32)
    baseline = np.float32(x.options["baseline"])
    rng = np.random.default_rng(x.options["seed"])
    low, shifts = rise_masks(rng, n, grid, p), rise_shifts(rng, n, size, grid)
    totals, cover = [0.0] * len(inputs), 0.0
    for s in range(0, n, batch):              # masks made once per batch for every input (4000 full masks are large)
        full = rise_upsample(low[s:s + batch], shifts[s:s + batch], size)
        flat = full.reshape(len(full), -1)
        for i, image in enumerate(inputs):
            y = _score_batches(x, masked_rows(image, full, baseline), i, batch).reshape(len(full), -1)
            totals[i] = totals[i] + matmul_inline(y.T, flat).reshape((-1,) + size)     # (K', *S), float32 sums
        cover = cover + full.sum(axis=0, dtype=np.float64)
    maps = [t / (n * p) if normalize == "expectation" else t / (cover + 1e-4) for t in totals]
    return _per_position(x, maps, _one_class(x))


@register("rise", title="RISE", kind="pixel", reduce="sum", relu=False, needs_gradients=False,
          needs_forwards=True, needs_capture=False,
          options={"n_masks": 4000, "grid": 7, "p": 0.5, "baseline": 0.0, "normalize": "expectation", "seed": 0,
                   "batch_size": None},
          paper="Petsiuk et al., RISE: Randomized Input Sampling for Explanation of Black-box Models, BMVC 2018, "
                "arXiv:1806.07421")
def rise(x: MethodArgs) -> np.ndarray:
    r"""S(\lambda) = 1 / (N p) \sum_i f(x \odot M_i + b (1 - M_i)) M_i(\lambda) over N = n_masks (4000) random
    masks: a grid (7 cells per axis) of cells kept with probability p (0.5), bilinearly upsampled to (grid + 1)
    cells of ceil(S / grid) and cropped at a random shift in [0, cell) per axis; b = baseline (0.0). Defaults as
    xplique's Rise (nb_samples, grid_size, preservation_probability, mask_value). Difference: xplique divides by
    the masks' coverage \sum_i M_i(\lambda) + 1e-4 instead of N p (``normalize`` coverage) and shifts a whole batch
    of masks by one crop. Masks from NumPy's default_rng(seed); batch_size rows per model call (default: the
    call's batch_size, else xplique's 32). cam() sums the channel copies (C_in S, the sign kept, no ReLU) before
    the min-max."""
    return rise_attribution(x)


# --------------------------------------------------------------------------------------------------------------
# Global sensitivity analysis (Sobol, HSIC): masks on a grid, a perturbation, an estimator per cell


def perturbation(x: MethodArgs, image: np.ndarray):
    """The GSA perturbation of one input (C, *S) as a function of full-size masks (B, *S), as xplique's:
    inpainting x M (a zero baseline), blurring x M + (1 - M) blur(x) (a box blur of width sigma, 10), amplitude
    x (M - 1/2) sigma (sigma 1; xplique's code, whose docstring says x + (M - 1/2) sigma)."""
    mode = choice(x.options, "perturbation", PERTURBATIONS)
    sigma = x.options.get("sigma")
    if mode == "inpainting":
        return lambda m: masked_rows(image, m)
    if mode == "blurring":
        blurred = box_blur(image, int(10 if sigma is None else sigma))
        return lambda m: masked_rows(image, m, blurred)
    amp = np.float32(1.0 if sigma is None else sigma)
    return lambda m: masked_rows(image, (m - np.float32(0.5)) * amp)


def _gsa_scores(x: MethodArgs, masks: np.ndarray, default_batch: int) -> list:
    """Per input, the scores (M, K') of the masks (M, *grid) upsampled (nearest) and applied by the perturbation."""
    inputs = x.model_inputs.astype(np.float32)
    size = tuple(inputs.shape[2:])
    batch = rows_per_call(x, default_batch)
    return _masked_scores(x, masks, lambda m: resample(m, size, "nearest"),
                          [perturbation(x, image) for image in inputs], batch)


def _gsa_grid(x: MethodArgs) -> tuple:
    return _spatial_tuple(x.options["grid_size"], x.input_rank, "grid_size")


def _cells_to_input(x: MethodArgs, cells: list) -> np.ndarray:
    """Per-input cell indices (K', d) resized (cubic) to the input's size, broadcast over channels."""
    grid, size = _gsa_grid(x), tuple(x.model_inputs.shape[2:])
    maps = [resample(c.reshape((len(c),) + grid), size, "cubic") for c in cells]
    return _per_position(x, maps, _one_class(x))


def jansen_total(y: np.ndarray, n: int, d: int) -> np.ndarray:
    r"""Jansen's total-order indices (K', d) from scores (n (d + 2), K') of the design A, B, C_1..C_d:
    ST_i = \sum_j (f(A_j) - f(C_{i,j}))^2 / (2 n Var(f(A))), Var with n - 1 (floored at 1e-12), as xplique's."""
    y = y.astype(np.float64)
    a, c = y[:n], y[2 * n:].reshape(d, n, -1)
    var = np.maximum(a.var(axis=0, ddof=1) if n > 1 else np.zeros(a.shape[1]), 1e-12)   # (K',)
    return (((a[None] - c) ** 2).sum(axis=1) / (2 * n * var)).T


def sobol_attribution(x: MethodArgs) -> np.ndarray:
    """Signed (non-negative) Sobol total-index attribution (N, C_in, *S) or (N, K, C_in, *S) (see ``sobol``)."""
    grid = _gsa_grid(x)
    n = int(x.options["nb_design"])
    if n < 1 or n & (n - 1):
        raise XcamError(f"option nb_design={n} is not valid; give a power of two (Sobol points come in 2^k blocks)")
    d = int(np.prod(grid))
    sampler = choice(x.options, "sampler", SAMPLERS)
    design = replicated_design(design_points(sampler, n, 2 * d, np.random.default_rng(x.options["seed"])))
    masks = design.astype(np.float32).reshape((-1,) + grid)
    return _cells_to_input(x, [jansen_total(y, n, d) for y in _gsa_scores(x, masks, 256)])


@register("sobol", title="Sobol attribution", kind="pixel", reduce="sum", relu=False, needs_gradients=False,
          needs_forwards=True, needs_capture=False,
          options={"grid_size": 8, "nb_design": 32, "sampler": "sobol",
                   "perturbation": "inpainting", "sigma": None, "seed": 0, "batch_size": None},
          paper="Fel et al., Look at the Variance! Efficient Black-box Explanations with Sobol-based Sensitivity "
                "Analysis, NeurIPS 2021, arXiv:2111.04138")
def sobol(x: MethodArgs) -> np.ndarray:
    r"""ST_i = \sum_j (f(\tau(x, A_j)) - f(\tau(x, C_{i,j})))^2 / (2 n Var f(\tau(x, A))) (Jansen's estimator of
    the total Sobol index of cell i), from nb_design (32, a power of two) quasi-Monte-Carlo points in
    [0, 1]^{2d} (d = grid_size^r cells, grid_size 8): A and B their halves, C_i = A with column i from B, so
    n (d + 2) forwards per input. Masks: the cell values upsampled nearest; \tau the perturbation: inpainting
    x M (default), blurring x M + (1 - M) blur_sigma(x), amplitude x (M - 1/2) sigma. The indices (one per cell)
    are resized bicubically to the input. Defaults as xplique's SobolAttributionMethod; sampler sobol (its
    TFSobolSequenceRS: unscrambled, from point 1), scrambled (seeded Owen scramble), lhs or random;
    batch_size (default: the call's, else xplique's 256). cam() sums the channel copies (C_in ST) before the
    min-max."""
    return sobol_attribution(x)


def _hsic_input_kernel(name: str, x: np.ndarray) -> np.ndarray:
    """(d, n, n) input kernel between the designs' values x (d, n): binary 1/2 - (x - x')^2 (xplique's Dirac
    kernel for {0, 1} masks), rbf exp(-(x - x')^2 / (2 0.5^2)), sobolev B2(|x - x'|) / 2 + (x - 1/2)(x' - 1/2)."""
    diff = x[:, :, None] - x[:, None, :]
    if name == "binary":
        return 0.5 - diff ** 2
    if name == "rbf":
        return np.exp(-diff ** 2 / (2 * 0.5 ** 2))
    ad = np.abs(diff)
    return (ad ** 2 - ad + 1 / 6) / 2 + (np.abs(x)[:, :, None] - 0.5) * (np.abs(x)[:, None, :] - 0.5)


def hsic_scores(x_design: np.ndarray, y: np.ndarray, kernel: str = "binary") -> np.ndarray:
    r"""HSIC_i = tr(H K_i H H L H) / n per design dimension (K', d): K_i = 1 + k(x_i, x_i') the input kernel
    (``_hsic_input_kernel``), L = exp(-(y - y')^2 / (2 w^2)) with w the median of the scores (xplique's width),
    H = I - 11^T / n. x_design (n, d), y (n, K'). The binary kernel's 3/2 - x^2 - x'^2 + 2 x x' loses every term
    but 2 x x' to the centring, so there HSIC_i = 2 x_i^T (H L H) x_i / n exactly (one matrix product)."""
    n = len(x_design)
    xs = x_design.T.astype(np.float64)                                                # (d, n)
    h = np.eye(n) - 1.0 / n
    out = []
    for yk in y.astype(np.float64).T:
        w2 = max(np.median(yk) ** 2, 1e-12)
        lc = h @ np.exp(-(yk[:, None] - yk[None]) ** 2 / (2 * w2)) @ h
        if kernel == "binary":
            scores = 2 * np.einsum("dj,dj->d", xs @ lc, xs)
        else:
            chunk = max(1, 2 ** 22 // (n * n))                                         # ~32 MB of kernel at a time
            scores = np.concatenate([(1 + _hsic_input_kernel(kernel, xs[s:s + chunk])).reshape(-1, n * n)
                                     @ lc.reshape(-1) for s in range(0, len(xs), chunk)])
        out.append(scores / n)
    return np.stack(out)


def hsic_attribution(x: MethodArgs) -> np.ndarray:
    """Signed (non-negative for the binary kernel) HSIC attribution (N, C_in, *S) or (N, K, C_in, *S)."""
    grid = _gsa_grid(x)
    n = int(x.options["nb_design"])
    if n < 2:
        raise XcamError(f"option nb_design={n} is not valid; give an int of at least 2")
    d = int(np.prod(grid))
    sampler = choice(x.options, "sampler", SAMPLERS)
    kernel = choice(x.options, "estimator", ("binary", "rbf", "sobolev"))
    points = design_points(sampler, n, d, np.random.default_rng(x.options["seed"]))
    design = np.round(points) if kernel == "binary" else points      # binary masks: round (half to even, as tf)
    masks = design.astype(np.float32).reshape((-1,) + grid)
    return _cells_to_input(x, [hsic_scores(design, y, kernel) for y in _gsa_scores(x, masks, 256)])


@register("hsic", title="HSIC attribution", kind="pixel", reduce="sum", relu=False, needs_gradients=False,
          needs_forwards=True, needs_capture=False,
          options={"grid_size": 8, "nb_design": 500, "sampler": "lhs", "estimator": "binary",
                   "perturbation": "inpainting", "sigma": None, "seed": 0, "batch_size": None},
          paper="Novello et al., Making Sense of Dependence: Efficient Black-box Explanations Using Dependence "
                "Measure, NeurIPS 2022, arXiv:2206.06219")
def hsic(x: MethodArgs) -> np.ndarray:
    r"""HSIC_i = tr(H K_i H L) / n (H = I - 11^T / n): the Hilbert-Schmidt independence of cell i's mask value and
    the score over nb_design (500) masks (nb_design forwards per input), K_i[j, l] = 1 + k(m_{ij}, m_{il}) with the
    binary kernel 1/2 - (m - m')^2 on {0, 1} masks (estimator binary, xplique's default; rbf: width 0.5 on [0, 1]
    masks; sobolev), L[j, l] = exp(-(f_j - f_l)^2 / (2 w^2)), w the median score (xplique's RBF output kernel).
    Masks: grid_size (8) cells per axis, from a Latin hypercube (sampler lhs, the paper's; xplique's default is
    sobol, unscrambled tf.math.sobol_sample; also scrambled, random) rounded to {0, 1} for the binary kernel,
    upsampled nearest, applied by the perturbation (inpainting, blurring, amplitude, as sobol); the indices are
    resized bicubically to the input. batch_size (default: the call's, else xplique's 256). cam() sums the
    channel copies (C_in HSIC) before the min-max."""
    return hsic_attribution(x)
