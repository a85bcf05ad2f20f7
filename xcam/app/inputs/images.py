"""Reading images of any size and mode, and turning them into the array a model takes."""

from pathlib import Path

import cv2
import numpy as np

from xcam.errors import XcamError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
NORMALIZATIONS = ("imagenet", "none", "caffe", "MEAN,STD")


_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG": "PNG", b"GIF8": "GIF", b"BM": "BMP", b"II*\x00": "TIFF",
               b"MM\x00*": "TIFF", b"RIFF": "WebP"}


def load_image(path, name=None) -> np.ndarray:
    """Read any image OpenCV can decode (grayscale, RGB, RGBA, palette, CMYK, 16-bit) as uint8 RGB (H, W, 3),
    turned upright as its EXIF orientation says (as a browser shows it); alpha is dropped. ``name``: how
    errors call the file (default: ``path``)."""
    path = Path(path)
    shown = str(path) if name is None else str(name)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise XcamError(f"cannot read image {shown!r}: {exc.strerror or exc}") from None
    if not data.size:
        raise XcamError(f"cannot read image {shown!r}: the file is empty")
    # ANYDEPTH | ANYCOLOR keeps 16 bits and grey, and (unlike IMREAD_UNCHANGED) applies the EXIF orientation
    img = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if img is None:
        head = data[:4].tobytes()
        kind = next((fmt for sig, fmt in _SIGNATURES.items() if head.startswith(sig)), None)
        reason = f"a {kind} file OpenCV cannot decode (truncated or corrupt)" if kind else \
            "not an image file OpenCV can decode"
        raise XcamError(f"cannot read image {shown!r}: {reason}")
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = cv2.normalize(img.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2 or img.shape[2] == 1:
        return cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def parse_normalization(spec: str):
    """'imagenet', 'none', 'caffe' or 'MEAN,STD' (one value each, or three each: 'm1,m2,m3,s1,s2,s3')."""
    if spec in ("imagenet", "none", "caffe"):
        return spec
    try:
        values = [float(v) for v in spec.split(",")]
    except ValueError:
        values = []
    if len(values) == 2:
        return ((values[0],) * 3, (values[1],) * 3)
    if len(values) == 6 and all(s > 0 for s in values[3:]):
        return (tuple(values[:3]), tuple(values[3:]))
    raise XcamError(f"unknown normalization {spec!r}; valid: imagenet, none, caffe, or MEAN,STD "
                    "(e.g. 0.5,0.5 or 0.485,0.456,0.406,0.229,0.224,0.225)")


_TABLES: dict = {}


def _scaled(x: np.ndarray, norm) -> np.ndarray:
    """float32 pixels in 0..255 -> x / 255, then ImageNet's or the given (x - mean) / std (not "caffe")."""
    x = x / 255.0
    if norm == "imagenet":
        x = (x - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    elif norm != "none":
        x = (x - np.array(norm[0], np.float32)) / np.array(norm[1], np.float32)
    return x


def _table(norm) -> np.ndarray:
    """``_scaled`` of every uint8 value in each of the 3 channels, as OpenCV's 3-channel lookup table (1, 256, 3):
    entry v, channel c is channel c's value v (the same float32 operations, so the same values as computing
    them on an image)."""
    key = repr(norm)
    if key not in _TABLES:
        values = np.repeat(np.arange(256, dtype=np.float32)[:, None], 3, axis=1)
        _TABLES[key] = np.ascontiguousarray(_scaled(values, norm).astype(np.float32)[None])
    return _TABLES[key]


def preprocess(images, size: tuple[int, int], normalize="imagenet", channels: int = 3) -> np.ndarray:
    """uint8 RGB images -> float32 (N, H, W, channels), resized and normalized; channels-last.

    ``channels=1`` gives the grayscale image (ITU-R BT.601 luma) for single-channel models.
    """
    norm = parse_normalization(normalize) if isinstance(normalize, str) else normalize
    height, width = size
    batch = []
    for img in images:
        h, w = img.shape[:2]
        interp = cv2.INTER_AREA if h > height and w > width else cv2.INTER_LINEAR
        resized = cv2.resize(img, (width, height), interpolation=interp)
        if norm == "caffe":
            x = resized.astype(np.float32)[:, :, ::-1] - np.array(CAFFE_BGR_MEAN, dtype=np.float32)
        elif resized.dtype == np.uint8 and resized.ndim == 3 and resized.shape[2] == 3:
            x = cv2.LUT(resized, _table(norm))  # the same float32 values, looked up
        else:
            x = _scaled(resized.astype(np.float32), norm)
        if channels == 1:
            x = (x @ np.array([0.299, 0.587, 0.114], np.float32))[:, :, None]
        elif channels != 3:
            raise XcamError(f"the model takes {channels}-channel input; xcam feeds 1- or 3-channel images")
        batch.append(x)
    return np.ascontiguousarray(np.stack(batch).astype(np.float32, copy=False))
