"""Shared fixtures and the markers that drive skips. torch is imported before tensorflow: the other order can
crash in one process.

Markers: ``torch`` / ``tf`` (needs PyTorch / TensorFlow: skipped, not errored, where it is missing), ``gpu``
(needs a CUDA GPU: skipped without one; the GPU is never hidden), ``slow`` (real-size models).
"""

import contextlib
import importlib.util
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # TensorFlow on a GPU takes only what it uses
if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: one thread per worker, so N workers share N cores
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(_var, "1")

with contextlib.suppress(ImportError):
    import torch  # noqa: F401
    import torchvision  # noqa: F401  (torchvision after tensorflow segfaults too)

    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)

import pytest  # noqa: E402

_PACKAGES = {"torch": ("torch", "torchvision"), "tf": ("tensorflow", "keras")}


def installed(framework: str) -> bool:
    """Whether every package the framework's tests need can be imported (without importing it)."""
    for name in _PACKAGES[framework]:
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except (ImportError, ValueError):  # ValueError: sys.modules[name] is None (blocked)
            return False
    return True


def cuda_available() -> bool:
    """Whether PyTorch sees a CUDA GPU."""
    if not installed("torch"):
        return False
    import torch

    return torch.cuda.is_available()


def pytest_runtest_setup(item):
    """Skip a test whose markers name a framework that is not installed, or a GPU that is not there."""
    for framework in _PACKAGES:
        if item.get_closest_marker(framework) and not installed(framework):
            pytest.skip(f"needs {framework} ({', '.join(_PACKAGES[framework])} not installed)")
    if item.get_closest_marker("gpu") and not cuda_available():
        pytest.skip("needs a CUDA GPU")


# the tf kit ports the torch TinyNet's weights (kits.py), so it needs torch as well
FRAMEWORKS = [pytest.param("torch", marks=pytest.mark.torch, id="torch"),
              pytest.param("tf", marks=[pytest.mark.tf, pytest.mark.torch], id="tf")]


@pytest.fixture(params=FRAMEWORKS)
def fw(request):
    """A framework kit (see kits.py): the same tiny network and helpers for torch and for Keras."""
    from kits import make_kit

    return make_kit(request.param)


def pytest_terminal_summary(terminalreporter):
    """Print how many cases the property suite (test_properties.py) generated."""
    import sys

    cases = getattr(sys.modules.get("test_properties"), "CASES", None)
    if cases:
        parts = ", ".join(f"{name} {count}" for name, count in sorted(cases.items()))  # "a:b" = a breakdown
        total = sum(count for name, count in cases.items() if ":" not in name)
        terminalreporter.write_line(f"hypothesis: {total} generated cases ({parts})")


@pytest.fixture(scope="session")
def synthetic_model():
    """The synthetic benchmark's tiny CNN, trained (about 10 s, once per session; the same weights every run)."""
    pytest.importorskip("torch")
    from xcam.app.jobs.synthetic import train

    return train(seed=0)


@pytest.fixture(scope="session")
def seeded_resnet18():
    """``make(num_classes, side)`` -> (torchvision ResNet-18 with random weights from seed 0, eval mode; two
    ``randn`` inputs (2, 3, side, side) drawn right after it), one per arguments for the session: the anchor
    comparisons' shared model. Tests must not modify it."""
    pytest.importorskip("torch")
    import torch
    import torchvision

    made = {}

    def make(num_classes: int = 3, side: int = 64):
        if (num_classes, side) not in made:
            torch.manual_seed(0)
            model = torchvision.models.resnet18(weights=None, num_classes=num_classes).eval()
            made[num_classes, side] = model, torch.randn(2, 3, side, side)
        return made[num_classes, side]

    return make
