"""Shared plumbing of the metrics: input checks, the result type, batched forwards and per-plane OpenCV filters.

Layouts: ``inputs`` (N, C, H, W) float32 channels-first, ``maps`` (N, H, W), ``targets`` (N,) int class indices,
``scores`` (N, K) logits of the unperturbed inputs. ``predict(x) -> logits`` takes a (B, C, H, W) float32 batch.
"""

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from xcam.errors import XcamError
from xcam.ops import softmax

_CV2_MAX_CHANNELS = 128  # planes per OpenCV call: OpenCV 5 takes at most 128 channels (CV_CN_MAX; 4.x: 512)
SCORES = ("probability", "logit")


@dataclass(frozen=True)
class MetricResult:
    """One metric on N images.

    ``per_image`` (N,) the value per image; ``curves`` (N, T) the score curve per image where the metric has one
    (deletion/insertion: the score after each step; ROAD: the score per percentile; max-sensitivity: the ratio per
    sample), at abscissae ``x`` (T,); ``forwards``: how many images this call ran through the model (or through
    ``explain`` for max-sensitivity); the unperturbed forward counts only when it was not passed in as ``scores``.
    """

    name: str
    per_image: np.ndarray
    curves: np.ndarray | None = None
    x: np.ndarray | None = None
    forwards: int = 0

    @property
    def mean(self) -> float:
        """Mean over images (NaN-aware: an undefined image value is left out)."""
        return float(np.nanmean(self.per_image)) if np.isfinite(self.per_image).any() else float("nan")

    @property
    def std(self) -> float:
        """Standard deviation over images (population, NaN-aware)."""
        return float(np.nanstd(self.per_image)) if np.isfinite(self.per_image).any() else float("nan")


def positive_int(name: str, value) -> int:
    """``value`` as an int >= 1, else XcamError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise XcamError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def choice(name: str, value, valid) -> str:
    """``value`` if it is one of ``valid``, else XcamError listing them."""
    if value not in valid:
        raise XcamError(f"{name} must be one of {', '.join(repr(v) for v in valid)}, got {value!r}")
    return value


def check_inputs(inputs) -> np.ndarray:
    """(N, C, H, W) finite float32 with N >= 1."""
    x = np.asarray(inputs)
    if x.ndim != 4:
        raise XcamError(f"inputs must be a (N, C, H, W) channels-first batch, got shape {x.shape}")
    if x.shape[0] == 0 or 0 in x.shape[1:]:
        raise XcamError(f"inputs must hold at least one image with C, H, W >= 1, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise XcamError(f"inputs must be real numbers, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise XcamError("inputs contain NaN or infinite values; every value must be finite")
    return x


def check_maps(maps, inputs: np.ndarray | None = None, *, unit: bool = False, name: str = "maps") -> np.ndarray:
    """(N, H, W) finite maps; N and (H, W) equal to those of ``inputs``; in [0, 1] when ``unit``."""
    m = np.asarray(maps)
    if m.ndim != 3:
        raise XcamError(f"{name} must be (N, H, W), got shape {m.shape}")
    if m.shape[0] == 0 or 0 in m.shape[1:]:
        raise XcamError(f"{name} must hold at least one map with H, W >= 1, got shape {m.shape}")
    if m.dtype != bool and (not np.issubdtype(m.dtype, np.number) or np.issubdtype(m.dtype, np.complexfloating)):
        raise XcamError(f"{name} must be real numbers, got dtype {m.dtype}")
    m = m.astype(np.float64)
    if not np.isfinite(m).all():
        raise XcamError(f"{name} contain NaN or infinite values; every value must be finite")
    if inputs is not None:
        if m.shape[0] != inputs.shape[0]:
            raise XcamError(f"{name} hold {m.shape[0]} maps but inputs hold {inputs.shape[0]} images; one map per "
                            "image")
        if m.shape[1:] != inputs.shape[2:]:
            raise XcamError(f"{name} are {m.shape[1]}x{m.shape[2]} but the inputs are {inputs.shape[2]}x"
                            f"{inputs.shape[3]}; resize the maps to the input size (xcam.ops.resize_bilinear)")
    if unit and (m.min() < -1e-6 or m.max() > 1 + 1e-6):
        raise XcamError(f"{name} must lie in [0, 1], got values in [{m.min():.4g}, {m.max():.4g}]; "
                        "normalize them (xcam.ops.normalize_minmax)")
    return m


def check_pair(a, b, names=("a", "b")) -> tuple[np.ndarray, np.ndarray]:
    """Two (N, H, W) finite map batches of equal shape."""
    a = check_maps(a, name=names[0])
    b = check_maps(b, name=names[1])
    if a.shape != b.shape:
        raise XcamError(f"{names[0]} and {names[1]} must have the same shape, got {a.shape} and {b.shape}")
    return a, b


def check_targets(targets, n: int) -> np.ndarray:
    """(N,) integer class indices (the range is checked once the number of classes is known)."""
    t = np.asarray(targets)
    if t.ndim == 0:
        t = np.full(n, t)
    if t.ndim != 1 or t.shape[0] != n:
        raise XcamError(f"targets must hold one class index per image ({n}), got shape {t.shape}")
    if t.dtype == bool or not np.issubdtype(t.dtype, np.integer):
        raise XcamError(f"targets must be integer class indices, got dtype {t.dtype}")
    return t.astype(np.int64)


def check_targets_range(targets: np.ndarray, k: int) -> None:
    """XcamError unless every target is a class index in 0..k-1."""
    bad = targets[(targets < 0) | (targets >= k)]
    if bad.size:
        raise XcamError(f"target class {int(bad[0])} is out of range: the model has {k} classes, "
                        f"valid indices are 0..{k - 1}")


class Forwarder:
    """Runs ``predict`` on batches of at most ``batch_size`` images, checks the logits and counts the images."""

    def __init__(self, predict: Callable, batch_size: int, classes: int | None = None, targets=None):
        if not callable(predict):
            raise XcamError(f"predict must be a callable x (B, C, H, W) -> logits (B, K), got {type(predict).__name__}")
        self.predict = predict
        self.batch_size = positive_int("batch_size", batch_size)
        self.classes = classes
        self.targets = targets  # checked against the number of classes of the first logits
        self.forwards = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = np.asarray(self.predict(np.ascontiguousarray(x, dtype=np.float32)), dtype=np.float64)
        if out.ndim != 2 or out.shape[0] != x.shape[0]:
            raise XcamError(f"predict must return logits (B, K) for a batch of {x.shape[0]}, got shape {out.shape}")
        if self.classes is not None and out.shape[1] != self.classes:
            raise XcamError(f"predict returned {out.shape[1]} classes but the scores have {self.classes}")
        if not np.isfinite(out).all():
            raise XcamError("predict returned NaN or infinite logits")
        self.classes = out.shape[1]
        if self.targets is not None:
            check_targets_range(self.targets, self.classes)
            self.targets = None
        self.forwards += x.shape[0]
        return out

    def jobs(self, total: int, make: Callable[[int, int], np.ndarray]) -> np.ndarray:
        """Logits (total, K) of the perturbed inputs ``make(start, stop)``, built and run batch_size at a time."""
        chunks = [self(make(start, min(start + self.batch_size, total))) for start in range(0, total, self.batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.classes or 0))


def prepare(predict, inputs, maps, targets, scores, batch_size, *, unit=False, need_scores=True):
    """Checks the common arguments; returns (inputs, maps, targets, unperturbed logits, forwarder).

    The unperturbed logits are ``scores`` when given (checked against N and the targets) and otherwise computed
    here, once, in batches (the forwarder counts that forward then); with ``need_scores=False`` they are not
    computed (None) and the targets are checked against the first logits the forwarder sees.
    """
    x = check_inputs(inputs)
    m = check_maps(maps, x, unit=unit)
    t = check_targets(targets, x.shape[0])
    if scores is not None:
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim != 2 or s.shape[0] != x.shape[0] or s.shape[1] == 0:
            raise XcamError(f"scores must be the (N, K) logits of the {x.shape[0]} unperturbed inputs, got shape "
                            f"{s.shape}")
        if not np.isfinite(s).all():
            raise XcamError("scores contain NaN or infinite values")
        check_targets_range(t, s.shape[1])
        return x, m, t, s, Forwarder(predict, batch_size, s.shape[1])
    fwd = Forwarder(predict, batch_size, targets=t)
    s = fwd.jobs(x.shape[0], lambda a, b: x[a:b]) if need_scores else None
    return x, m, t, s, fwd


def target_score(logits: np.ndarray, targets: np.ndarray, score: str = "probability") -> np.ndarray:
    """The target class's softmax probability (``"probability"``) or raw logit (``"logit"``), float64 (M,)."""
    values = softmax(logits, axis=1).astype(np.float64) if score == "probability" else logits
    return np.take_along_axis(values, targets[:, None], axis=1)[:, 0].astype(np.float64)


