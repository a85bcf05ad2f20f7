"""summary.json and report.html: one self-contained page laid out like the lab report's tables."""

import base64
import html
from pathlib import Path

import cv2
import numpy as np


def png_data_uri(rgb: np.ndarray, max_side: int = 320) -> str:
    """An RGB picture, shrunk to ``max_side``, as a base64 PNG data URI for a self-contained page."""
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}
th,td{border:1px solid #ccc;padding:6px;text-align:center;vertical-align:top}
th{background:#f3f3f3}
img{display:block;margin:auto;max-width:260px}
img.grid{width:360px;max-width:none}
.scroll{max-height:300px;overflow-y:auto}
.meta{color:#555;font-size:90%}
.err{color:#b00}
"""


def render_html(summary: dict, pictures: dict) -> str:
    """pictures[image key] = {"original": rgb, "features": rgb, (method, column): rgb overlay}."""
    esc = html.escape
    columns = [(m, col) for m in summary["methods"] for col in summary["columns"]]
    head = "".join(f"<th>{esc(summary['method_titles'][m])}<br>{esc(col)}</th>" for m, col in columns)
    rows = []
    for entry in summary["images"]:
        pics = pictures[entry["key"]]
        probs = "<br>".join(f"{esc(k)}: {v:.3f}" for k, v in entry["probabilities"].items())
        cells = [f"<td><img src='{png_data_uri(pics['original'])}'><div class='meta'>{esc(Path(entry['image']).name)}"
                 f"<br>predicted: <b>{esc(entry['predicted'])}</b><br>{probs}</div></td>",
                 f"<td><div class='scroll'><img class='grid' src='{png_data_uri(pics['features'], 4096)}'></div>"
                 f"<div class='meta'>{entry['channels']} channels</div></td>"]
        for m, col in columns:
            label = entry["maps"][m][col]["class"]
            p = entry["probabilities"].get(label)
            note = f"{esc(label)}: p = {p:.3f}" if p is not None else esc(label)
            cells.append(f"<td><img src='{png_data_uri(pics[(m, col)])}'><div class='meta'>{note}</div></td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    errors = "".join(f"<li class='err'>{esc(e)}</li>" for e in summary.get("errors", []))
    meta = (f"model: {esc(summary['model'])} ({esc(summary['framework'])}) &middot; layer: "
            f"<b>{esc(summary['layer'])}</b> &middot; input {summary['input_size'][0]}x{summary['input_size'][1]}"
            f" &middot; normalization: {esc(summary['normalize'])}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>xcam report</title>"
            f"<style>{_STYLE}</style></head><body><h1>xcam report</h1><p class='meta'>{meta}</p>"
            f"{'<ul>' + errors + '</ul>' if errors else ''}"
            f"<table><tr><th>image</th><th>feature maps of {esc(summary['layer'])}</th>{head}</tr>"
            f"{''.join(rows)}</table></body></html>\n")
