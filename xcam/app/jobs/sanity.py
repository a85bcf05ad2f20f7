"""The cascading model-parameter randomization test on a real model (Adebayo et al., NeurIPS 2018): the adapter
randomizes the top k layers (``randomized``, restored exactly after each step), the method explains the same
inputs for the same classes, and ``xcam.metrics.cascading_randomization`` compares each step with the original."""

import contextlib

import numpy as np

from xcam.metrics import CascadeResult, cascading_randomization
from xcam.randomization import cascade_layers, cascade_rows


def model_randomization(adapter, model, inputs, layer, method, targets, *, size=None, top: int | None = None,
                        seed: int = 0, options=None, absolute: bool = False, maps=None) -> CascadeResult:
    """The cascade for one method: maps of ``adapter.cam(model, inputs, layer, method, targets)`` (``inputs`` in
    the adapter's layout, ``targets`` fixed: the classes of the original model, not re-chosen per step) with the
    top 0..L layers with parameters randomized (L = ``top``, default all; order and values from
    ``xcam.randomization``), compared by Spearman rank correlation and SSIM. One more layer is randomized per step
    (each drawn once, all restored exactly at the end); ``maps``: the unperturbed model's maps when the caller
    has them (then not recomputed). The model is left as it was."""
    layers = [r.name for r in cascade_layers(adapter.parameter_layers(model), top)]
    targets = np.asarray(targets, dtype=np.int64)
    with contextlib.ExitStack() as stack:  # step k adds layer k to the randomized ones: each is drawn once

        def maps_for(k):
            if k:
                stack.enter_context(adapter.randomized(model, [layers[k - 1]], seed=seed, first_position=k - 1))
            return adapter.cam(model, inputs, layer, method, targets=targets, size=size, options=options)

        return cascading_randomization(maps_for, layers, absolute=absolute, maps=maps)


def randomization_summary(result: CascadeResult) -> dict:
    """JSON-ready: the per-layer rows (``xcam.randomization.cascade_rows``) and the per-image Spearman and SSIM
    after the whole cascade (the last row: every listed layer randomized)."""
    return {"layers": list(result.layers), "rows": cascade_rows(result),
            "final_spearman": [float(v) for v in result.spearman[-1]],
            "final_ssim": [float(v) for v in result.ssim[-1]]}
