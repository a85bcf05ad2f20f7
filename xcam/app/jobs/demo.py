"""``xcam demo``: the lab (cat, dog, both; feature grid; Grad-CAM and LayerCAM for cat and for dog) on the
bundled ImageNet EfficientNet-Lite0 with a cat/dog head, on PyTorch, Keras, or both (then compared), and an
evaluation section: a few fast metrics of the same methods and the baselines on the three photos."""

import json
from pathlib import Path

import numpy as np

from xcam.app.jobs.evaluate import EvalJob, run_evaluation
from xcam.app.jobs.explain import Job, run
from xcam.app.jobs.metric_runs import Settings
from xcam.app.models.frameworks import load_framework
from xcam.app.models.zoo import CAT_DOG_LABELS, DEMO_INPUT_SIZE, DEMO_LAYER, demo_images, demo_model
from xcam.app.outputs import files

DEMO_METRICS = ("deletion", "insertion", "confidence")
DEMO_STEP = 0.2  # 5 deletion / insertion steps: fast, and enough to rank the maps on three photos


def run_demo(frameworks, out: Path, methods, overwrite=False, batch_size=8, log=None, evaluate=True) -> int:
    """The lab on the demo model for each framework (and, with ``evaluate``, ``evaluation/``: deletion,
    insertion, Average Drop / Increase in Confidence / Average Gain of each method and the baselines for each
    photo's top class); with two frameworks, also ``parity.json`` (max |torch - tf|)."""
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
    job = Job(framework=framework, model=model, model_name="EfficientNet-Lite0 (ImageNet) + cat/dog head",
              images=demo_images(), out=out, methods=list(methods), classes=list(CAT_DOG_LABELS),
              labels=list(CAT_DOG_LABELS), layer=DEMO_LAYER[fw], input_size=DEMO_INPUT_SIZE, normalize="imagenet",
              overwrite=overwrite, batch_size=batch_size, log=log, shown_out=shown_out)
    code = run(job)
    if log is not None:
        for entry in json.loads((out / "summary.json").read_text())["images"]:
            probs = ", ".join(f"{k} {v:.3f}" for k, v in entry["probabilities"].items())
            print(f"xcam: [{fw}] {Path(entry['image']).name}: {entry['predicted']} ({probs})", file=log)
    if evaluate:
        if log is not None:
            print(f"xcam: [{fw}] evaluation (each photo's top class):", file=log)
        ev = EvalJob(framework=framework, model=model, model_name=job.model_name, images=demo_images(),
                     out=out / "evaluation", methods=list(methods), metrics=list(DEMO_METRICS), layer=DEMO_LAYER[fw],
                     labels=list(CAT_DOG_LABELS), input_size=DEMO_INPUT_SIZE, settings=Settings(step=DEMO_STEP),
                     batch_size=batch_size, log=None, table=log is not None,
                     shown_out=(shown_out or out) / "evaluation")
        code = max(code, run_evaluation(ev))
    return code


def max_map_difference(a: Path, b: Path) -> float:
    """The largest absolute difference between same-named .npy maps under two output directories."""
    worst = 0.0
    for path in sorted(a.rglob("*.npy")):
        other = b / path.relative_to(a)
        worst = max(worst, float(np.abs(np.load(path) - np.load(other)).max()))
    return worst
