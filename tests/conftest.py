"""Shared fixtures. torch is imported before tensorflow: the other order can crash in one process."""

import contextlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", os.environ.get("XCAM_TEST_CUDA", ""))  # tests run on the CPU

with contextlib.suppress(ImportError):
    import torch  # noqa: F401
    import torchvision  # noqa: F401  (torchvision after tensorflow segfaults too)

import pytest  # noqa: E402

FRAMEWORKS = [pytest.param("torch", marks=pytest.mark.torch, id="torch"),
              pytest.param("tf", marks=pytest.mark.tf, id="tf")]


@pytest.fixture(params=FRAMEWORKS)
def fw(request):
    """A framework kit (see kits.py): the same tiny network and helpers for torch and for Keras."""
    from kits import make_kit

    pytest.importorskip({"torch": "torch", "tf": "tensorflow"}[request.param])
    return make_kit(request.param)


@pytest.fixture(scope="session")
def synthetic_model():
    """The synthetic benchmark's tiny CNN, trained (about 10 s, once per session; the same weights every run)."""
    pytest.importorskip("torch")
    from xcam.app.synthetic import train

    return train(seed=0)
