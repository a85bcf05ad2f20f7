"""Plots drawn with OpenCV (no plotting library): score curves (deletion / insertion / ROAD, one line per method)
and bar charts with error bars (one bar per method). Both return uint8 RGB pictures."""

import math

import cv2
import numpy as np

# Tableau 10, RGB: methods get these colours in order; baselines are drawn in greys
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (188, 189, 34), (23, 190, 207), (127, 127, 127)]
GREYS = [(90, 90, 90), (150, 150, 150), (190, 190, 190)]
FONT = cv2.FONT_HERSHEY_SIMPLEX
INK = (40, 40, 40)


def colours(names, baselines=()) -> dict:
    """A colour per name: methods take the palette in order, baselines greys."""
    out, i, j = {}, 0, 0
    for name in names:
        if name in baselines:
            out[name] = GREYS[j % len(GREYS)]
            j += 1
        else:
            out[name] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


def nice_ticks(lo: float, hi: float, count: int = 5) -> np.ndarray:
    """About ``count`` round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of ten)."""
    if not np.isfinite([lo, hi]).all():
        lo, hi = 0.0, 1.0
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return np.arange(math.floor(lo / step) * step, hi + step * 0.999, step)


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


def _text(img, text, org, scale=0.45, color=INK, anchor="left"):
    (w, h), _ = cv2.getTextSize(text, FONT, scale, 1)
    x, y = org
    if anchor == "right":
        x -= w
    elif anchor == "center":
        x -= w // 2
    cv2.putText(img, text, (int(x), int(y + h // 2)), FONT, scale, color, 1, cv2.LINE_AA)


def curve_plot(title: str, series: list, *, xlabel: str = "fraction of pixels", ylabel: str = "score",
               size=(640, 420)) -> np.ndarray:
    """Lines y(x) for each (label, x, y, colour) in ``series`` on shared axes, a legend at the right."""
    width, height = size
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 60, width - 170, 36, height - 50
    xs = np.concatenate([np.asarray(s[1], float) for s in series] + [np.array([np.nan])])
    ys = np.concatenate([np.asarray(s[2], float) for s in series] + [np.array([np.nan])])
    xs, ys = xs[np.isfinite(xs)], ys[np.isfinite(ys)]
    xt = nice_ticks(float(xs.min()), float(xs.max())) if xs.size else nice_ticks(0.0, 1.0)
    yt = nice_ticks(min(0.0, float(ys.min())), float(ys.max())) if ys.size else nice_ticks(0.0, 1.0)

    def px(x, y):
        u = left + (x - xt[0]) / (xt[-1] - xt[0]) * (right - left)
        v = bottom - (y - yt[0]) / (yt[-1] - yt[0]) * (bottom - top)
        return int(round(u)), int(round(v))

    for v in yt:
        p = px(xt[0], v)
        cv2.line(img, (left, p[1]), (right, p[1]), (230, 230, 230), 1)
        _text(img, _fmt(v), (left - 6, p[1]), 0.4, anchor="right")
    for u in xt:
        p = px(u, yt[0])
        _text(img, _fmt(u), (p[0], bottom + 12), 0.4, anchor="center")
    cv2.rectangle(img, (left, top), (right, bottom), INK, 1)
    for k, (label, x, y, colour) in enumerate(series):
        pts = np.array([px(a, b) for a, b in zip(x, y) if np.isfinite(b)], np.int32)
        if len(pts):
            cv2.polylines(img, [pts], False, colour, 2, cv2.LINE_AA)
        ly = top + 10 + 18 * k
        cv2.line(img, (right + 12, ly), (right + 36, ly), colour, 3)
        _text(img, str(label)[:18], (right + 42, ly), 0.42)
    _text(img, title, (width // 2, 16), 0.55, anchor="center")
    _text(img, xlabel, ((left + right) // 2, height - 14), 0.42, anchor="center")
    _text(img, ylabel, (8, top - 18), 0.42)
    return img


def bar_chart(title: str, labels: list, means, stds, colours_: list, *, note: str = "",
              size=(640, None)) -> np.ndarray:
    """Horizontal bars (one per label) of ``means`` with error bars of +-``stds``, values written beside them."""
    means = np.asarray(means, float)
    stds = np.nan_to_num(np.asarray(stds, float))
    width = size[0]
    row = 26
    top, left, right = 40, 130, width - 70
    height = size[1] or top + row * len(labels) + 40
    img = np.full((height, width, 3), 255, np.uint8)
    lo = min(0.0, float(np.nanmin(means - stds)) if np.isfinite(means).any() else 0.0)
    hi = max(0.0, float(np.nanmax(means + stds)) if np.isfinite(means).any() else 1.0)
    ticks = nice_ticks(lo, hi)

    def px(v):
        return int(round(left + (v - ticks[0]) / (ticks[-1] - ticks[0]) * (right - left)))

    bottom = top + row * len(labels)
    for t in ticks:
        cv2.line(img, (px(t), top), (px(t), bottom), (230, 230, 230), 1)
        _text(img, _fmt(t), (px(t), bottom + 12), 0.4, anchor="center")
    zero = px(0.0)
    for k, (label, m, s, colour) in enumerate(zip(labels, means, stds, colours_)):
        y0, y1 = top + row * k + 4, top + row * (k + 1) - 4
        yc = (y0 + y1) // 2
        _text(img, str(label)[:16], (left - 8, yc), 0.42, anchor="right")
        if not np.isfinite(m):
            _text(img, "n/a", (zero + 4, yc), 0.4)
            continue
        cv2.rectangle(img, (min(zero, px(m)), y0), (max(zero, px(m)), y1), colour, -1)
        if s > 0:
            a, b = px(m - s), px(m + s)
            cv2.line(img, (a, yc), (b, yc), INK, 1, cv2.LINE_AA)
            cv2.line(img, (a, yc - 5), (a, yc + 5), INK, 1)
            cv2.line(img, (b, yc - 5), (b, yc + 5), INK, 1)
        _text(img, _fmt(m), (max(px(m), px(m + s)) + 6, yc), 0.4)
    cv2.line(img, (zero, top), (zero, bottom), INK, 1)
    _text(img, title, (width // 2, 16), 0.55, anchor="center")
    if note:
        _text(img, note, (width // 2, height - 12), 0.4, (100, 100, 100), anchor="center")
    return img
