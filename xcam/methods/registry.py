"""The method registry: one place where a method is added; the CLI, tests and README table read it.

Three kinds of method:
- "weights": per-channel weights (..., C) or element-wise gates (..., C, *s); ``xcam.maps.combine`` multiplies them
  with the activations, sums over channels, applies ReLU when the paper does, resizes and normalizes.
- "map": the raw map (..., *s) itself (Eigen-CAM: a principal component is not a weighted sum).
- "pixel": an input-space attribution: ``fn`` returns the SIGNED attribution, float32, channels first,
  (N, C_in, *S) or (N, K, C_in, *S) with several classes (a method whose attribution is per position broadcasts
  it over C_in, as captum does with a feature mask shared over channels). ``xcam_torch.attribute`` /
  ``xcam_tf.attribute`` return it as is (in the input's layout); ``cam()`` reduces it over C_in with the
  method's ``reduce`` (``reduce_channels``), then ReLU (if ``relu``), resize and normalize as for CAMs.

Arrays may carry a class axis: activations (N, 1, C, *s) against gradients (N, K, C, *s), and the spatial
rank r (``MethodArgs.rank``: 1 for (L,), 2 for (h, w), 3 for (d, h, w)) is carried along, so every formula
reduces over ``MethodArgs.axes`` (the last r axes) and is written once for every rank. Where papers and
anchors differ, the paper is the default and the variant is a named option (``options=``), documented in the
method's docstring.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..contract import Probe
from ..errors import XcamError, nearest


@dataclass(frozen=True)
class MethodArgs:
    """What a method function sees (see the module docstring for shapes)."""

    activations: np.ndarray
    gradients: np.ndarray | None
    targets: np.ndarray                     # (N,) or (N, K)
    head_weights: np.ndarray | None = None
    scores: np.ndarray | None = None        # (N, classes) logits of the unmodified inputs
    model_inputs: np.ndarray | None = None  # (N, C_in, *S) model inputs, channels first (probe methods)
    probe: Probe | None = None              # the adapter's extra forwards and input gradients
    options: dict = field(default_factory=dict)
    target: Any = None                      # the resolved xcam.targets.Target (probe methods score with it)
    rank: int = 2                           # spatial rank of activations and gradients: 1, 2 or 3
    batch_size: int | None = None           # rows per probe call (None: DEFAULT_BATCH); the core batches
    hvp: np.ndarray | None = None           # (N, C, *s) H A from the capture (methods with ``needs_hvp``)
    attention: dict | None = None           # the capture's LeGrad arrays (``Capture.attention``, needs_attention)

    @property
    def axes(self) -> tuple:
        """The spatial axes (the last ``rank``), as negative indices."""
        return tuple(range(-self.rank, 0))

    @property
    def input_rank(self) -> int:
        """The spatial rank of the model inputs (pixel methods): (N, C_in, *S)."""
        return self.model_inputs.ndim - 2


@dataclass(frozen=True)
class Method:
    """A registered method: its formula ``fn``, title, paper, kind, what it needs and its options' defaults."""

    name: str
    fn: Callable[[MethodArgs], np.ndarray]
    title: str
    paper: str
    kind: str = "weights"               # "weights" | "map" | "pixel"
    needs_gradients: bool = True
    needs_head: bool = False
    needs_hvp: bool = False             # the capture's Hessian-vector product H A (``Capture.hvp``, shapleycam)
    needs_forwards: bool = False        # extra batched forwards through the adapter's probe
    relu: bool = True
    reduce: str = "absmax"              # pixel methods: channel reduction for cam() (``REDUCTIONS``)
    options: dict = field(default_factory=dict)  # option name -> default
    weighted: Callable | None = None    # "map" methods: (..., C, *s) weighted activations, for eigen_smooth
    explains: Callable | None = None    # (user's Target, options) -> the Target actually explained (finercam)
    fuse: Callable | None = None        # (raw maps per layer, size, options) -> maps: own fusion (refinecam, legrad)
    needs_attention: bool = False       # transformer blocks: the capture's attention arrays (``Capture.attention``,
    #                                     legrad; the capture is asked with the method's head / attention options)
    needs_capture: bool = True          # pixel methods: False when the probe's input gradients are all it asks
    #                                     (no layer capture, no default-layer search; the probe checks the target)
    at_inputs: bool = False             # input gradients at the inputs themselves (one row per input): a top-1
    #                                     class is resolved in that forward, not in one of its own

    @property
    def needs(self) -> str:
        """What the method needs from the model, in words (``xcam methods`` and the README table)."""
        parts = [word for flag, word in ((self.needs_gradients, "layer gradients"),
                                         (self.needs_hvp, "Hessian-vector products"), (self.needs_head, "head weights"),
                                         (self.needs_forwards, "extra forwards"),
                                         (self.kind == "pixel" and not self.needs_forwards, "input gradients"),
                                         (self.needs_attention, "attention gradients")) if flag]
        return ", ".join(parts) or "activations"

    @property
    def needs_probe(self) -> bool:
        """Whether the adapter must hand over a probe (extra forwards, or gradients at the input)."""
        return self.needs_forwards or self.kind == "pixel"


