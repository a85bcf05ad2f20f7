"""200 calls per framework and per method kind leave nothing behind: no hooks, no wrapped layers or patched
activations, no parameter .grad, no new or retraced compiled steps, and RSS flat (within a bound) after a
warm-up. (benchmarks/memory.py runs the same check for 1,000 calls on AlexNet.)"""

import os

import numpy as np
import pytest

CALLS, WARMUP = 200, 20
RSS_BOUND_MB = 8  # measured growth between call 20 and call 200: at most 0.06 MB on either framework
# one method per kind: weights from gradients, a gradient-free map, extra forwards (probe), input gradients
METHODS = ["gradcam", "eigencam", "scorecam", "guidedbackprop"]
# mask methods at their defaults run thousands of forwards; fewer masks touch the model the same way
FAST_OPTIONS = {"rise": {"n_masks": 64}, "sobol": {"grid_size": 4, "nb_design": 8}, "hsic": {"nb_design": 64}}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def torch_state(model):
    import torch

    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                for m in model.modules())
    return {"hooks": hooks, "grads": sum(p.grad is not None for p in model.parameters()),
            "training": [m.training for m in model.modules()], "grad_mode": torch.is_grad_enabled()}


def keras_state(model):
    from xcam_tf._capture import _STEPS, walk

    layers = [layer for _, layer in walk(model)]
    steps = {k: v[1] for k, v in _STEPS.items() if v[0] is model}
    traces = {k: (s[0] if isinstance(s, tuple) else s).experimental_get_tracing_count() for k, s in steps.items()}
    return {"wrapped": sum("call" in vars(layer) for layer in layers),
            "activations": [getattr(layer, "activation", None) for layer in layers],
            "steps": sorted(map(str, steps)), "traces": traces}


@pytest.mark.parametrize("method", METHODS)
def test_repeated_calls_leave_nothing_behind(fw, method):
    state = torch_state if fw.name == "torch" else keras_state
    first = fw.cam(fw.conv2, method, [1, 0])
    for _ in range(WARMUP - 1):
        fw.cam(fw.conv2, method, [1, 0])
    before, rss_before = state(fw.model), rss_mb()
    for i in range(CALLS - WARMUP):
        out = fw.cam(fw.conv2, method, [1, 0] if i % 2 else [0, 1])
    grown = rss_mb() - rss_before
    after = state(fw.model)
    assert after == before
    if fw.name == "torch":
        assert after["hooks"] == 0 and after["grads"] == 0
    else:
        assert after["wrapped"] == 0 and after["steps"]
        assert set(after["traces"].values()) == {1}  # each compiled step traced once, for all 201 calls
    np.testing.assert_array_equal(fw.cam(fw.conv2, method, [1, 0]), first)
    assert out.shape == (2, 8, 8)
    assert grown < RSS_BOUND_MB, f"RSS grew {grown:.1f} MB over {CALLS - WARMUP} calls"


@pytest.mark.parametrize("method", __import__("xcam").methods())
def test_every_registered_method_leaves_the_model_as_it_was(fw, method):
    # one call of every method in the registry (a refused one too: cam needs a head the kit may lack)
    from xcam import XcamError

    state = torch_state if fw.name == "torch" else keras_state
    keys = ("hooks", "grads", "training", "grad_mode") if fw.name == "torch" else ("wrapped", "activations")
    before = {k: v for k, v in state(fw.model).items() if k in keys}
    try:
        maps = fw.cam(fw.conv2, method, [1, 0], options=FAST_OPTIONS.get(method))
        assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    except XcamError:
        pass
    assert {k: v for k, v in state(fw.model).items() if k in keys} == before
