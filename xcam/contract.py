"""The adapter contract, written down: what a framework adapter hands the core (``Capture``), the callbacks a
method may ask of it (``Probe``), and the module interface both adapters export (``Adapter``).

Canonical layout, everywhere in the core: channels first, any spatial rank r in 1..3. Activations and
gradients are (N, C, *s): (N, C, L) for signals, (N, C, h, w) for images, (N, C, d, h, w) for volumes and clips;
model inputs handed to a probe are (N, C_in, *S). A layer whose output is channels-last or tokens is brought
to this layout by its ``xcam.layouts.Layout`` (the adapter applies it when it hands arrays over and back).
"""

import warnings
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .errors import XcamError
from .layouts import Layout
from .ops import softmax
from .targets import Class, evaluate


@dataclass(frozen=True)
class Capture:
    """Everything a CAM formula needs for one layer and one batch.

    activations: (N, C, *s) float32 with s of rank 1, 2 or 3: the layer's output as the layer produced it,
                 brought to channels first by its layout (tokens: prefix dropped, grid restored).
    gradients:   (N, C, *s) float32, d score / d activations, or None for gradient-free capture.
                 With several classes per sample (``classes=[...]``) it is (N, K, C, *s).
    scores:      the selected model output as NumPy, (N, K_model) float32 logits (pre-softmax) for a
                 classifier, (N, ...) for other tensors, (N, 0) for a structured output (a detector's).
    targets:     (N,) or (N, K) int64, the class differentiated for each sample (-1 for targets without one).
    layer:       the layer's name as the user gave it.
    head_weights: (K_model, C) weights of a final linear layer after global average pooling
                 (only captured for ``cam``), else None.
    target:      the ``xcam.targets.Target`` differentiated, resolved (top-1 classes, predicted masks fixed);
                 None means ``Class(targets)``.
    target_scores: (N,) or (N, K) the target's score per sample, or None.
    layout:      how the layer laid its output out (``xcam.layouts.Layout``; None: channels first).
    hvp:         (N, C, *s) float32 H A, the Hessian of the summed target scores w.r.t. the activations A applied
                 to A (the framework's double backward; asked with ``hvp=True``, ShapleyCAM), else None.
                 With several classes per sample it is (N, K, C, *s).
    attention:   LeGrad's arrays for the layer (a transformer block), float32 NumPy (asked with
                 ``attention={"head": ..., "attention": ...}``), else None: "inputs" (N, T, E_in) its
                 self-attention's value input, "output_gradients" (N, T, E_out) d s / d the attention's output
                 with s the block's own score (``xcam.methods.gradient.legrad_score``, ``head``: layer names or
                 None), and the attention's projections "value_kernel" (E_in, heads, d), "value_bias"
                 (heads, d), "output_kernel" (heads, d, E_out); ``attention``: a name, default the last
                 multi-head attention before the block's output.
    """

    activations: np.ndarray
    gradients: np.ndarray | None
    scores: np.ndarray
    targets: np.ndarray
    layer: str = ""
    head_weights: np.ndarray | None = None
    target: Any = None
    target_scores: np.ndarray | None = None
    layout: Layout | None = None
    hvp: np.ndarray | None = None
    attention: dict | None = None

    def __post_init__(self):
        a = self.activations
        if not 3 <= a.ndim <= 5:
            raise ValueError(f"activations must be (N, C, L), (N, C, h, w) or (N, C, d, h, w), got shape {a.shape}")
        if self.gradients is not None and (self.gradients.shape[-(a.ndim - 1):] != a.shape[1:]
                                           or self.gradients.shape[0] != a.shape[0]):
            raise ValueError(f"gradients {self.gradients.shape} do not match activations {a.shape}")
        if self.scores.ndim < 1 or self.scores.shape[0] != a.shape[0]:
            raise ValueError(f"scores must be (N, ...) with N={a.shape[0]}, got {self.scores.shape}")

    @property
    def rank(self) -> int:
        """The spatial rank of the activations: 1 (L), 2 (h, w) or 3 (d, h, w)."""
        return self.activations.ndim - 2

    @property
    def probabilities(self) -> np.ndarray:
        """Softmax of the logits, (N, K) (a classifier's output)."""
        return softmax(self.scores)

    @property
    def explained(self):
        """The target that was differentiated (``Class(targets)`` when none was recorded)."""
        return self.target if self.target is not None else Class(self.targets)


