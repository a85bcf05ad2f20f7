"""Reading a report page back with the standard library's HTML parser (not with the code that wrote it): the
metrics table's cells, and every address the page names (it must open offline, from its own folder)."""

from html.parser import HTMLParser
from pathlib import Path


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells, self.refs, self.tags = {}, [], []
        self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        for key in ("src", "href"):
            if a.get(key) is not None:
                self.refs.append(a[key])
        if tag == "td" and "data-metric" in a:
            self._cell = (a["data-metric"], a["data-method"], a.get("data-mean"), a.get("data-std"), [])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[4].append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            metric, method, mean, std, text = self._cell
            self.cells[(metric, method)] = {"mean": None if mean is None else float(mean),
                                            "std": None if std is None else float(std), "text": "".join(text)}
            self._cell = None


def read(page: str) -> _Page:
    parsed = _Page()
    parsed.feed(page)
    parsed.close()
    return parsed


def metric_cells(page: str) -> dict:
    """{(metric, method): {"mean", "std" (floats from data-mean / data-std, None for n/a), "text" (as shown)}}."""
    return read(page).cells


def outside_refs(page: str, folder: Path) -> list[str]:
    """The addresses on the page that are neither inline (data:) nor a file inside ``folder`` (a script, a
    font, a picture or a link elsewhere would need the network or other files); also any <script> or
    <link> tag at all."""
    parsed = read(page)
    bad = [f"<{tag}>" for tag, _ in parsed.tags if tag in ("script", "link", "iframe", "object", "embed")]
    bad += [css for css in ("url(", "@import") if css in page]  # base64 has no '(' nor '@'
    root = folder.resolve()
    for ref in parsed.refs:
        if ref.startswith("data:"):
            continue
        target = (folder / ref).resolve()
        if "://" in ref or ref.startswith("//") or root not in target.parents or not target.is_file():
            bad.append(ref)
    return bad
