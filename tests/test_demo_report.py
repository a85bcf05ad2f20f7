"""``xcam demo``'s report.html holds its evaluation below the lab rows: the metrics table's numbers, read back
from the page with the standard library's HTML parser, are exactly the ones ``xcam evaluate`` writes to
metrics.json when run as the page says (same model, photos, layer, methods, metrics and step); the curves are
inline and the page names nothing outside its folder. The width on a 1,366 px screen is measured in a real
browser in test_view_browser.py."""

import json
import re
import shlex

import pytest
from reportpage import metric_cells, outside_refs

from xcam.app.jobs.evaluate import render_html, render_section


def _summary(means):
    """A summary as ``summarize`` makes it, with the given means of one metric (std: a third of each)."""
    rows = {m: {"mean": v, "std": None if v is None else v / 3, "per_image": [v], "forwards": 1,
                "forwards_per_image": 1.0} for m, v in means.items()}
    return {"model": "m", "framework": "torch", "layer": "l", "input_size": [8, 8], "methods": ["a", "b"],
            "baselines": ["random"], "images": [{"image": "x/cat.png", "label": "cat", "probability": 0.5}],
            "metrics": {"deletion": {"title": "Deletion AUC", "better": "lower", "methods": rows}}}


def test_the_metrics_table_holds_every_float_exactly():
    means = {"a": 0.1 + 0.2, "b": 1 / 3, "random": None}
    page = render_html(_summary(means), {}, "table")
    cells = metric_cells(page)
    assert cells[("deletion", "a")] == {"mean": 0.30000000000000004, "std": 0.10000000000000002,
                                        "text": "0.3 ± 0.1"}  # shown rounded, held exactly; lower is better: bold
    assert cells[("deletion", "b")] == {"mean": 1 / 3, "std": 1 / 9, "text": "0.3333 ± 0.11"}
    assert cells[("deletion", "random")] == {"mean": None, "std": None, "text": "n/a"}
    assert "<b>0.3 &plusmn; 0.1</b>" in page and "<b>0.3333" not in page
    # the same section, with its headings one level down, is what the demo's page embeds
    section = render_section(_summary(means), {}, "table", level=3)
    assert section in page.replace("<h2>", "<h3>").replace("</h2>", "</h3>")
    assert metric_cells(section) == cells


@pytest.mark.torch
def test_the_demo_report_holds_what_xcam_evaluate_writes(capsys, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from xcam.app.cli import main
    from xcam.app.jobs import demo
    from xcam.app.models.zoo import demo_images, demo_model

    # fewer forwards than the demo's own settings (step 0.2; deletion, insertion, confidence): the wiring under
    # test is the same for every metric and step (test_cli's demo test checks the page at the demo's settings)
    monkeypatch.setattr(demo, "DEMO_STEP", 0.5)
    monkeypatch.setattr(demo, "DEMO_METRICS", ("deletion",))
    out = tmp_path / "demo"
    assert demo.run_demo(["torch"], out, ["gradcam"], log=None) == 0
    page = (out / "report.html").read_text()
    # the lab rows first, then the evaluation section, whose note gives the command with the same numbers
    assert page.index("class='xcam-lab'") < page.index("id='xcam-evaluation'") < page.index("class='xcam-metrics'")
    command = re.search(r"These are the numbers <code>(xcam evaluate [^<]*)</code> writes", page).group(1)
    assert command.endswith("--methods gradcam --metrics deletion --step 0.5")
    assert outside_refs(page, out) == []

    model_file = tmp_path / "demo_model.pth"
    torch.save(demo_model("torch"), model_file)
    paths = {p.name: str(p) for p in demo_images()}
    argv = [str(model_file) if a == "MODEL" else paths.get(a, a) for a in shlex.split(command)[1:]]
    assert main(argv + ["--trust-model", "--out", str(tmp_path / "evaluate"), "--quiet"]) == 0
    capsys.readouterr()
    written = json.loads((tmp_path / "evaluate" / "metrics.json").read_text())

    cells = metric_cells(page)
    expected = {(metric, method): (v["mean"], v["std"]) for metric, block in written["metrics"].items()
                for method, v in block["methods"].items()}
    assert len(expected) == 4  # deletion of gradcam and the 3 baselines
    assert {k: (c["mean"], c["std"]) for k, c in cells.items()} == expected  # exactly, not to a tolerance
    mean, std = expected["deletion", "gradcam"]
    assert cells[("deletion", "gradcam")]["text"] == f"{mean:.4g} ± {std:.2g}"
    # and the demo's own evaluation/ files are those numbers too
    assert json.loads((out / "evaluation" / "metrics.json").read_text())["metrics"] == written["metrics"]
    # the deletion curve, then its bar chart, inline
    section = page[page.index("id='xcam-evaluation'"):]
    assert re.findall(r"<figcaption>([^<]*)</figcaption>", section) == ["plots/deletion_curves.png",
                                                                         "plots/deletion.png"]
    assert section.count("<img src='data:image/png;base64,") == 2