@runtime_checkable
class Probe(Protocol):
    """Extra model runs that perturbation and pixel methods ask for, for one model, layer and batch.

    The probe only runs the model: masks, ablations, noise and weights are made in the core. Every array in
    and out is NumPy float32, channels first.
    """

    inputs: np.ndarray
    """The batch the probe was made for, (N, C_in, *S), channels first."""

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """The selected output, logits (B, K) for a classifier, for a batch of inputs (B, C_in, *S)."""

    def predict_from_layer(self, sample: int, activations: np.ndarray) -> np.ndarray:
        """The selected output (B, K) when the layer's output for input ``sample`` is replaced by
        ``activations`` (B, C, *s), canonical layout (the adapter brings them back to the layer's own layout);
        the layers before it run once, on that input."""

    def score(self, inputs: np.ndarray, target, samples: np.ndarray) -> np.ndarray:
        """The target's scores (B,) or (B, K) for inputs (B, C_in, *S) whose row b belongs to input
        ``samples[b]`` of the batch (the target's per-sample arguments follow it)."""

    def score_from_layer(self, sample: int, activations: np.ndarray, target) -> np.ndarray:
        """The target's scores (B,) or (B, K) for input ``sample`` when the layer's output is replaced by
        ``activations`` (B, C, *s)."""

    def input_gradients(self, inputs: np.ndarray, targets, guided: bool = False, samples=None) -> np.ndarray:
        """d score / d input, (B, C_in, *S), for a Target (rows belonging to ``samples``, default all) or
        class indices (B,) (the logit); ``guided`` (True or "guided"): through ReLUs that pass only positive gradients
        (guided backprop); "deconvnet": ReLUs pass the positive part of their output gradient to their input
        (DeconvNet); without changing the model."""

    def bias_gradients(self, inputs: np.ndarray, targets, samples=None) -> tuple:
        """FullGrad's arrays for rows ``inputs`` (B, C_in, *S) (row b belonging to input ``samples[b]``, default
        all), from one forward and one backward: (d score / d input (B, C_in, *S), layers), ``layers`` a list
        with one dict per run of every convolution with a bias and every batch normalization whose output has the
        input's rank: "layer" (its name), "gradient" d score / d its output (B, C, *s) channels first (before a
        fused activation), and its parameters as arrays: "bias" (C,) for a convolution; "gamma", "beta" (C,) or
        None, "mean", "var" (C,) and "eps" for a batch normalization. The formulas (the effective bias among
        them) are the core's."""

    def layer_gradients(self, inputs: np.ndarray, target, samples=None) -> tuple:
        """The layer's activations and d score / d activations at the layer, both (B, C, *s) canonical, for
        inputs (B, C_in, *S) whose row b belongs to input ``samples[b]`` (default: the batch itself): one
        forward and backward per call (Smooth Grad-CAM++ on noisy copies)."""


class ScoresFromOutputs:
    """``Probe.score`` and ``score_from_layer`` from ``predict`` / ``predict_from_layer`` and the target on NumPy
    (``xcam.targets.evaluate``): for probes written in NumPy (tests, custom runners)."""

    def _batch_size(self, samples) -> int:
        inputs = getattr(self, "inputs", None)
        return len(inputs) if inputs is not None else int(np.max(samples)) + 1

    def score(self, inputs: np.ndarray, target, samples: np.ndarray) -> np.ndarray:
        """The target on ``predict(inputs)``."""
        return evaluate(target, self.predict(inputs), samples, self._batch_size(samples))

    def score_from_layer(self, sample: int, activations: np.ndarray, target) -> np.ndarray:
        """The target on ``predict_from_layer(sample, activations)``."""
        samples = np.full(len(activations), sample)
        return evaluate(target, self.predict_from_layer(sample, activations), samples, self._batch_size(samples))


