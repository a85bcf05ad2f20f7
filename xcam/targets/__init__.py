"""What is explained: targets as objects (``kinds``: Class, Binary, Regression, Segmentation, Boxes, Similarity,
Custom), written once against a tiny tensor interface (``tensor_ops``) that each adapter supplies; which model
output they see (``outputs``); and the class-index parsing and checks of classifiers (``classes``).

``xcam.targets.TOP1``, ``requested``, ``resolve``, ``check_scores`` ... keep working as before.
"""

from .classes import TOP1, check_class_range, check_scores, requested, requested_classes, requested_targets, resolve
from .kinds import (
    Binary,
    Boxes,
    Class,
    Custom,
    Finer,
    Regression,
    Segmentation,
    Similarity,
    Target,
    as_target,
    batch_params,
    check_rows,
    evaluate,
    parse_target,
)
from .outputs import describe, entries, is_tensor, select_output
from .tensor_ops import NumpyOps, TensorOps

__all__ = ["TOP1", "Binary", "Boxes", "Class", "Custom", "Finer", "NumpyOps",
           "Regression", "Segmentation", "Similarity",
           "Target", "TensorOps", "as_target", "batch_params", "check_class_range", "check_rows", "check_scores",
           "describe", "entries", "evaluate", "is_tensor", "parse_target", "requested", "requested_classes",
           "requested_targets", "resolve", "select_output"]
