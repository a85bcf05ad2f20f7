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
