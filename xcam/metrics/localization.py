"""Localization metrics for given ground-truth masks or boxes: pointing game (with TorchRay's tolerance), the
energy-based pointing game, relevance mass accuracy and relevance rank accuracy."""

import numpy as np

from xcam.errors import XcamError
from xcam.metrics._common import MetricResult, check_maps, descending_order


def boxes_to_masks(boxes, shape) -> np.ndarray:
    """Boxes -> (N, H, W) bool masks. ``boxes``: (N, 4) one box per image, or a list (one entry per image) of lists
    of boxes; a box is (x0, y0, x1, y1) in pixels, x1 and y1 exclusive (columns x0..x1-1, rows y0..y1-1), clipped
    to the image; ``shape``: (N, H, W) or (H, W) with N taken from the boxes. Several boxes per image are united."""
    shape = tuple(int(v) for v in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise XcamError(f"shape must be (N, H, W) or (H, W) with positive sizes, got {shape}")
    h, w = shape[-2:]
    if isinstance(boxes, np.ndarray) and boxes.ndim == 2:
        boxes = [[b] for b in boxes]
    if not isinstance(boxes, list | tuple | np.ndarray) or len(boxes) == 0:
        raise XcamError("boxes must be an (N, 4) array or a list of lists of (x0, y0, x1, y1) boxes, one list per "
                        "image")
    n = len(boxes)
    if len(shape) == 3 and shape[0] != n:
        raise XcamError(f"boxes are given for {n} images but shape has {shape[0]}")
    masks = np.zeros((n, h, w), dtype=bool)
    for i, per_image in enumerate(boxes):
        arr = np.asarray(per_image, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != 4 or not np.isfinite(arr).all():
            raise XcamError(f"image {i}: each box must be 4 finite numbers (x0, y0, x1, y1), got {per_image!r}")
        for x0, y0, x1, y1 in arr:
            if x1 <= x0 or y1 <= y0:
                raise XcamError(f"image {i}: box {(x0, y0, x1, y1)} is empty; a box needs x1 > x0 and y1 > y0")
            c0, r0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
            c1, r1 = min(int(np.ceil(x1)), w), min(int(np.ceil(y1)), h)
            if c1 <= c0 or r1 <= r0:
                raise XcamError(f"image {i}: box {(x0, y0, x1, y1)} lies outside the {w}x{h} image")
            masks[i, r0:r1, c0:c1] = True
    return masks


def _masks(maps, masks, name="masks"):
    m = check_maps(maps)
    g = np.asarray(masks)
    if g.shape != m.shape:
        raise XcamError(f"{name} must be (N, H, W) like the maps {m.shape}, got {g.shape}; boxes go through "
                        "boxes_to_masks")
    if g.dtype != bool:
        if not np.issubdtype(g.dtype, np.number) or not np.isin(g, (0, 1)).all():
            raise XcamError(f"{name} must be boolean (or 0/1), got dtype {g.dtype}")
        g = g.astype(bool)
    empty = np.flatnonzero(~g.reshape(g.shape[0], -1).any(axis=1))
    if empty.size:
        raise XcamError(f"{name} of image {int(empty[0])} is empty; every image needs a non-empty ground truth")
    return m, g


def pointing_game(maps, masks, *, tolerance: float = 15) -> MetricResult:
    """Pointing game (Zhang et al., Top-down Neural Attention by Excitation Backprop, ECCV 2016), TorchRay's
    protocol: the point is the map's maximum (the first in row-major order, as ``torch.argmax``); a hit is a mask
    pixel q with ||q - point||_2 < tolerance (strictly, as TorchRay's ``PointingGame.evaluate``; ``tolerance=0``:
    the point itself must be in the mask). Per image 1 (hit) or 0 (miss); the mean is the accuracy over images
    (TorchRay averages per class: group ``per_image`` by class for that). Default tolerance 15 px.
    """
    m, g = _masks(maps, masks)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not tolerance >= 0:
        raise XcamError(f"tolerance must be a distance in pixels >= 0, got {tolerance!r}")
    n, h, w = m.shape
    flat = np.argmax(m.reshape(n, -1), axis=1)
    py, px = flat // w, flat % w
    d2 = (np.arange(h)[None, :, None] - py[:, None, None]) ** 2 + (np.arange(w)[None, None, :] - px[:, None, None]) ** 2
    near = d2 < tolerance ** 2 if tolerance > 0 else d2 == 0
    hits = (g & near).reshape(n, -1).any(axis=1).astype(np.float64)
    return MetricResult("pointing_game", hits)


def _mass(maps, masks, name):
    m, g = _masks(maps, masks)
    if m.min() < 0:
        raise XcamError(f"maps must be non-negative for {name} (an energy), got a minimum of {m.min():.4g}")
    total = m.reshape(m.shape[0], -1).sum(axis=1)
    inside = (m * g).reshape(m.shape[0], -1).sum(axis=1)
    return MetricResult(name, np.where(total > 0, inside / np.where(total > 0, total, 1), 0.0))


def energy_pointing_game(maps, masks) -> MetricResult:
    """Energy-based pointing game (Wang et al., Score-CAM, CVPR Workshops 2020): the share of the map's energy in
    the object's box or mask, sum_{p in mask} M_p / sum_p M_p (0 for an all-zero map); higher is better. Pass boxes
    through ``boxes_to_masks``. The same formula as ``relevance_mass`` on non-negative maps."""
    return _mass(maps, masks, "energy_pointing_game")


def relevance_mass(maps, masks) -> MetricResult:
    """Relevance mass accuracy (Arras et al., CLEVR-XAI, Information Fusion 2022): R_within / R_total =
    sum_{p in mask} M_p / sum_p M_p per image (0 for an all-zero map), maps non-negative; higher is better."""
    return _mass(maps, masks, "relevance_mass")


def relevance_rank(maps, masks) -> MetricResult:
    """Relevance rank accuracy (Arras et al., CLEVR-XAI, Information Fusion 2022): with K = |mask| pixels,
    |top-K pixels of the map ∩ mask| / K per image (ties ranked in row-major order, a stable sort); higher is
    better."""
    m, g = _masks(maps, masks)
    n = m.shape[0]
    flat_g = g.reshape(n, -1)
    k = flat_g.sum(axis=1)
    in_mask = np.take_along_axis(flat_g, descending_order(m), axis=1)
    top = np.arange(flat_g.shape[1])[None, :] < k[:, None]
    return MetricResult("relevance_rank", (in_mask & top).sum(axis=1) / k)
