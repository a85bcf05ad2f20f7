"""Model-parameter randomization for the sanity checks (Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS
2018): which layers a cascade randomizes and in what order, the new parameter values, and the per-layer table.

The adapters only list their layers (``ParamLayer``: a name and the shapes of its trainable parameters in the
canonical PyTorch layout: conv (out, in, kh, kw), dense (out, in), vectors as they are) and set the values drawn
here, converted to their own layout; so a model ported between frameworks is randomized to the same network.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import XcamError

TRUNCATE = 2.0  # truncated normal cut at +-2 sigma (TensorFlow's truncated_normal, as Adebayo et al.'s code used)


@dataclass(frozen=True)
class ParamLayer:
    """A layer with trainable parameters: its ``name`` (as the adapter resolves it) and the ``shapes`` of its
    parameters in the canonical (PyTorch) layout, in the order the layer holds them (weight first, then bias;
    batch normalization: scale, then shift; running statistics are not parameters and are never randomized)."""

    name: str
    shapes: tuple


def cascade_layers(layers: Sequence[ParamLayer], top: int | None = None) -> list[ParamLayer]:
    """The cascade's order (Adebayo et al.): ``layers`` are given from the input to the output; the cascade runs
    from the output down, so the result is ``layers`` reversed, cut to the first ``top`` (default: all). Step k
    of the cascade randomizes ``result[:k]`` together."""
    layers = list(layers)
    if not layers:
        raise XcamError("the model has no layer with trainable parameters to randomize")
    if top is None:
        return layers[::-1]
    if isinstance(top, bool) or not isinstance(top, int | np.integer) or top < 1:
        raise XcamError(f"top must be a positive number of layers, got {top!r}")
    return layers[::-1][:int(top)]


def fan_in(shapes: Sequence[tuple]) -> int:
    """The layer's fan-in: prod(shape[1:]) of its first parameter with two or more axes (conv: in * kh * kw;
    dense: in); 1 for a layer of vectors only (batch normalization)."""
    for shape in shapes:
        if len(shape) >= 2:
            return max(1, int(np.prod(shape[1:])))
    return 1


def truncated_normal(rng: np.random.Generator, shape: tuple, sigma: float) -> np.ndarray:
    """N(0, sigma^2) cut at +-2 sigma (values beyond are redrawn), float32."""
    z = rng.standard_normal(shape)
    bad = np.abs(z) > TRUNCATE
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(z) > TRUNCATE
    return (z * sigma).astype(np.float32)


def random_parameters(layer: ParamLayer, position: int, seed: int = 0) -> list[np.ndarray]:
    """New values for every parameter of ``layer``, canonical layout: each ~ N(0, 1 / fan_in) truncated at +-2
    sigma (LeCun-scaled truncated normal; Adebayo et al. re-initialized with a truncated normal), drawn from
    numpy's Generator(seed, position), where ``position`` is the layer's place in the cascade (0 = the top layer),
    so a layer gets the same values at every step of a cascade and on every framework."""
    sigma = 1.0 / np.sqrt(fan_in(layer.shapes))
    rng = np.random.default_rng([int(seed), int(position)])
    return [truncated_normal(rng, tuple(shape), sigma) for shape in layer.shapes]


def check_cascade_names(names: Sequence[str], known: Sequence[str]) -> list[str]:
    """``names`` as a list, each a layer with parameters; else a one-line error naming the valid layers."""
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in set(known)]
    if unknown:
        shown = ", ".join(list(known)[-6:])
        raise XcamError(f"cannot randomize {unknown[0]!r}: not a layer with trainable parameters "
                        f"(layers with parameters, last ones: {shown})")
    if len(set(names)) != len(names):
        raise XcamError("a layer is named twice in the layers to randomize")
    return names


def cascade_rows(result) -> list[dict]:
    """The per-layer table of an ``xcam.metrics.CascadeResult``: for step k (the top k layers randomized) the
    layer randomized last and the mean and standard deviation over images of the Spearman rank correlation and
    the SSIM with the original maps (NaN-aware: an image whose map became constant has no rank correlation)."""
    rows = []
    for k, name in enumerate(result.layers):
        row = {"step": k + 1, "layer": name}
        for key in ("spearman", "ssim"):
            v = np.asarray(getattr(result, key)[k], dtype=np.float64)
            ok = np.isfinite(v)
            row[f"{key}_mean"] = float(v[ok].mean()) if ok.any() else float("nan")
            row[f"{key}_std"] = float(v[ok].std()) if ok.any() else float("nan")
        rows.append(row)
    return rows
