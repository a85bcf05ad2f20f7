"""Which class each sample is explained for: parsing, defaults and range checks (one path for both adapters).

``requested`` turns what the user passed into an int array with ``TOP1`` where each sample's own top class
is wanted; once the logits are known, ``resolve`` checks the range and fills ``TOP1`` in.
"""

from collections.abc import Sequence

import numpy as np

from ..errors import XcamError

TOP1 = int(np.iinfo(np.int32).min)  # sentinel for "this sample's top-1 class"; no user index can equal it


def requested_targets(targets, batch: int) -> np.ndarray:
    """The user's ``targets`` as int64 (N,) (``TOP1`` where the top class is wanted).

    None -> every sample's top-1 class; an int -> that class for every sample; a sequence -> one class per
    sample, whose length must equal the batch. Negative indices are refused (by ``resolve``), as in the CLI.
    """
    if targets is None:
        return np.full(batch, TOP1, dtype=np.int64)
    if isinstance(targets, (int, np.integer)) and not isinstance(targets, bool):
        values = np.full(batch, int(targets), dtype=np.int64)
    elif isinstance(targets, (Sequence, np.ndarray)) and not isinstance(targets, str):
        values = np.asarray(targets)
        if values.ndim != 1 or not (np.issubdtype(values.dtype, np.integer) or values.size == 0):
            raise XcamError(f"targets must be None, an int or a sequence of ints, got {targets!r}")
        if len(values) != batch:
            raise XcamError(f"targets has {len(values)} entries but the batch has {batch} samples; "
                            "give one class per sample, or a single int for all")
        values = values.astype(np.int64)
    else:
        raise XcamError(f"targets must be None, an int or a sequence of ints, got {targets!r}")
    if (values == TOP1).any():
        raise XcamError(f"class index {TOP1} is out of range: class indices start at 0")
    return values


def requested_classes(classes, batch: int) -> np.ndarray:
    """Several classes explained for every sample: a non-empty sequence of ints -> (N, K) int64."""
    values = np.asarray(list(classes) if not isinstance(classes, np.ndarray) else classes)
    if values.ndim != 1 or values.size == 0 or not np.issubdtype(values.dtype, np.integer):
        raise XcamError(f"classes must be a non-empty sequence of ints, got {classes!r}")
    return np.broadcast_to(values.astype(np.int64), (batch, values.size)).copy()


def requested(targets, classes, batch: int) -> np.ndarray:
    """(N,) from ``targets`` or, when ``classes`` is given, (N, K): the classes wanted before the forward."""
    return requested_classes(classes, batch) if classes is not None else requested_targets(targets, batch)


def check_class_range(indices: np.ndarray, num_classes: int, labels: Sequence[str] | None = None) -> None:
    """Raise a one-line XcamError if any requested class is outside [0, num_classes) (``TOP1`` passes)."""
    wanted = np.asarray(indices)
    bad = wanted[((wanted < 0) | (wanted >= num_classes)) & (wanted != TOP1)]
    if bad.size:
        names = ""
        if labels:
            shown = ", ".join(f"{i}={name}" for i, name in enumerate(labels[:10]))
            names = f" ({shown}{', ...' if len(labels) > 10 else ''})"
        raise XcamError(f"class index {int(bad.flat[0])} is out of range: the model has {num_classes} classes, "
                        f"valid indices are 0..{num_classes - 1}{names}")


def resolve(requested_: np.ndarray, scores: np.ndarray, labels=None) -> np.ndarray:
    """Check the requested classes against the logits (N, K) and fill ``TOP1`` with each sample's argmax."""
    check_class_range(requested_, scores.shape[1], labels)
    top1 = np.asarray(scores).argmax(axis=1)
    if requested_.ndim == 2:
        top1 = top1[:, None]
    return np.where(requested_ == TOP1, top1, requested_).astype(np.int64)


def check_scores(scores: np.ndarray, softmax_skipped: bool = False) -> None:
    """The model's output must be logits (N, K): refuse other shapes and rows that are already probabilities
    (non-negative, summing to 1), which a gradient through the softmax would explain wrongly."""
    if scores.ndim != 2:
        raise XcamError(f"the model returns shape {tuple(scores.shape)}; xcam explains classifiers returning "
                        "logits (N, K)")
    if scores.shape[0] == 0:
        raise XcamError("the batch is empty (N = 0): give at least one input")
    if not np.isfinite(scores).all():
        raise XcamError("the model's outputs hold NaN or infinite values for these inputs")
    if not softmax_skipped and scores.shape[1] > 1 and (scores >= 0).all() and \
            np.allclose(scores.sum(1), 1.0, atol=1e-4):
        raise XcamError("the model's outputs are probabilities (each row sums to 1): xcam differentiates the "
                        "pre-softmax logits, so give a model whose last layer returns logits")
