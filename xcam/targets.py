"""Which class each sample is explained for: parsing, defaults and range checks (shared by both adapters)."""

from collections.abc import Sequence

import numpy as np

from .errors import XcamError

TOP1 = -1  # sentinel: "this sample's own top-1 class", resolved once the logits are known


def requested_targets(targets, batch: int) -> np.ndarray:
    """Turn the user's ``targets`` into an int64 array of shape (N,) (TOP1 where the top class is wanted).

    None -> every sample's top-1 class; an int -> that class for every sample; a sequence -> one class per
    sample, whose length must equal the batch.
    """
    if targets is None:
        return np.full(batch, TOP1, dtype=np.int64)
    if isinstance(targets, (int, np.integer)) and not isinstance(targets, bool):
        return np.full(batch, int(targets), dtype=np.int64)
    if isinstance(targets, (Sequence, np.ndarray)) and not isinstance(targets, str):
        values = np.asarray(targets)
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
            raise XcamError(f"targets must be None, an int or a sequence of ints, got {targets!r}")
        if len(values) != batch:
            raise XcamError(f"targets has {len(values)} entries but the batch has {batch} samples; "
                            "give one class per sample, or a single int for all")
        return values.astype(np.int64)
    raise XcamError(f"targets must be None, an int or a sequence of ints, got {targets!r}")


def requested_classes(classes) -> np.ndarray:
    """Several classes explained for every sample: a non-empty sequence of ints -> (K,) int64."""
    values = np.asarray(list(classes) if not isinstance(classes, np.ndarray) else classes)
    if values.ndim != 1 or values.size == 0 or not np.issubdtype(values.dtype, np.integer):
        raise XcamError(f"classes must be a non-empty sequence of ints, got {classes!r}")
    return values.astype(np.int64)


def check_class_range(indices: np.ndarray, num_classes: int, labels: Sequence[str] | None = None,
                      allow_top1: bool = False) -> None:
    """Raise a one-line XcamError if any requested class is outside [0, num_classes) (TOP1 passes if allowed)."""
    wanted = np.asarray(indices)
    outside = (wanted < 0) | (wanted >= num_classes)
    bad = wanted[outside & (wanted != TOP1)] if allow_top1 else wanted[outside]
    if bad.size:
        names = ""
        if labels:
            shown = ", ".join(f"{i}={name}" for i, name in enumerate(labels[:10]))
            names = f" ({shown}{', ...' if len(labels) > 10 else ''})"
        raise XcamError(f"class index {int(bad[0])} is out of range: the model has {num_classes} classes, "
                        f"valid indices are 0..{num_classes - 1}{names}")


def resolve_targets(requested: np.ndarray, logits: np.ndarray, labels=None) -> np.ndarray:
    """Check the requested classes against the logits (N, K) and fill in TOP1 with each sample's argmax."""
    check_class_range(requested, logits.shape[1], labels, allow_top1=True)
    top1 = np.asarray(logits).argmax(axis=1)
    if requested.ndim == 2:
        return np.where(requested == TOP1, top1[:, None], requested).astype(np.int64)
    return np.where(requested == TOP1, top1, requested).astype(np.int64)
