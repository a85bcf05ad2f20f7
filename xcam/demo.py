"""``xcam demo``: the lab (cat, dog, both; feature grid; Grad-CAM and LayerCAM for cat and for dog) on the
bundled ImageNet EfficientNet-Lite0 with a cat/dog head, on PyTorch, Keras, or both (then compared)."""

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .backend import load_backend
from .errors import XcamError
from .explain import Job, run
from .zoo import CAT_DOG_LABELS, DEMO_INPUT_SIZE, DEMO_LAYER, demo_images


def demo_model(framework: str):
    if framework == "torch":
        from xcam_torch.zoo import cat_dog_model
    else:
        from xcam_tf.zoo import cat_dog_model
    return cat_dog_model()


def run_demo(frameworks, out: Path, methods, overwrite=False, batch_size=8, log=None) -> int:
    if out.exists() and not overwrite:
        raise XcamError(f"output directory {str(out)!r} exists; pass --overwrite to replace it")
    backends = {fw: load_backend(fw) for fw in frameworks}
    both = len(frameworks) > 1
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)) if both else None
    try:
        code = 0
        for fw, backend in backends.items():
            job = Job(backend=backend, model=demo_model(fw), model_name="EfficientNet-Lite0 (ImageNet) + cat/dog "
                      "head", images=demo_images(), out=stage / fw if both else out, methods=list(methods),
                      classes=list(CAT_DOG_LABELS), labels=list(CAT_DOG_LABELS), layer=DEMO_LAYER[fw],
                      input_size=DEMO_INPUT_SIZE, normalize="imagenet", overwrite=overwrite,
                      batch_size=batch_size, log=log, shown_out=out / fw if both else None)
            code = max(code, run(job))
            summary = json.loads(((stage / fw if both else out) / "summary.json").read_text())
            if log is not None:
                for entry in summary["images"]:
                    probs = ", ".join(f"{k} {v:.3f}" for k, v in entry["probabilities"].items())
                    print(f"xcam: [{fw}] {Path(entry['image']).name}: {entry['predicted']} ({probs})", file=log)
        if both:
            diff = max_map_difference(stage / "torch", stage / "tf")
            (stage / "parity.json").write_text(json.dumps({"max_abs_difference_torch_vs_tf": diff}, indent=2))
            if log is not None:
                print(f"xcam: max |torch - tf| over all demo maps: {diff:.2e}", file=log)
            if out.exists():
                shutil.rmtree(out)
            stage.replace(out)
        return code
    except BaseException:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        raise


def max_map_difference(a: Path, b: Path) -> float:
    """The largest absolute difference between same-named .npy maps under two output directories."""
    worst = 0.0
    for path in sorted(a.rglob("*.npy")):
        other = b / path.relative_to(a)
        worst = max(worst, float(np.abs(np.load(path) - np.load(other)).max()))
    return worst
