"""Array operations shared by every method: ReLU, normalization, resizing (any spatial rank), softmax.

Maps and activations have a spatial rank r of 1 (signals, (L,)), 2 (images, (h, w)) or 3 (volumes and clips,
(d, h, w)); ``resize`` handles all three with half-pixel centres, and ``check_size`` is the one place where a
requested size is validated against the rank.
"""

import cv2
import numpy as np

from .errors import XcamError

RANK_NAMES = {1: "1-D (L)", 2: "2-D (h, w)", 3: "3-D (d, h, w)"}


ALIGNMENT = 64  # bytes: what TensorFlow asks of host memory it takes without a copy (Eigen's AVX-512 alignment)


def aligned_empty(shape, dtype=np.float32) -> np.ndarray:
    """An uninitialized C-contiguous array whose data starts on a ``ALIGNMENT``-byte boundary (NumPy's own
    start 16 bytes past one), so an adapter can hand it to its framework without copying it."""
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(n) for n in shape)
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(size + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + size].view(dtype).reshape(shape)


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0) as float32."""
    return np.maximum(x, 0, dtype=np.float32)


def normalize_minmax(maps: np.ndarray) -> np.ndarray:
    """Per-sample min-max scaling of (N, ...) maps to [0, 1]: (x - min) / (max - min), min and max over the
    whole signal, image, volume or clip of each sample.

    A constant map (max == min, the all-zero map included) becomes all zeros, never NaN; finite maps whose
    range overflows float32 are scaled in float64.
    """
    maps = np.asarray(maps, dtype=np.float32)
    flat = maps.reshape(maps.shape[0], -1)
    lo = flat.min(axis=1, keepdims=True)
    with np.errstate(over="ignore"):
        span = flat.max(axis=1, keepdims=True) - lo
    if flat.size and not np.isfinite(span).all() and np.isfinite(flat).all():  # max - min overflows float32
        flat, lo = flat.astype(np.float64), lo.astype(np.float64)
        span = flat.max(axis=1, keepdims=True) - lo
    safe = np.where(span > 0, span, 1.0).astype(span.dtype)
    out = np.where(span > 0, (flat - lo) / safe, 0.0).astype(np.float32)
    return out.reshape(maps.shape)


SHORT_AXIS = 64   # last axes up to this length are reduced down a transposed copy (``min_max_last``)


def min_max_last(values: np.ndarray) -> tuple:
    """The min and max of ``values`` (..., P) along the last axis, kept as (..., 1). NumPy's reduction along the
    last axis costs about 80 ns a row on this CPU whatever P is (10,240 rows of 16: 0.85 ms for the min alone);
    a short axis (P <= SHORT_AXIS) is reduced down the columns of one transposed copy instead (0.05 ms)."""
    flat = values.reshape(-1, values.shape[-1])
    if 1 < flat.shape[1] <= SHORT_AXIS and len(flat) > flat.shape[1]:
        columns = np.ascontiguousarray(flat.T)
        lo, hi = columns.min(axis=0), columns.max(axis=0)
    else:
        lo, hi = flat.min(axis=1), flat.max(axis=1)
    shape = values.shape[:-1] + (1,)
    return lo.reshape(shape), hi.reshape(shape)


def check_size(size, rank: int, what: str = "size") -> tuple:
    """``size`` as a tuple of ``rank`` positive ints, else a one-line error naming the rank."""
    try:
        values = tuple(int(s) for s in size)
        exact = all(float(s) == int(s) for s in size)
    except (TypeError, ValueError):
        raise XcamError(f"{what} must be a tuple of {rank} positive ints for {RANK_NAMES.get(rank, rank)} maps, "
                        f"got {size!r}") from None
    if len(values) != rank:
        raise XcamError(f"{what}={tuple(size)} has {len(values)} number{'s' if len(values) != 1 else ''} but the "
                        f"maps are {RANK_NAMES.get(rank, f'{rank}-D')}: give {rank}")
    if not exact or min(values) < 1:
        raise XcamError(f"{what}={tuple(size)} is not valid: every size must be a positive int")
    return values


def _linear_axis(maps: np.ndarray, axis: int, out: int) -> np.ndarray:
    """Linear interpolation along one axis, half-pixel centres: source x = (i + 0.5) * n / out - 0.5, clamped
    to [0, n - 1] (as cv2.INTER_LINEAR and torch's ``align_corners=False``)."""
    n = maps.shape[axis]
    if n == out:
        return maps
    src = np.clip((np.arange(out, dtype=np.float64) + 0.5) * (n / out) - 0.5, 0, n - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = (src - lo).astype(np.float32)
    shape = [1] * maps.ndim
    shape[axis] = out
    frac = frac.reshape(shape)
    return np.take(maps, lo, axis=axis) * (1 - frac) + np.take(maps, hi, axis=axis) * frac


def _resize_planes(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """OpenCV bilinear resize of (N, h, w) to (N, height, width), plane by plane, each written into place. (One
    OpenCV call on the planes as channels of one image needs two large arrays and two transposes around it:
    8 maps to 224 x 224 took 0.9 ms between model calls against 0.08 ms; its float sums are also a little
    further from the exact interpolation, 1e-7 against 1e-7 / 2.)"""
    planes = np.ascontiguousarray(maps, dtype=np.float32)
    out = np.empty((len(planes), height, width), np.float32)
    for plane, dst in zip(planes, out):
        cv2.resize(plane, (width, height), dst=dst, interpolation=cv2.INTER_LINEAR)
    return out


def resize(maps: np.ndarray, size) -> np.ndarray:
    """Linear (1-D), bilinear (2-D) or trilinear (3-D) resize of (N, *s) maps to (N, *size), half-pixel
    centres; the rank is ``len(size)``.

    The same sampling as ``torch.nn.functional.interpolate(mode="linear"|"bilinear"|"trilinear",
    align_corners=False)``: OpenCV's INTER_LINEAR for 1-D (a one-row image) and 2-D, and for 3-D the 2-D resize
    of every (h, w) plane followed by linear interpolation along d (trilinear interpolation is separable).
    """
    maps = np.asarray(maps, dtype=np.float32)
    rank = len(size)
    size = check_size(size, rank)
    if maps.ndim != rank + 1:
        raise XcamError(f"resize to {RANK_NAMES.get(rank, rank)} size {size} needs maps (N, *{rank} sizes), "
                        f"got shape {maps.shape}")
    if maps.shape[1:] == size:
        return maps.copy()
    if rank == 1:
        return _resize_planes(maps[:, None, :], 1, size[0])[:, 0]
    if rank == 2:
        return _resize_planes(maps, *size)
    if rank == 3:
        n, d, h, w = maps.shape
        planes = _resize_planes(maps.reshape(n * d, h, w), size[1], size[2]).reshape(n, d, *size[1:])
        return np.ascontiguousarray(_linear_axis(planes, 1, size[0]), dtype=np.float32)
    raise XcamError(f"maps of spatial rank {rank} are not supported: 1-D, 2-D and 3-D maps are")


def resize_bilinear(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (N, h, w) maps to (N, H, W), half-pixel centres (``resize`` for 2-D).

    The same sampling as ``cv2.INTER_LINEAR``, ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)`` and ``tf.image.resize(method="bilinear")`` when upsampling.
    """
    return resize(maps, tuple(size))


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(z - max z) / sum exp(z - max z) along ``axis``, computed in float64, returned as float32."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


_ONE_THREAD = 65536 * 4   # OpenBLAS makes a gemm of m n k below this in the calling thread (SMP_THRESHOLD_MIN x
                          # GEMM_MULTITHREAD_THRESHOLD); NumPy hands a single row or column to gemv instead


def matmul_inline(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b (matrices, stacks of matrices, a vector on either side) in BLAS calls small enough that OpenBLAS
    makes each in the calling thread: matrix products of at least 2 x 2 (a single row or column gets a zero
    partner) with m n k under OpenBLAS's threshold, a's rows in chunks (one np.matmul over the stack of chunks)
    and b's columns in blocks when two rows are already over it. For the products made between model calls:
    OpenBLAS's threads keep spinning after a threaded call and take the cores the framework's next forward needs
    (LIME on a ResNet-18, 2 cores: 1.81 of its floor with 2 BLAS threads, 0.99 with one,
    benchmarks/attributions_perturbation.py; a 100 x 128 x 128 product made the next small forward 12x slower).
    The chunks change only the order of float sums (float32: about 1e-7 relative)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim == 1:
        out = matmul_inline(a[None], b)
        return out[..., 0, :] if b.ndim > 1 else out[0]
    if b.ndim == 1:
        return matmul_inline(a, b[:, None])[..., 0]
    if a.shape[-2] == 1:   # one row: a zero second row, so that NumPy calls gemm (gemv has a far lower threshold)
        return matmul_inline(np.concatenate([a, np.zeros_like(a)], axis=-2), b)[..., :1, :]
    if b.shape[-1] == 1:
        return matmul_inline(a, np.concatenate([b, np.zeros_like(b)], axis=-1))[..., :1]
    k, n = b.shape[-2:]
    if 4 * k >= _ONE_THREAD:   # a 2 x 2 block is already over: NumPy's own loop
        return np.einsum("...ij,...jk->...ik", a, b, optimize=False)
    if 2 * k * n >= _ONE_THREAD:   # two rows are over: b's columns in blocks
        width = (_ONE_THREAD - 1) // (2 * k)
        return np.concatenate([matmul_inline(a, b[..., j:j + width]) for j in range(0, n, width)], axis=-1)
    rows = (_ONE_THREAD - 1) // (k * n)
    m = a.shape[-2]
    if m <= rows:
        return np.matmul(a, b)
    pad = (-m) % rows
    if pad:
        a = np.concatenate([a, np.zeros((*a.shape[:-2], pad, k), a.dtype)], axis=-2)
    out = np.matmul(a.reshape(*a.shape[:-2], -1, rows, k), b[..., None, :, :])
    return out.reshape(*out.shape[:-3], m + pad, n)[..., :m, :]