def descending_order(maps: np.ndarray) -> np.ndarray:
    """Flat pixel indices (N, H*W) from the highest map value to the lowest; ties keep row-major order."""
    return np.argsort(-maps.reshape(maps.shape[0], -1), axis=1, kind="stable")


def ranks_from_order(order: np.ndarray) -> np.ndarray:
    """rank[i, p] = position of pixel p in ``order[i]`` (0 = first)."""
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(order.shape[1])[None, :], axis=1)
    return ranks


def per_plane(fn: Callable[[np.ndarray], np.ndarray], arr: np.ndarray) -> np.ndarray:
    """Applies a 2-D OpenCV function to every (H, W) plane of ``arr`` (any leading axes), 128 planes a call."""
    arr = np.asarray(arr)
    h, w = arr.shape[-2:]
    planes = np.ascontiguousarray(arr.reshape(-1, h, w).transpose(1, 2, 0))
    outs = []
    for start in range(0, planes.shape[2], _CV2_MAX_CHANNELS):
        part = np.ascontiguousarray(planes[:, :, start:start + _CV2_MAX_CHANNELS])
        out = fn(part)
        outs.append(out.reshape(out.shape[0], out.shape[1], -1))
    out = np.concatenate(outs, axis=2).transpose(2, 0, 1)
    return out.reshape(arr.shape[:-2] + out.shape[1:])


def gaussian_blur(arr: np.ndarray, ksize: int, sigma: float, border: int = cv2.BORDER_REFLECT_101) -> np.ndarray:
    """cv2.GaussianBlur (square kernel ``ksize``, ``sigma``) over the last two axes."""
    return per_plane(lambda p: cv2.GaussianBlur(p, (ksize, ksize), sigma, sigmaY=sigma, borderType=border), arr)


def trapezoid(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Trapezoid-rule area under y (N, T) over x (T,)."""
    return ((y[:, 1:] + y[:, :-1]) * 0.5 * np.diff(x)[None, :]).sum(axis=1)
