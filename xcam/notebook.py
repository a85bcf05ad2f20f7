"""Maps in notebooks: ``show`` returns an object Jupyter displays inline (``_repr_html_`` and ``_repr_png_``), a
grid of overlays with titles; ``show_cam`` does the same for the result of an ``xcam_torch.cam`` /
``xcam_tf.cam`` call."""

import base64
import html

import cv2
import numpy as np

from .errors import XcamError
from .viz import overlay, to_uint8_rgb

TITLE_BAND = 18  # pixels of white above each tile of the PNG grid, where its title is written


def _named(maps, titles) -> list:
    """[(title, (H, W) map)] from one map, a stack (N, H, W), a list of maps, or a dict {title: map}."""
    if isinstance(maps, dict):
        pairs = [(str(k), v) for k, v in maps.items()]
    else:
        arr = maps if isinstance(maps, (list, tuple)) else np.asarray(maps)
        if isinstance(arr, np.ndarray) and arr.ndim == 2:
            arr = [arr]
        pairs = [(f"map {i}", m) for i, m in enumerate(arr)]
    if titles is not None:
        titles = [str(t) for t in titles]
        if len(titles) != len(pairs):
            raise XcamError(f"show got {len(pairs)} maps but {len(titles)} titles; give one title per map")
        pairs = [(t, m) for t, (_, m) in zip(titles, pairs)]
    if not pairs:
        raise XcamError("show needs at least one map")
    out = []
    for title, m in pairs:
        m = np.asarray(m, dtype=np.float32)
        if m.ndim == 3 and m.shape[0] == 1:
            m = m[0]
        if m.ndim != 2:
            raise XcamError(f"map {title!r} must be (H, W) (one image's map), got shape {m.shape}")
        out.append((title, m))
    return out


class Shown:
    """A grid of overlays with titles, shown inline by Jupyter: ``tiles`` is [(title, uint8 RGB overlay)]."""

    def __init__(self, tiles: list, per_row: int = 4):
        self.tiles = tiles
        self.per_row = max(1, int(per_row))

    def image(self) -> np.ndarray:
        """The whole grid as one uint8 RGB picture, each tile under a white band holding its title."""
        h = max(t.shape[0] for _, t in self.tiles)
        w = max(t.shape[1] for _, t in self.tiles)
        cols = min(self.per_row, len(self.tiles))
        rows = -(-len(self.tiles) // cols)
        cell_h, pad = h + TITLE_BAND, 4
        grid = np.full((rows * (cell_h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
        for k, (title, tile) in enumerate(self.tiles):
            r, c = divmod(k, cols)
            y, x = pad + r * (cell_h + pad), pad + c * (w + pad)
            grid[y + TITLE_BAND:y + TITLE_BAND + tile.shape[0], x:x + tile.shape[1]] = tile
            cv2.putText(grid, title[: max(1, w // 7)], (x, y + TITLE_BAND - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        (0, 0, 0), 1, cv2.LINE_AA)
        return grid

    def _repr_png_(self) -> bytes:
        """The grid as PNG bytes (what Jupyter shows when HTML is off)."""
        ok, buf = cv2.imencode(".png", cv2.cvtColor(self.image(), cv2.COLOR_RGB2BGR))
        return buf.tobytes()

    def _repr_html_(self) -> str:
        """Each overlay as an inline PNG with its title as an HTML caption, wrapped to the notebook's width."""
        figs = []
        for title, tile in self.tiles:
            ok, buf = cv2.imencode(".png", cv2.cvtColor(tile, cv2.COLOR_RGB2BGR))
            data = base64.b64encode(buf.tobytes()).decode("ascii")
            figs.append(f'<figure style="margin:2px;max-width:100%"><img src="data:image/png;base64,{data}" '
                        f'alt="{html.escape(title)}" style="max-width:100%">'
                        f'<figcaption style="font:12px sans-serif;text-align:center">{html.escape(title)}'
                        '</figcaption></figure>')
        return '<div style="display:flex;flex-wrap:wrap;gap:4px">' + "".join(figs) + "</div>"


def show(image, maps, titles=None, *, alpha: float = 0.5, colormap: str = "jet", per_row: int = 4,
         original: bool = True) -> Shown:
    """A grid of ``overlay(image, map, alpha, colormap)`` for every map (one (H, W) map, a stack (N, H, W), a
    list, or a dict {title: map}), with the image itself first when ``original``; displays inline in Jupyter."""
    rgb = to_uint8_rgb(image)
    tiles = [("image", rgb)] if original else []
    tiles += [(t, overlay(rgb, m, alpha, colormap)) for t, m in _named(maps, titles)]
    return Shown(tiles, per_row)


def _hwc(image) -> np.ndarray:
    """One model input (C, H, W) channels-first (C <= 4) or (H, W, C) as (H, W, C) scaled to [0, 1] for display."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3 and img.shape[0] in (1, 3, 4) and img.shape[2] not in (1, 3, 4):
        img = np.transpose(img, (1, 2, 0))
    if img.ndim == 3 and img.shape[2] > 4:
        raise XcamError(f"show_cam: cannot display an input of shape {img.shape}; pass (C, H, W) or (H, W, C)")
    lo, hi = float(img.min()), float(img.max())
    return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def show_cam(inputs, result, *, labels=None, alpha: float = 0.5, colormap: str = "jet", per_row: int = 4) -> Shown:
    """The result of a ``cam`` call over its batch ``inputs`` (N, C, H, W) or (N, H, W, C): maps (N, H, W) give
    one overlay per image; maps (N, K, H, W) (``classes=[...]``) one per image and class, titled by ``labels``
    (default: the class position); a dict {key: (N, H, W)} one per image and key."""
    batch = np.asarray(inputs)
    named = result if isinstance(result, dict) else {"map": result}
    if not isinstance(result, dict) and np.ndim(result) == 4:
        k = np.shape(result)[1]
        labels = [str(x) for x in labels] if labels is not None else [f"class {j}" for j in range(k)]
        if len(labels) != k:
            raise XcamError(f"show_cam got maps for {k} classes but {len(labels)} labels")
        named = {label: np.asarray(result)[:, j] for j, label in enumerate(labels)}
    tiles = []
    for i in range(len(batch)):
        rgb = to_uint8_rgb(_hwc(batch[i]))
        tiles.append((f"image {i}", rgb))
        for key, maps in named.items():
            maps = np.asarray(maps)
            if maps.ndim != 3 or len(maps) != len(batch):
                raise XcamError(f"show_cam: maps {key!r} must be (N, H, W) with N = {len(batch)} images, "
                                f"got shape {maps.shape}")
            tiles.append((f"{i}: {key}", overlay(rgb, maps[i], alpha, colormap)))
    return Shown(tiles, per_row)
