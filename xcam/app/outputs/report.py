"""report.html: one self-contained page laid out like the lab report's tables (pictures embedded), or, for
large runs, an index with thumbnails and pages of at most 100 images that link to the files (nothing
embedded, so the report stays small whatever the number of images). Both are built from results.jsonl one
line at a time. Videos, volumes and signals get the same two modes: a self-contained page with a section per
input (each method's picture inline), or the paged index whose cells link to the pictures."""

import base64
import html
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from xcam.app.inputs.images import load_image
from xcam.app.outputs import files, results
from xcam.errors import XcamError
from xcam.viz import overlay

REPORT_MODES = ("auto", "single", "paged")
SINGLE_PAGE_LIMIT = 100  # "auto": one self-contained page up to this many images, else pages
PAGE_SIZE = 100
INDEX_THUMBS = 12  # thumbnails shown per page on the index


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
table{border-collapse:collapse;table-layout:fixed;width:100%}
th,td{border:1px solid #ccc;padding:4px;text-align:center;vertical-align:top;overflow-wrap:anywhere}
th{background:#f3f3f3}
img{display:block;margin:auto;max-width:100%}
img.grid{width:100%}
.scroll{max-height:300px;overflow-y:auto}
.meta{color:#555;font-size:90%}
.err{color:#b00}
img.thumb{display:inline-block;margin:2px;max-width:96px;max-height:96px}
td.left{text-align:left}
figure{display:inline-block;margin:6px;max-width:100%;vertical-align:top}
pre{overflow-x:auto;background:#f7f7f7;padding:8px;text-align:left}
"""


def _meta(summary: dict) -> str:
    esc = html.escape
    size = "x".join(map(str, summary["input_size"]))
    shown = f"frames {summary['frames']} of {size}" if summary.get("input_kind") == "media" else f"input {size}"
    return (f"model: {esc(summary['model'])} ({esc(summary['framework'])}) &middot; layer: "
            f"<b>{esc(summary['layer'])}</b> &middot; {shown}"
            f" &middot; normalization: {esc(str(summary['normalize']))}")


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}</body></html>\n")


def _head(summary: dict) -> str:
    esc = html.escape
    columns = [(m, col) for m in summary["methods"] for col in summary["columns"]]
    cells = "".join(f"<th>{esc(summary['method_titles'][m])}<br>{esc(col)}</th>" for m, col in columns)
    return f"<tr><th>image</th><th>feature maps of {esc(summary['layer'])}</th>{cells}</tr>"


def _probs(entry: dict) -> str:
    return "<br>".join(f"{html.escape(k)}: {v:.3f}" for k, v in entry["probabilities"].items())


def _note(entry: dict, record: dict) -> str:
    label = record["class"]
    p = entry["probabilities"].get(label)
    return f"{html.escape(label)}: p = {p:.3f}" if p is not None else html.escape(label)


def render_html(summary: dict, pictures: dict, extra: str = "", threads: int = 2) -> str:
    """The self-contained page; pictures[image key] = {"original": rgb, "features": rgb or None,
    (method, column): rgb overlay}; ``extra``: HTML below the rows (``xcam demo``'s evaluation). The rows are
    drawn in ``threads`` threads, in order (OpenCV's decode, resize and encode release the GIL); each holds one
    image's pictures at a time."""
    esc = html.escape
    columns = [(m, col) for m in summary["methods"] for col in summary["columns"]]
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="xcam-report") as pool:
        rows = list(pool.map(lambda entry: _row(entry, pictures[entry["key"]], columns), summary["images"]))
    errors = "".join(f"<li class='err'>{esc(e)}</li>" for e in summary.get("errors", []))
    return _page("xcam report", f"<h1>xcam report</h1><p class='meta'>{_meta(summary)}</p>"
                 f"{'<ul>' + errors + '</ul>' if errors else ''}<table class='xcam-lab'>{_head(summary)}{''.join(rows)}"
                 f"</table>{extra}")


def _row(entry: dict, pics: dict, columns: list) -> str:
    """One image's row: the original, the feature grid and the overlays, as data URIs."""
    esc = html.escape
    cells = [f"<td><img src='{png_data_uri(pics['original'])}'><div class='meta'>{esc(Path(entry['image']).name)}"
             f"<br>predicted: <b>{esc(entry['predicted'])}</b><br>{_probs(entry)}</div></td>"]
    if pics.get("features") is not None:
        grid = pics["features"] if isinstance(pics["features"], str) else png_data_uri(pics["features"], 4096)
        cells.append(f"<td><div class='scroll'><img class='grid' src='{grid}'>"
                     f"</div><div class='meta'>{entry['channels']} channels</div></td>")
    else:
        cells.append(f"<td><div class='meta'>{entry['channels']} channels</div></td>")
    for m, col in columns:
        note = _note(entry, entry["maps"][m][col])
        cells.append(f"<td><img src='{png_data_uri(pics[(m, col)])}'><div class='meta'>{note}</div></td>")
    return "<tr>" + "".join(cells) + "</tr>"


def _read_png(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise XcamError(f"cannot read {str(path)!r} for the report")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _pictures(out: Path, entry: dict, summary: dict, root: str, alpha: float, colormap: str) -> dict:
    """One image's pictures for the single page, read back from its files (an overlay not written is drawn
    from the map)."""
    original = load_image(os.path.join(root, entry["image"]), name=entry["image"])
    pics = {"original": original,
            "features": _png_uri(out / entry["features"], 4096) if entry.get("features") else None}
    for m in summary["methods"]:
        for col, record in entry["maps"][m].items():
            if record.get("overlay"):
                pics[(m, col)] = _read_png(out / record["overlay"])
            else:
                pics[(m, col)] = overlay(original, files.read_npy(out / record["map"]).astype(np.float32), alpha=alpha,
                                         colormap=colormap)
    return pics


def _png_uri(path: Path, max_side: int):
    """``png_data_uri`` of a PNG file: its own bytes when it needs no shrinking (what decoding and encoding it
    again with the same encoder gives), else the picture read and shrunk."""
    data = path.read_bytes()
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        if max(width, height) <= max_side:
            return "data:image/png;base64," + base64.b64encode(data).decode()
    return _read_png(path)


class _Lazy:
    """pictures[key], read from the files only when its row is rendered (one image's pictures at a time)."""

    def __init__(self, load):
        self.load = load

    def __getitem__(self, key):
        return self.load(key)


def write_report(out, summary: dict, mode: str, root: str = ".", alpha: float = 0.5, colormap: str = "jet",
                 extra: str = "") -> None:
    """report.html for the run in ``out`` from its results.jsonl: "single" (self-contained) or "paged";
    ``extra`` (HTML) goes below the rows of the page, or of the index."""
    out = Path(out)
    if mode == "single" and summary.get("input_kind") == "media":
        files.write_text(out / "report.html", _media_page(out, summary, extra))
    elif mode == "single":
        records = list(results.read(out))
        entries = [r for r in records if not r.get("error")]
        errors = [r["error"] for r in records if r.get("error")]
        by_key = {e["key"]: e for e in entries}
        pictures = _Lazy(lambda key: _pictures(out, by_key[key], summary, root, alpha, colormap))
        files.write_text(out / "report.html", render_html({**summary, "images": entries, "errors": errors},
                                                          pictures, extra))
    elif mode == "paged":
        _write_paged(out, summary, root, extra)
    else:
        raise XcamError(f"unknown report mode {mode!r}; valid: single, paged")


def _pages(out: Path):
    """Lists of at most PAGE_SIZE explained entries, streamed; the errors come last as their own list."""
    page = []
    for record in results.read(out):
        if record.get("error"):
            continue
        page.append(record)
        if len(page) == PAGE_SIZE:
            yield page
            page = []
    if page:
        yield page


def _page_name(number: int) -> str:
    return f"page-{number:06d}.html"


def _write_paged(out: Path, summary: dict, root: str, extra: str = "") -> None:
    esc = html.escape
    pages_dir = out / "pages"
    pages_dir.mkdir(exist_ok=True)
    count = sum(1 for _ in _pages(out))
    index_rows = []
    columns = [(m, col) for m in summary["methods"] for col in summary["columns"]]
    first = 0
    for number, page in enumerate(_pages(out), 1):
        nav = " &middot; ".join(
            ["<a href='../report.html'>index</a>"]
            + ([f"<a href='{_page_name(number - 1)}'>&larr; page {number - 1}</a>"] if number > 1 else [])
            + ([f"<a href='{_page_name(number + 1)}'>page {number + 1} &rarr;</a>"] if number < count else []))
        rows = []
        for entry in page:
            source = Path(os.path.relpath(os.path.join(root, entry["image"]), pages_dir)).as_posix()
            thumb = f"<img loading='lazy' src='../{esc(entry['thumbnail'])}'>" if entry.get("thumbnail") else ""
            cells = [f"<td id='{esc(entry['key'])}'><a href='{esc(source)}'>{thumb}</a><div class='meta'>"
                     f"{esc(Path(entry['image']).name)}<br>predicted: <b>{esc(entry['predicted'])}</b><br>"
                     f"{_probs(entry)}</div></td>"]
            if entry.get("features"):
                cells.append(f"<td><a href='../{esc(entry['features'])}'><img class='grid' loading='lazy' "
                             f"src='../{esc(entry['features'])}'></a></td>")
            else:
                cells.append(f"<td><div class='meta'>{entry['channels']} channels</div></td>")
            for m, col in columns:
                record = entry["maps"][m][col]
                shown = record.get("overlay") or record.get("picture")
                pic = f"<img loading='lazy' src='../{esc(shown)}'>" if shown else ""
                cells.append(f"<td>{pic}<div class='meta'>{_note(entry, record)}<br>"
                             f"<a href='../{esc(record['map'])}'>map (.npy)</a></div></td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        body = (f"<h1>xcam report, page {number} of {count}</h1><p>{nav}</p><p class='meta'>{_meta(summary)}</p>"
                f"<table>{_head(summary)}{''.join(rows)}</table><p>{nav}</p>")
        files.write_text(pages_dir / _page_name(number), _page(f"xcam report, page {number}", body))
        thumbs = "".join(f"<a href='pages/{_page_name(number)}#{esc(e['key'])}'><img class='thumb' loading='lazy' "
                         f"src='{esc(e['thumbnail'])}' title='{esc(Path(e['image']).name)}'></a>"
                         for e in page[:INDEX_THUMBS] if e.get("thumbnail"))
        index_rows.append(f"<tr><td><a href='pages/{_page_name(number)}'>page {number}</a><div class='meta'>"
                          f"images {first + 1}-{first + len(page)}</div></td><td class='left'>{thumbs}</td></tr>")
        first += len(page)
    errors = [r["error"] for r in results.read(out) if r.get("error")]
    listed = "".join(f"<li class='err'>{esc(e)}</li>" for e in errors[:1000])
    more = f"<p class='err'>... and {len(errors) - 1000} more in results.jsonl</p>" if len(errors) > 1000 else ""
    body = (f"<h1>xcam report</h1><p class='meta'>{_meta(summary)}</p><p>{first} images on {count} pages of at "
            f"most {PAGE_SIZE}; every line is in <a href='results.jsonl'>results.jsonl</a>.</p>"
            f"{'<ul>' + listed + '</ul>' + more if errors else ''}"
            f"<table><tr><th>page</th><th>images</th></tr>{''.join(index_rows)}</table>{extra}")
    files.write_text(out / "report.html", _page("xcam report", body))


def _media_page(out: Path, summary: dict, extra: str = "") -> str:
    """One self-contained page of a video / volume / signal run: a section per input with each method's picture
    inline (read one input at a time from results.jsonl), then the inputs that could not be read."""
    parts, errors = [], []
    for entry in results.read(out):
        if entry.get("error"):
            errors.append(f"<li>{html.escape(entry['error'])}</li>")
            continue
        pics = []
        for method, by_column in entry["maps"].items():
            for m in by_column.values():
                if not m.get("picture"):
                    continue
                pics.append(f"<figure><img src='{png_data_uri(_read_png(out / m['picture']), max_side=1200)}'>"
                            f"<figcaption>{html.escape(method)} ({html.escape(str(m['class']))})</figcaption></figure>")
        title = html.escape(f"{entry['image']} ({entry['kind']}, {'x'.join(map(str, entry['shape']))}, "
                            f"layer {entry['layer']}, predicted {entry['predicted']})")
        parts.append(f"<section><h2>{title}</h2>{''.join(pics)}</section>")
    if errors:
        parts.append(f"<section><h2>Not explained</h2><ul>{''.join(errors)}</ul></section>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>xcam report</title></head><body>"
            f"<h1>xcam: videos, volumes and signals</h1>{''.join(parts)}{extra}</body></html>\n")
