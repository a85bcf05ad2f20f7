"""Array operations shared by every method: ReLU, normalization, resizing, softmax."""

import cv2
import numpy as np

_CV2_MAX_CHANNELS = 128  # planes per OpenCV call: OpenCV 5 takes at most 128 channels (CV_CN_MAX; 4.x: 512)


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0) as float32."""
    return np.maximum(x, 0, dtype=np.float32)


def normalize_minmax(maps: np.ndarray) -> np.ndarray:
    """Per-sample min-max scaling of (N, ...) maps to [0, 1]: (x - min) / (max - min).

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


def resize_bilinear(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (N, h, w) maps to (N, H, W), half-pixel centres.

    The same sampling as ``cv2.INTER_LINEAR``, ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)`` and ``tf.image.resize(method="bilinear")`` when upsampling.
    """
    maps = np.asarray(maps, dtype=np.float32)
    n, h, w = maps.shape
    height, width = int(size[0]), int(size[1])
    if (h, w) == (height, width):
        return maps.copy()
    stacked = np.ascontiguousarray(maps.transpose(1, 2, 0))  # (h, w, N): cv2 resizes channels together
    chunks = []
    for start in range(0, n, _CV2_MAX_CHANNELS):
        part = cv2.resize(stacked[:, :, start:start + _CV2_MAX_CHANNELS], (width, height),
                          interpolation=cv2.INTER_LINEAR)
        chunks.append(part.reshape(height, width, -1))
    return np.concatenate(chunks, axis=2).transpose(2, 0, 1).copy()


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(z - max z) / sum exp(z - max z) along ``axis``, computed in float64, returned as float32."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)
