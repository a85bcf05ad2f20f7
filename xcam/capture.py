"""The adapter contract: what a framework adapter hands the core, in one canonical layout."""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Capture:
    """Everything a CAM formula needs for one layer and one batch.

    activations: (N, C, h, w) float32, the layer's output as the layer produced it (channels first).
    gradients:   (N, C, h, w) float32, d score / d activations, or None for gradient-free capture.
                 With several classes per sample (``classes=[...]``) it is (N, K, C, h, w).
    scores:      (N, K_model) float32 logits (pre-softmax) of the whole batch.
    targets:     (N,) or (N, K) int64, the class differentiated for each sample.
    layer:       the layer's name as the user gave it.
    head_weights: (K_model, C) weights of a final linear layer after global average pooling
                 (only captured for ``cam``), else None.
    """

    activations: np.ndarray
    gradients: np.ndarray | None
    scores: np.ndarray
    targets: np.ndarray
    layer: str = ""
    head_weights: np.ndarray | None = None

    def __post_init__(self):
        a = self.activations
        if a.ndim != 4:
            raise ValueError(f"activations must be (N, C, h, w), got shape {a.shape}")
        if self.gradients is not None and self.gradients.shape[-3:] != a.shape[-3:]:
            raise ValueError(f"gradients {self.gradients.shape} do not match activations {a.shape}")
        if self.scores.ndim != 2 or self.scores.shape[0] != a.shape[0]:
            raise ValueError(f"scores must be (N, K) with N={a.shape[0]}, got {self.scores.shape}")

    @property
    def probabilities(self) -> np.ndarray:
        """Softmax of the logits, (N, K)."""
        from .ops import softmax

        return softmax(self.scores)
