"""``xcam demo``: the lab (cat, dog, both; feature grid; Grad-CAM and LayerCAM for cat and for dog) on the
bundled ImageNet EfficientNet-Lite0 with a cat/dog head, on PyTorch, Keras, or both (then compared), and an
evaluation section: a few fast metrics of the same methods and the baselines on the three photos."""

import html
import json
from pathlib import Path

import numpy as np

from xcam.app.jobs.evaluate import EvalJob, draw_plots, evaluate_images, format_table, render_section, write_evaluation
from xcam.app.jobs.explain import Job, run
from xcam.app.jobs.metric_runs import Settings
from xcam.app.models.frameworks import load_framework
from xcam.app.models.zoo import CAT_DOG_LABELS, DEMO_INPUT_SIZE, DEMO_LAYER, demo_images, demo_model
from xcam.app.outputs import files

DEMO_METRICS = ("deletion", "insertion", "confidence")
DEMO_STEP = 0.2  # 5 deletion / insertion steps: fast, and enough to rank the maps on three photos


def run_demo(frameworks, out: Path, methods, overwrite=False, batch_size=8, log=None, evaluate=True) -> int:
    """The lab on the demo model for each framework (and, with ``evaluate``, ``evaluation/`` and the same table
    and plots on report.html below the lab rows: deletion, insertion, Average Drop / Increase in Confidence /
    Average Gain of each method and the baselines for each photo's top class); with two frameworks, also
    ``parity.json`` (max |torch - tf|)."""
    files.check_new_dir(out, overwrite)
    loaded = {fw: load_framework(fw) for fw in frameworks}
    if len(frameworks) == 1:
        return _run_one(loaded[frameworks[0]], out, methods, overwrite, batch_size, log, None, evaluate)
    with files.staged_dir(out, overwrite) as stage:
        code = max(_run_one(framework, stage / fw, methods, overwrite, batch_size, log, out / fw, evaluate)
                   for fw, framework in loaded.items())
        diff = max_map_difference(stage / "torch", stage / "tf")
        files.write_json(stage / "parity.json", {"max_abs_difference_torch_vs_tf": diff})
        if log is not None:
            print(f"xcam: max |torch - tf| over all demo maps: {diff:.2e}", file=log)
    return code


def _run_one(framework, out, methods, overwrite, batch_size, log, shown_out, evaluate) -> int:
    fw = framework.name
    model = demo_model(fw)
    name = "EfficientNet-Lite0 (ImageNet) + cat/dog head"
    ev = summary = None
    section = ""
    if evaluate:  # measured first (nothing written), so that the lab's report.html holds it below its rows
        ev = EvalJob(framework=framework, model=model, model_name=name, images=demo_images(), out=out / "evaluation",
                     methods=list(methods), metrics=list(DEMO_METRICS), layer=DEMO_LAYER[fw],
                     labels=list(CAT_DOG_LABELS), input_size=DEMO_INPUT_SIZE, settings=Settings(step=DEMO_STEP),
                     batch_size=batch_size, log=None, table=log is not None,
                     shown_out=(shown_out or out) / "evaluation")
        summary = evaluate_images(ev)
        section = evaluation_section(summary, list(methods), DEMO_LAYER[fw])
    job = Job(framework=framework, model=model, model_name=name, images=demo_images(), out=out,
              methods=list(methods), classes=list(CAT_DOG_LABELS), labels=list(CAT_DOG_LABELS), layer=DEMO_LAYER[fw],
              input_size=DEMO_INPUT_SIZE, normalize="imagenet", overwrite=overwrite, batch_size=batch_size, log=log,
              shown_out=shown_out, report_extra=section)
    code = run(job)
    if log is not None:
        for entry in json.loads((out / "summary.json").read_text())["images"]:
            probs = ", ".join(f"{k} {v:.3f}" for k, v in entry["probabilities"].items())
            print(f"xcam: [{fw}] {Path(entry['image']).name}: {entry['predicted']} ({probs})", file=log)
    if evaluate:
        if log is not None:
            print(f"xcam: [{fw}] evaluation (each photo's top class):", file=log)
        write_evaluation(ev, summary)
        code = max(code, 1 if summary["errors"] else 0)
    return code


def evaluation_section(summary: dict, methods: list, layer: str) -> str:
    """The demo report's evaluation section: what was measured and how (the command that gives the same
    numbers), then ``xcam evaluate``'s table, plots and targets (``render_section``)."""
    esc = html.escape
    n = len(summary["images"])
    steps = round(1 / DEMO_STEP)
    command = (f"xcam evaluate --model MODEL --images {' '.join(Path(e['image']).name for e in summary['images'])} "
               f"--layer {layer} --input-size {DEMO_INPUT_SIZE} --labels {','.join(CAT_DOG_LABELS)} --methods "
               f"{' '.join(methods)} --metrics {' '.join(DEMO_METRICS)} --step {DEMO_STEP}")
    titles = ", ".join(block["title"] for block in summary["metrics"].values())
    note = (f"How faithful each method's map of each photo's top class is, beside three baselines (a random map, a "
            f"centre Gaussian, a Sobel edge map): {esc(titles)}; mean &plusmn; std over the {n} photos, the best in "
            f"bold. Deletion and insertion take {steps} steps of {DEMO_STEP:g} of the pixels (few, so that the demo "
            f"stays fast; <code>xcam evaluate</code> takes 0.05 by default). These are the numbers "
            f"<code>{esc(command)}</code> writes; the files are in "
            f"<a href='evaluation/metrics.json'>evaluation/metrics.json</a> and "
            f"<a href='evaluation/metrics.csv'>evaluation/metrics.csv</a>.")
    plots = draw_plots(summary)
    plots = {k: plots[k] for k in sorted(plots, key=lambda k: not k.endswith("_curves.png"))}  # curves first
    return (f"<section id='xcam-evaluation'><h2>Evaluation</h2><p class='meta'>{note}</p>"
            f"{render_section(summary, plots, format_table(summary), level=3)}</section>")


def max_map_difference(a: Path, b: Path) -> float:
    """The largest absolute difference between same-named .npy maps under two output directories."""
    worst = 0.0
    for path in sorted(a.rglob("*.npy")):
        other = b / path.relative_to(a)
        worst = max(worst, float(np.abs(np.load(path) - np.load(other)).max()))
    return worst
