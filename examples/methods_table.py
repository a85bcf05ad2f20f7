"""Rewrite README.md's methods table from the registry (``xcam.methods()``): one row per method, its title, kind,
what it needs, its paper and its gallery picture (``examples/method_gallery.py`` draws the pictures).

Run: python examples/methods_table.py   (rewrites the block between the methods-table markers)
"""

from pathlib import Path

import xcam

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- methods-table -->", "<!-- /methods-table -->"


def table() -> str:
    """The markdown table of every registered method."""
    rows = ["| name | method | kind | needs | paper | cat / dog on the demo composite |", "|---|---|---|---|---|---|"]
    for name in xcam.methods():
        m = xcam.get_method(name)
        picture = "(transformers only)" if m.needs_attention else f"![{m.title}](examples/gallery/{name}.jpg)"
        rows.append(f"| `{name}` | {m.title} | {m.kind} | {m.needs} | {m.paper} | {picture} |")
    return "\n".join(rows)


if __name__ == "__main__":
    text = README.read_text()
    head, rest = text.split(START)
    _, tail = rest.split(END)
    README.write_text(f"{head}{START}\n{table()}\n{END}{tail}")
    print(f"wrote {len(xcam.methods())} rows to {README}")
