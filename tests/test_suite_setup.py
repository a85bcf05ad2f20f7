"""The test suite's own setup: markers drive skips (a missing framework skips, never errors) and the GPU is
not hidden from the tests that need it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
ROOT = TESTS.parent


def _pytest_without(blocked: list[str], *args, env=None) -> subprocess.CompletedProcess:
    """Run pytest in a fresh process in which importing each of ``blocked`` fails (as if not installed)."""
    code = (f"import sys\nclass Block:\n def find_spec(self, name, path=None, target=None):\n"
            f"  if name.split('.')[0] in {blocked!r}: raise ModuleNotFoundError(name, name=name)\n"
            f"sys.meta_path.insert(0, Block())\nimport pytest\nsys.exit(pytest.main({list(args)!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, **(env or {})})


def test_without_torch_the_shared_tests_skip_instead_of_erroring():
    run = _pytest_without(["torch", "torchvision"], "-q", "-p", "no:cacheprovider", "-rs",
                          "tests/test_adapters.py", "-k", "targets or leaves or bad")
    tail = run.stdout.strip().splitlines()[-1]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "error" not in tail and "skipped" in tail, tail
    assert "needs torch" in run.stdout


@pytest.mark.tf
def test_without_torch_the_keras_tests_still_run():
    run = _pytest_without(["torch", "torchvision"], "-q", "-p", "no:cacheprovider",
                          "tests/test_tf_specific.py::test_sequential_model")
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout[-3000:] + run.stderr[-2000:]


def test_the_gpu_is_not_hidden(tmp_path):
    # the conftest once set CUDA_VISIBLE_DEVICES="" for every run, so the gpu test never ran on a GPU machine
    seen = tmp_path / "seen.txt"
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["XCAM_PROBE_ENV"] = str(seen)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/test_suite_setup.py::test_probe_environment"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, env=env)
    assert run.returncode == 0, run.stdout[-2000:]
    assert seen.read_text() == "unset"


def test_probe_environment():
    """Writes what the tests see of CUDA_VISIBLE_DEVICES (run by test_the_gpu_is_not_hidden)."""
    target = os.environ.get("XCAM_PROBE_ENV")
    if not target:
        pytest.skip("runs only inside test_the_gpu_is_not_hidden")
    Path(target).write_text(os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
