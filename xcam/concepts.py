"""Concepts of a layer by deep feature factorization (Collins et al., Deep Feature Factorization For Concept
Discovery, ECCV 2018, arXiv:1806.10206): ``xcam_torch.concepts`` / ``xcam_tf.concepts`` (``concepts_for``)
return a ``Concepts``; ``concept_picture`` colours each concept over the image, as pytorch-grad-cam's
``show_factorization_on_image``.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from .contract import Adapter, spatial_size
from .errors import XcamError
from .factorize import concept_scores, factorize
from .inputs import image_keys, lookup
from .maps import finish
from .ops import check_size, softmax
from .viz import rgb_channels


@dataclass(frozen=True)
class Concepts:
    """The result of ``concepts(model, x, layer, k)``.

    maps:       (N, k, *S) float32 in [0, 1]: concept j's map for sample n (H of the factorization resized to
                ``size`` bilinearly, then min-max normalized per sample and concept).
    raw:        (N, k, *s) float32, H itself at the layer's resolution (non-negative, un-normalized).
    vectors:    (C, k) float32: each concept's activation vector (W plus the per-channel offset), in the layer's
                units; pytorch-grad-cam calls it ``concepts``.
    scores:     (k, K) float32 logits of each concept vector through the model's linear head (the last
                linear / dense layer, or ``head=``), or None with ``head=False``.
    sweeps:     the coordinate-descent sweeps the factorization took (<= ``max_iter``).
    layer:      the layer's name.
    """

    maps: np.ndarray
    raw: np.ndarray
    vectors: np.ndarray
    scores: np.ndarray | None
    sweeps: int
    layer: str = ""

    @property
    def probabilities(self) -> np.ndarray:
        """Softmax of ``scores`` over the classes, (k, K) (what pytorch-grad-cam's example shows)."""
        if self.scores is None:
            raise XcamError("these concepts have no class scores (made with head=False)")
        return softmax(self.scores, axis=-1)

    def top_classes(self, count: int = 2) -> np.ndarray:
        """(k, count) class indices of each concept, highest score first."""
        if self.scores is None:
            raise XcamError("these concepts have no class scores (made with head=False)")
        return np.argsort(-self.scores, axis=1, kind="stable")[:, :count]

    def labels(self, names=None, count: int = 2) -> list[str]:
        """One legend line per concept: its ``count`` top classes as "name:probability" joined by newlines
        (pytorch-grad-cam's ``create_labels_legend``, on the softmax); ``names`` maps a class index to its
        name (a list or dict; None: the index)."""
        probs = self.probabilities
        out = []
        for j, classes in enumerate(self.top_classes(count)):
            words = [f"{c if names is None else ','.join(str(names[c]).split(',')[:3])}:{probs[j, c]:.2f}"
                     for c in classes]
            out.append("\n".join(words))
        return out


def concepts_for(adapter: Adapter):
    """``concepts(model, inputs, layer, k, ...)`` bound to one adapter: the public ``xcam_torch.concepts`` and
    ``xcam_tf.concepts`` (see ``concepts``)."""

    def bound(model, inputs, layer=None, k: int = 5, *, head=None, size=None, output=None, reshape=None,
              call=None, max_iter: int = 200, tol: float = 1e-4, seed: int = 0) -> Concepts:
        return concepts(adapter, model, inputs, layer, k, head=head, size=size, output=output, reshape=reshape,
                        call=call, max_iter=max_iter, tol=tol, seed=seed)

    bound.__doc__ = concepts.__doc__
    bound.__name__ = "concepts"
    bound.__module__ = adapter.__name__
    return bound


def concepts(adapter: Adapter, model, inputs, layer=None, k: int = 5, *, head=None, size=None, output=None,
             reshape=None, call=None, max_iter: int = 200, tol: float = 1e-4, seed: int = 0) -> Concepts:
    r"""Deep feature factorization (Collins et al. 2018) of one layer's activations into k concepts, as
    pytorch-grad-cam 1.5.7's ``DeepFeatureFactorization``: A (channels x positions of all N samples, joint over the
    batch) minus its per-channel minimum ~ W H by non-negative matrix factorization (``xcam.factorize.nmf``:
    scikit-learn's random start from ``seed`` and coordinate descent, ``max_iter`` sweeps, ``tol``); returns a
    ``Concepts``: per-concept maps (N, k, *S) in [0, 1], the concept vectors (C, k) and their class scores
    (k, K) logits, S = W^T W_head^T + b through the model's classifier head.

    layer: as for ``cam`` (None: the default layer); head: None, the model's last linear / dense layer (its
    weight and bias, which must take the layer's C channels: a layer followed by global average pooling and the
    classifier, e.g. ResNet's ``layer4`` and ``fc``), a layer name or object, or False for no scores; size: the
    maps' size (default the input's); output, reshape, call: as for ``cam``.
    Differences from pytorch-grad-cam: maps are resized and then normalized (it normalizes, adding 1e-7 to the
    denominator, then resizes), and scores are computed from the head's weights (it calls the head module).
    """
    extra = {k_: v for k_, v in (("reshape", reshape), ("call", call)) if v is not None}
    cap = adapter.capture(model, inputs, layer, None, gradients=False, output=output, **extra)
    cap = cap[0] if isinstance(cap, list) else cap
    weight, bias = (None, None) if head is False else adapter.linear_head(model, head)
    if weight is not None:  # a head that does not take the layer's channels fails before the factorization
        concept_scores(np.zeros((cap.activations.shape[1], 1), np.float32), weight)
    vectors, raw, sweeps = factorize(cap.activations, k, max_iter=max_iter, tol=tol, seed=seed)
    scores = None if weight is None else concept_scores(vectors, weight, bias)
    keys, rank = image_keys(inputs), cap.rank
    if size is None:
        size = spatial_size(tuple(np.shape(lookup(inputs, keys[0]))), adapter.LAYOUT) if keys else ()
        if len(size) != rank:
            size = raw.shape[2:]
    size = check_size(size, rank)
    return Concepts(finish(raw, size, rank), raw, vectors, scores, sweeps, cap.layer)


# gist_rainbow (matplotlib's data, from Collins et al.'s DFF code): (position, (r, g, b)) anchors
_RAINBOW = ((0.0, (1.0, 0.0, 0.16)), (0.03, (1.0, 0.0, 0.0)), (0.215, (1.0, 1.0, 0.0)), (0.4, (0.0, 1.0, 0.0)),
            (0.586, (0.0, 1.0, 1.0)), (0.77, (0.0, 0.0, 1.0)), (0.954, (1.0, 0.0, 1.0)), (1.0, (1.0, 0.0, 0.75)))


def rainbow_colors(count: int) -> np.ndarray:
    """(count, 3) RGB colours in [0, 1]: matplotlib's 256-entry ``gist_rainbow`` at 0, 1/count, 2/count, ...
    (the colours pytorch-grad-cam's ``show_factorization_on_image`` gives the concepts by default)."""
    xs = np.array([p for p, _ in _RAINBOW])
    table = np.stack([np.interp(np.linspace(0, 1, 256), xs, [c[i] for _, c in _RAINBOW]) for i in range(3)], 1)
    at = np.arange(0, 1, 1.0 / count)[:count] * 256
    return table[np.minimum(at.astype(int), 255)]


def concept_picture(image: np.ndarray, maps: np.ndarray, colors=None, image_weight: float = 0.5) -> np.ndarray:
    """Each concept coloured over the image, uint8 RGB (H, W, 3), as pytorch-grad-cam's
    ``show_factorization_on_image`` (without its matplotlib legend; ``Concepts.labels`` gives the lines): every
    pixel takes the colour of its strongest concept (argmax over k of ``maps`` (k, H, W) in [0, 1]), with HSV
    value 255 * that concept's map; out = image_weight * image + (1 - image_weight) * colours. ``colors``:
    (k, 3) RGB in [0, 1] (default ``rainbow_colors(k)``); maps of another size are resized to the image."""
    if not 0.0 <= image_weight <= 1.0:
        raise XcamError(f"image_weight must be in [0, 1], got {image_weight}")
    rgb = _float_rgb(image)
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3:
        raise XcamError(f"maps must be one sample's concept maps (k, H, W), got shape {maps.shape}")
    if maps.shape[1:] != rgb.shape[:2]:
        maps = np.stack([cv2.resize(m, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR) for m in maps])
    count = maps.shape[0]
    colors = rainbow_colors(count) if colors is None else np.asarray(colors, dtype=np.float64)
    if colors.shape[0] < count or colors.ndim != 2 or colors.shape[1] < 3:
        raise XcamError(f"colors must be (k, 3) RGB for the {count} concepts, got shape {colors.shape}")
    strongest = maps.argmax(axis=0)
    total = np.zeros(rgb.shape, np.float32)
    for j in range(count):
        value = np.where(strongest == j, maps[j], 0)
        swatch = np.zeros(rgb.shape, np.float64)
        swatch[:] = colors[j][:3]
        hsv = cv2.cvtColor(np.uint8(swatch * 255), cv2.COLOR_RGB2HSV)
        hsv[:, :, 2] = np.uint8(255 * value)
        total += np.float32(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)) / 255
    return np.uint8(np.clip(rgb * image_weight + total * (1 - image_weight), 0, 1) * 255)


def _float_rgb(image: np.ndarray) -> np.ndarray:
    """An (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, uint8 or float in [0, 1], as float64 RGB in [0, 1]."""
    img = rgb_channels(image)
    return img / 255.0 if img.dtype == np.uint8 else np.clip(img.astype(np.float64), 0.0, 1.0)