REDUCTIONS = ("absmax", "sum", "abssum")
DEFAULT_BATCH = 32  # rows (images, noisy copies, path points) per probe call when no batch_size is given


def reduce_channels(attribution: np.ndarray, reduce: str, input_rank: int) -> np.ndarray:
    """A pixel attribution (..., C_in, *S) reduced over C_in for a map (..., *S): "absmax" max_c |a_c|
    (Simonyan et al.'s saliency map), "sum" sum_c a_c (signed; ReLU follows if the method has one), "abssum"
    sum_c |a_c|."""
    axis = -(input_rank + 1)
    if reduce == "absmax":
        return np.abs(attribution).max(axis=axis)
    if reduce == "sum":
        return attribution.sum(axis=axis)
    if reduce == "abssum":
        return np.abs(attribution).sum(axis=axis)
    raise XcamError(f"channel reduction {reduce!r} is not valid; choose one of: {', '.join(REDUCTIONS)}")


_REGISTRY: dict[str, Method] = {}
FAMILIES = ("gradient", "activation", "perturbation", "pixel", "occlusion",  # xcam.methods modules, table order
            "attribution_gradient")


def register(name: str, *, title: str, paper: str, **meta) -> Callable:
    """Add a method to the registry under ``name`` (lower case, one spelling)."""

    def add(fn):
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered")
        _REGISTRY[name] = Method(name, fn, title, paper, **meta)
        return fn

    return add


def method_names(kind: str | None = None) -> list[str]:
    """The names of the registered methods (of one kind, if given): family by family in ``FAMILIES`` order,
    then methods registered elsewhere; in registration order within each."""
    def family_rank(method: Method) -> int:
        family = method.fn.__module__.rpartition(".")[2]
        return FAMILIES.index(family) if family in FAMILIES else len(FAMILIES)

    ordered = sorted(_REGISTRY.values(), key=family_rank)  # stable: registration order within a family
    return [m.name for m in ordered if kind is None or m.kind == kind]


def get_method(method: "str | Method") -> Method:
    """The registered method by name (or the Method itself); an unknown name lists the nearest and all."""
    if isinstance(method, Method):
        return method
    try:
        return _REGISTRY[method]
    except KeyError:
        hint = nearest(str(method), _REGISTRY)
        also = f" (did you mean {', '.join(hint)}?)" if hint else ""
        raise XcamError(f"unknown method {method!r}{also}; valid methods: {', '.join(_REGISTRY)}") from None


LAYER_OPTIONS = {"eigen_smooth": False, "aug_smooth": False,   # modifiers every layer (non-pixel) method accepts
                 "aug_scales": (1.0,)}                         # aug_smooth's geometric scales (xcam.pipeline)
FLAG_OPTIONS = ("eigen_smooth", "aug_smooth")                  # layer modifiers that are True / False


def layer_options(method: Method) -> dict:
    """The method's own options plus the layer modifiers (``LAYER_OPTIONS``) where it is a layer method."""
    return method.options if method.kind == "pixel" else {**LAYER_OPTIONS, **method.options}


def resolve_options(method: Method, options: dict | None) -> dict:
    """The method's options with defaults filled in; an unknown option or value is a one-line error."""
    given = dict(options or {})
    known = layer_options(method)
    unknown = sorted(set(given) - set(known))
    if unknown:
        valid = ", ".join(known) or "none"
        why = " (a modifier of layer methods; this one works at the input)" if unknown[0] in LAYER_OPTIONS else ""
        raise XcamError(f"method {method.name!r} has no option {unknown[0]!r}{why}; its options: {valid}")
    out = {**known, **given}
    for name in set(FLAG_OPTIONS) & set(out):
        if not isinstance(out[name], bool):
            raise XcamError(f"option {name}={out[name]!r} is not valid; choose one of: True, False")
    return out


def choice(options: dict, name: str, valid: tuple) -> str:
    """The option's value if it is one of ``valid``, else a one-line error listing them."""
    value = options[name]
    if value not in valid:
        raise XcamError(f"option {name}={value!r} is not valid; choose one of: {', '.join(valid)}")
    return value