@runtime_checkable
class Adapter(Protocol):
    """The module interface of ``xcam_torch`` and ``xcam_tf``: fetch arrays, run the model, nothing else.

    ``inputs`` are in the framework's layout (``LAYOUT``): PyTorch (N, C, *S), Keras (N, *S, C); or several
    inputs, a tuple / list or a dict of them (``xcam.inputs``).
    ``layer`` is a name, a path into a nested model, or the layer object; a list of them captures several
    layers in one forward and one backward.
    """

    NAME: str
    """"torch" or "tf"."""
    LAYOUT: str
    """"channels_first" or "channels_last": the layout of the framework's inputs and layers."""

    def capture(self, model, inputs, layer, targets=None, *, classes=None, gradients: bool = True,
                head: bool = False, labels=None, output=None, reshape=None, call=None,
                layer_output=None, hvp: bool = False, attention: dict | None = None) -> "Capture | list[Capture]":
        """Activations, gradients of the target's score and the selected output, as a ``Capture`` (channels
        first); ``reshape`` overrides the detected layer layout (``xcam.layouts.as_layout``); ``call`` picks
        one call of a layer that runs several times in one forward (from 0; ``xcam.layers.check_call``);
        ``layer_output`` the tensor of a structured layer output (``xcam.layer_outputs.pick``); ``hvp`` adds
        ``Capture.hvp`` ((N, K, C, *s) with ``classes``; the pipeline asks it only for methods with ``needs_hvp``);
        ``attention`` (LeGrad's options "head" and "attention") adds ``Capture.attention`` (methods with
        ``needs_attention``; one class per sample)."""

    def probe(self, model, inputs, layer, output=None, reshape=None, key=None, call=None,
              layer_output=None) -> Probe:
        """A ``Probe`` for methods that run the model again on this batch and layer (``output`` selected); with
        several inputs, ``key`` names the image-like input the probe's ``inputs`` are (``xcam.inputs``);
        ``call``: the call of a shared layer it replaces (default the first); ``layer_output`` as in capture."""

    def layer_records(self, model, input_shape: tuple) -> list:
        """``xcam.layers.LayerRecord`` for every layer, from one forward on zeros of ``(1, *input_shape)``
        (framework layout); shapes in the records are channels first."""

    def input_shape(self, model) -> tuple:
        """(C, H, W) the model declares, channels first, with None where it does not fix a size."""

    def kernels(self, model, layer) -> np.ndarray:
        """A convolution's kernels as (out, in, kh, kw)."""

    def activation_gradient(self, model, layer, inputs: np.ndarray, channel: int) -> np.ndarray:
        """d mean_{h,w} A[n, channel] / d input, (N, C_in, H, W), for channels-first NumPy ``inputs``."""

    def cam(self, model, inputs, layer, method: Any = "gradcam", targets=None, **kwargs) -> np.ndarray:
        """Maps in [0, 1] (see ``xcam.pipeline.explain``)."""

    def parameter_layers(self, model) -> list:
        """``xcam.randomization.ParamLayer`` for every layer with trainable parameters, input to output, shapes in
        the canonical (PyTorch) layout."""

    def randomized(self, model, layers, seed: int = 0, *, first_position: int = 0) -> AbstractContextManager:
        """A context manager: inside, the parameters of ``layers`` (names, top-down; ``layers[j]`` at cascade
        position ``first_position + j``) hold the values ``xcam.randomization.random_parameters`` draws; on exit
        every one is restored bit for bit."""

    def linear_head(self, model, head=None) -> tuple:
        """(weight (K, C), bias (K,) or None) of a linear / dense layer, (out, in) layout: ``head`` or the
        model's last one (``xcam.concepts`` scores concepts with it)."""

    def concepts(self, model, inputs, layer=None, k: int = 5, **kwargs):
        """Deep feature factorization into k concepts (see ``xcam.concepts.concepts``)."""


class LowPrecisionWarning(UserWarning):
    """The model computes in 16-bit floats: its maps differ from the same weights' in float32."""


LOW_PRECISION = ("float16", "bfloat16")


def warn_low_precision(dtype: str, stacklevel: int = 3) -> None:
    """Warn (``LowPrecisionWarning``) when the model computes in float16 or bfloat16. xcam computes every map
    in float32 from the captured tensors, but the forward and backward themselves ran in 16 bits: measured on
    AlexNet (random weights, ``benchmarks/precision.py``), maps differ from float32 by up to 0.49 (bfloat16) and
    1.0 (float16) max abs in [0, 1], mean abs up to 0.017."""
    if dtype in LOW_PRECISION:
        warnings.warn(f"the model computes in {dtype}: maps can differ from the same weights in float32 by up to "
                      f"{'0.5' if dtype == 'bfloat16' else '1.0'} per pixel (max abs, measured on AlexNet; README "
                      "'Precision'); cast the model to float32 for exact maps", LowPrecisionWarning,
                      stacklevel=stacklevel)


BATCH_LAYOUTS = {"channels_first": {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"},
                 "channels_last": {1: "(N, L, C)", 2: "(N, H, W, C)", 3: "(N, D, H, W, C)"}}


def check_batch(shape: tuple, layout: str, rank: int | None = None) -> None:
    """A model input must be a non-empty batch of signals, images or volumes/clips in the framework's layout
    (3-D, 4-D or 5-D), of the model's spatial ``rank`` when it is known; else a one-line error."""
    names = BATCH_LAYOUTS[layout]
    if rank in names and len(shape) != rank + 2:
        raise XcamError(f"inputs must be a batch {names[rank]} for this model ({rank}-D), got shape {tuple(shape)}")
    if not 3 <= len(shape) <= 5:
        raise XcamError(f"inputs must be a batch {', '.join(names.values())}, got shape {tuple(shape)}")
    if shape[0] == 0:
        raise XcamError(f"the batch is empty (shape {tuple(shape)}): give at least one input")


def spatial_size(shape: tuple, layout: str) -> tuple:
    """The spatial sizes ((L,), (H, W) or (D, H, W)) of a batch shape in the given layout."""
    return tuple(shape[2:]) if layout == "channels_first" else tuple(shape[1:-1])
