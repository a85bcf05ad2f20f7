"""Targets as objects: what is explained, as one scalar per sample computed from the model's selected output.

A target is written once against ``TensorOps`` (``xcam.targets.tensor_ops``), so the same definition runs
inside PyTorch autograd, inside a compiled Keras step and on NumPy. It is batched: ``params(n)`` gives its
per-sample arrays (leading axis n: class indices, masks, references, boxes), the adapter hands them over as
tensors with rows aligned to the output's rows, and ``score(output, params, ops)`` returns (B,) (or (B, K)
for several classes per sample). No per-sample Python loop runs on the framework side, except ``Boxes`` on
torchvision's list-of-dicts output, which loops over the images because each has its own number of
detections.

After the forward, ``check`` validates the target against the output (NumPy, one-line errors) and ``resolve``
fixes what depended on it (each sample's top-1 class, a predicted segmentation mask), so that methods that
run the model again (Score-CAM, Ablation-CAM, pixel methods) score exactly the same thing. ``to_json``
describes the target for ``summary.json``.
"""

import inspect
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import XcamError
from .classes import TOP1, check_class_range, check_scores, requested_classes, requested_targets
from .tensor_ops import NumpyOps

SPACES = ("logit", "probability", "log-probability")


def _shape(x) -> tuple:
    return tuple(getattr(x, "shape", ()))


def _json_value(v):
    if v is None or isinstance(v, (str, bool, int, float)):
        return v
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    return np.asarray(v).tolist()


class Target:
    """Base class: one scalar per sample from the selected output (see the module docstring)."""

    kind = "target"
    whole_output = False  # True: the default output is the model's whole (structured) output
    resolved_first = False  # True: ``params`` need ``resolve`` on the output first (a compiled step's extra pass)

    def params(self, n: int) -> dict:
        """Per-sample arrays (leading axis ``n``) handed to ``score`` as tensors."""
        return {}

    def score(self, output, params: dict, ops):
        """(B,) scores (or (B, K)) from the selected output, written with ``ops``."""
        raise NotImplementedError

    def check(self, output, labels=None, softmax_skipped: bool = False) -> None:
        """Raise a one-line XcamError if the target does not fit the output (NumPy arrays)."""

    def resolve(self, output) -> "Target":
        """The target with everything that depended on the output fixed (NumPy output)."""
        return self

    def class_indices(self, n: int) -> np.ndarray:
        """(N,) or (N, K) int64: the class explained per sample, -1 where the target has no class."""
        return np.full(n, -1, dtype=np.int64)

    def as_probability(self) -> "Target":
        """The target scored as a probability (Score-CAM's default weighting); itself if it has no such form."""
        return self

    def column(self, j: int) -> "Target":
        """The j-th of several targets per sample (itself when there is one)."""
        return self

    @property
    def columns(self) -> int:
        """K for (N, K) scores, 0 for one score per sample."""
        return 0

    def key(self) -> tuple:
        """Static configuration (everything but ``params``): compiled steps are cached by it."""
        return (type(self).__name__,)

    def to_json(self) -> dict:
        """A JSON-serializable description of exactly what is explained."""
        return {"kind": self.kind}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_json().items() if k != "kind")
        return f"{type(self).__name__}({args})"


def _check_space(space: str) -> str:
    if space not in SPACES:
        raise XcamError(f"space={space!r} is not valid; choose one of: {', '.join(SPACES)}")
    return space


def _check_index(index):
    if index is None or (isinstance(index, (int, np.integer)) and not isinstance(index, bool)):
        return index
    if isinstance(index, (Sequence, np.ndarray)) and not isinstance(index, str):
        a = np.asarray(index)
        if a.ndim in (1, 2) and (np.issubdtype(a.dtype, np.integer) or a.size == 0):
            return a.astype(np.int64)
    raise XcamError("targets must be None, an int or a sequence of ints, a Target, or a spec such as "
                    f"'class:3', 'segmentation:15', 'binary'; got {index!r}")


class Class(Target):
    """y = f(x)[c] for a classifier's (N, K) output, in ``space`` "logit" (default), "probability" (softmax)
    or "log-probability". index: None (each sample's top-1 class), an int, or one int per sample;
    ``every``: several classes explained for every sample (scores (N, K))."""

    kind = "class"

    def __init__(self, index=None, space: str = "logit", *, every=None):
        self.index = _check_index(index)
        self.space = _check_space(space)
        self.every = None
        if every is not None:
            self.every = requested_classes(every, 1)[0]

    def _requested(self, n: int) -> np.ndarray:
        if self.every is not None:
            return np.broadcast_to(self.every, (n, self.every.size)).copy()
        if isinstance(self.index, np.ndarray) and self.index.ndim == 2:
            if len(self.index) != n:
                raise XcamError(f"targets has {len(self.index)} rows but the batch has {n} samples")
            return self.index
        return requested_targets(self.index, n)

    def params(self, n):
        """{"index": (N,) or (N, K) int64, ``TOP1`` where the top class is wanted}."""
        return {"index": self._requested(n)}

    def score(self, output, params, ops):
        """Gathers the class column of the logits / softmax / log-softmax."""
        shape = ops.shape(output)
        if len(shape) != 2:
            raise XcamError(f"a class target needs logits (N, K); the selected output has shape {shape} "
                            "(use Segmentation for (N, K, H, W), Binary or Regression for one value)")
        values = {"logit": lambda: output, "probability": lambda: ops.softmax(output, 1),
                  "log-probability": lambda: ops.log_softmax(output, 1)}[self.space]()
        index = params["index"]
        top1 = ops.argmax(output, 1)
        if self.columns:
            top1 = ops.reshape(top1, (-1, 1))
        index = ops.where(ops.equal(index, TOP1), top1, index)
        if shape[1] is not None:
            index = ops.clip(index, 0, shape[1] - 1)  # out-of-range is refused by ``check``
        return ops.take(values, index)

    def check(self, output, labels=None, softmax_skipped=False):
        """Logits (N, K), not probabilities, and every requested class in range."""
        if not hasattr(output, "shape"):
            raise XcamError(f"a class target needs logits (N, K); the selected output is a "
                            f"{type(output).__name__} (choose a tensor with output=)")
        scores = np.asarray(output)
        check_scores(scores, softmax_skipped)
        check_class_range(self._requested(scores.shape[0]), scores.shape[1], labels)

    def resolve(self, output):
        """Each sample's top-1 class filled in."""
        wanted = self._requested(np.shape(output)[0])
        top1 = np.asarray(output).argmax(axis=1)
        if wanted.ndim == 2:
            top1 = top1[:, None]
        return Class(np.where(wanted == TOP1, top1, wanted).astype(np.int64), self.space)

    def class_indices(self, n):
        """The classes (``TOP1`` until resolved)."""
        return self._requested(n)

    def as_probability(self):
        """The same classes, softmax probabilities."""
        t = Class(self.index, "probability")
        t.every = self.every
        return t

    def column(self, j):
        """The j-th class column of a resolved several-class target."""
        if isinstance(self.index, np.ndarray) and self.index.ndim == 2:
            return Class(self.index[:, j], self.space)
        return self

    @property
    def columns(self):
        """K when several classes are explained per sample."""
        if self.every is not None:
            return int(self.every.size)
        if isinstance(self.index, np.ndarray) and self.index.ndim == 2:
            return int(self.index.shape[1])
        return 0

    def key(self):
        """Space and whether there are several classes per sample."""
        return ("Class", self.space, self.columns)

    def to_json(self):
        """{"kind": "class", "index": ..., "space": ...} (index None: each sample's top-1)."""
        out = {"kind": self.kind, "index": _json_value(self.index), "space": self.space}
        if self.every is not None:
            out["every"] = _json_value(self.every)
        return out


class Finer(Target):
    r"""Finer-CAM's score (Zhang et al., Finer-CAM, CVPR 2025, arXiv:2501.11309; as pytorch-grad-cam 1.5.7's
    FinerWeightedTarget): with c the class of ``base`` (a Class target, default each sample's top-1) and J the
    classes ranked ``compare`` (default 1, 2, 3) by |y_j - y_c| (rank 0 is c itself; ranks beyond K-1 dropped),
    y = \sum_{j \in J} p_j (y_c - alpha y_j) / (\sum_{j \in J} p_j + 1e-9), p = softmax(y). The gradient also
    flows through p, as in the anchor. J is fixed from the first forward."""

    kind = "finer"
    resolved_first = True  # the compared classes are ranked on the output before the score is built

    def __init__(self, base=None, alpha: float = 1.0, compare=(1, 2, 3), *, main=None, others=None):
        self.base = base if isinstance(base, Class) else Class(base)
        if self.base.columns:
            raise XcamError("finercam explains one class per sample; give targets, not several classes")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not np.isfinite(alpha):
            raise XcamError(f"option alpha={alpha!r} is not valid; give a finite number (default 1.0)")
        compare = tuple(compare)
        if not compare or not all(isinstance(r, (int, np.integer)) and r >= 1 for r in compare):
            raise XcamError(f"option compare={compare!r} is not valid; give similarity ranks >= 1, e.g. (1, 2, 3)")
        self.alpha, self.compare, self.main, self.others = float(alpha), compare, main, others

    def params(self, n):
        """{"main": (N,) int64, "others": (N, J) int64} (before ``resolve``: the base's classes, no others)."""
        if self.main is None:
            return {"main": self.base._requested(n), "others": np.zeros((n, len(self.compare)), np.int64)}
        return {"main": self.main, "others": self.others}

    def score(self, output, params, ops):
        """The softmax-weighted mean of y_c - alpha y_j over the compared classes j."""
        main = params["main"]
        main = ops.where(ops.equal(main, TOP1), ops.argmax(output, 1), main)  # unresolved: a first pass's top-1
        yc = ops.reshape(ops.take(output, main), (-1, 1))
        yj = ops.take(output, params["others"])
        p = ops.take(ops.softmax(output, 1), params["others"])
        return ops.sum(p * (yc - self.alpha * yj), 1) / (ops.sum(p, 1) + 1e-9)

    def check(self, output, labels=None, softmax_skipped=False):
        """As a Class target, and at least two classes."""
        self.base.check(output, labels, softmax_skipped)
        if np.shape(output)[1] < 2:
            raise XcamError("finercam compares the target with other classes; the output has only one class")

    def resolve(self, output):
        """c filled in (top-1 where asked), and its compared classes ranked by |y_j - y_c| (stable order)."""
        y = np.asarray(output, np.float64)
        main = self.base.resolve(output).index
        yc = y[np.arange(len(y)), main]
        order = np.argsort(np.abs(y - yc[:, None]), axis=1, kind="stable")
        order = np.stack([row[row != c] for row, c in zip(order, main)])  # rank 0 is c itself
        ranks = [r - 1 for r in self.compare if r < y.shape[1]]
        return Finer(self.base, self.alpha, self.compare, main=main.astype(np.int64),
                     others=order[:, ranks].astype(np.int64))

    def class_indices(self, n):
        """The class c explained per sample."""
        return self.main if self.main is not None else self.base._requested(n)

    def key(self):
        """alpha and how many classes are compared."""
        return ("Finer", self.alpha, len(self.compare) if self.others is None else self.others.shape[1])

    def to_json(self):
        """{"kind": "finer", "index": ..., "alpha": ..., "compare": ..., "others": ...}."""
        return {"kind": self.kind, "index": _json_value(self.main if self.main is not None else self.base.index),
                "alpha": self.alpha, "compare": list(self.compare), "others": _json_value(self.others)}


def _one_value(output, name: str, index=None, ops=None):
    """(B,) from an output of shape (B,) or (B, 1), or column ``index`` of (B, D); with ``ops=None`` only the
    shape is checked."""
    shape = tuple(ops.shape(output) if ops is not None else np.shape(output))
    if index is not None:
        if len(shape) != 2:
            raise XcamError(f"{name} with an index needs an output (N, D); the selected output has shape {shape}")
        return None if ops is None else output[:, index]
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return None if ops is None else ops.reshape(output, (-1,))
    hint = " (give index= to pick a column)" if name == "Regression" else " (for K classes use Class)"
    raise XcamError(f"{name} needs one value per sample, (N,) or (N, 1); the selected output has shape "
                    f"{shape}{hint}")


class Binary(Target):
    """One-logit models: y = z (``positive=True``) or y = -z for the negative class; ``space="probability"``
    gives sigmoid(z) or 1 - sigmoid(z) = sigmoid(-z)."""

    kind = "binary"

    def __init__(self, positive: bool = True, space: str = "logit"):
        self.positive = bool(positive)
        if space not in ("logit", "probability"):
            raise XcamError(f"space={space!r} is not valid for Binary; choose one of: logit, probability")
        self.space = space

    def score(self, output, params, ops):
        """+-z, or its sigmoid."""
        z = _one_value(output, "Binary", ops=ops)
        z = z if self.positive else -z
        return ops.sigmoid(z) if self.space == "probability" else z

    def check(self, output, labels=None, softmax_skipped=False):
        """One logit per sample."""
        _one_value(np.asarray(output), "Binary")

    def class_indices(self, n):
        """1 for the positive class, 0 for the negative."""
        return np.full(n, int(self.positive), dtype=np.int64)

    def as_probability(self):
        """sigmoid(+-z)."""
        return Binary(self.positive, "probability")

    def key(self):
        """Sign and space."""
        return ("Binary", self.positive, self.space)

    def to_json(self):
        """{"kind": "binary", "positive": ..., "space": ...}."""
        return {"kind": self.kind, "positive": self.positive, "space": self.space}


class Regression(Target):
    """y = f(x): the output itself for (N,) or (N, 1) outputs, or its column ``index`` of (N, D)."""

    kind = "regression"

    def __init__(self, index: int | None = None):
        if index is not None and (not isinstance(index, (int, np.integer)) or isinstance(index, bool)):
            raise XcamError(f"Regression index must be None or an int, got {index!r}")
        self.index = None if index is None else int(index)

    def score(self, output, params, ops):
        """The value (or column)."""
        return _one_value(output, "Regression", self.index, ops)

    def check(self, output, labels=None, softmax_skipped=False):
        """One value per sample, or a column in range."""
        out = np.asarray(output)
        _one_value(out, "Regression", self.index)
        if self.index is not None and not 0 <= self.index < out.shape[1]:
            raise XcamError(f"Regression index {self.index} is out of range: the output has {out.shape[1]} "
                            f"columns, valid indices are 0..{out.shape[1] - 1}")

    def key(self):
        """The column."""
        return ("Regression", self.index)

    def to_json(self):
        """{"kind": "regression", "index": ...}."""
        return {"kind": self.kind, "index": self.index}


REDUCTIONS = ("sum", "mean")


class Segmentation(Target):
    """Class maps (N, K, H, W), or (N, K, D, H, W) for volumes: y = reduce over pixels (voxels) of
    f(x)[cls] * M, reduce "sum" (default) or "mean" (divided by sum M). mask: None (every pixel), "predicted"
    (pixels whose argmax class is ``cls``, fixed from the first forward, as pytorch-grad-cam's
    SemanticSegmentationTarget), or an array (H, W) / (N, H, W), for volumes (N, D, H, W). cls: an int or one
    per sample. Keras class maps (N, H, W, K) / (N, D, H, W, K) are moved channels-first by the adapter."""

    kind = "segmentation"

    def __init__(self, cls, mask=None, reduce: str = "sum"):
        self.cls = _check_index(cls)
        if self.cls is None or (isinstance(self.cls, np.ndarray) and self.cls.ndim != 1):
            raise XcamError(f"Segmentation needs a class index (an int or one per sample), got {cls!r}")
        if reduce not in REDUCTIONS:
            raise XcamError(f"reduce={reduce!r} is not valid; choose one of: {', '.join(REDUCTIONS)}")
        if isinstance(mask, str) and mask != "predicted":
            raise XcamError(f"mask={mask!r} is not valid; give None, 'predicted' or an array (H, W)")
        if mask is not None and not isinstance(mask, str):
            mask = np.asarray(mask, dtype=np.float32)
            if mask.ndim not in (2, 3, 4):
                raise XcamError(f"a segmentation mask must be (H, W), (N, H, W) or (N, D, H, W), got shape "
                                f"{mask.shape}")
        self.mask, self.reduce = mask, reduce

    def params(self, n):
        """{"cls": (N,) int64, "mask": (N, H, W) or (N, D, H, W) float32 when an array was given}."""
        p = {"cls": requested_targets(self.cls, n)}
        if isinstance(self.mask, np.ndarray):
            m = self.mask
            if m.ndim >= 3 and len(m) != n:
                raise XcamError(f"the segmentation mask has {len(m)} entries but the batch has {n} samples")
            p["mask"] = np.broadcast_to(m, (n, *m.shape[-max(2, m.ndim - 1):])).astype(np.float32)
        return p

    def score(self, output, params, ops):
        """reduce(f(x)[cls] * M)."""
        shape = ops.shape(output)
        if len(shape) not in (4, 5):
            raise XcamError(f"a segmentation target needs class maps (N, K, H, W) or (N, K, D, H, W); the "
                            f"selected output has shape {shape}")
        cls = params["cls"]
        if shape[1] is not None:
            cls = ops.clip(cls, 0, shape[1] - 1)  # out-of-range is refused by ``check``
        maps = ops.take(output, cls)                                     # (B, *S)
        axes = tuple(range(1, len(shape) - 1))
        if self.mask is None:
            return ops.sum(maps, axes) if self.reduce == "sum" else ops.mean(maps, axes)
        if isinstance(self.mask, str):  # predicted, in the same forward
            mask = ops.to_float(ops.equal(ops.argmax(output, 1), ops.reshape(cls, (-1,) + (1,) * len(axes))))
        else:
            mask = params["mask"]
        total = ops.sum(maps * mask, axes)
        return total if self.reduce == "sum" else total / ops.maximum(ops.sum(mask, axes), 1.0)

    def check(self, output, labels=None, softmax_skipped=False):
        """Class maps (N, K, H, W), the class in range, the mask's size equal to (H, W)."""
        shape = _shape(output)
        if len(shape) not in (4, 5):
            found = f"has shape {shape}" if shape else f"is a {type(output).__name__}"
            raise XcamError(f"a segmentation target needs class maps (N, K, H, W) or (N, K, D, H, W); the "
                            f"selected output {found}")
        check_class_range(requested_targets(self.cls, shape[0]), shape[1], labels)
        if isinstance(self.mask, np.ndarray):
            spatial = self.mask.shape[-max(2, self.mask.ndim - 1):]
            if tuple(spatial) != tuple(shape[2:]):
                raise XcamError(f"the segmentation mask is {'x'.join(map(str, spatial))} but the class maps are "
                                f"{'x'.join(map(str, shape[2:]))}")

    def resolve(self, output):
        """A predicted mask computed from the output's argmax."""
        if isinstance(self.mask, str):
            cls = requested_targets(self.cls, np.shape(output)[0])
            out = np.asarray(output)
            mask = (out.argmax(axis=1) == cls.reshape(-1, *[1] * (out.ndim - 2))).astype(np.float32)
            return Segmentation(self.cls, mask, self.reduce)
        return self

    def class_indices(self, n):
        """The segmentation class per sample."""
        return requested_targets(self.cls, n)

    def key(self):
        """Mask kind and reduction."""
        kind = None if self.mask is None else "predicted" if isinstance(self.mask, str) else "array"
        return ("Segmentation", kind, self.reduce)

    def to_json(self):
        """{"kind": "segmentation", "class": ..., "mask": None | "predicted" | "array HxW, P pixels", ...}."""
        mask = self.mask
        if isinstance(mask, np.ndarray):
            mask = f"array {mask.shape[-2]}x{mask.shape[-1]}, {int((mask > 0).sum())} pixels"
        return {"kind": self.kind, "class": _json_value(self.cls), "mask": mask, "reduce": self.reduce}


METRICS = ("cosine", "dot")


class Similarity(Target):
    """Embeddings (N, D) (or (N, ...) flattened): y = cos(f(x), r) (``metric="cosine"``) or f(x) . r
    (``"dot"``); ``reference``: (D,) for every sample or (N, D)."""

    kind = "similarity"

    def __init__(self, reference, metric: str = "cosine"):
        self.reference = np.asarray(reference, dtype=np.float32)
        if self.reference.ndim == 0 or self.reference.size == 0:
            raise XcamError(f"the similarity reference must be a vector (D,) or (N, D), got shape "
                            f"{self.reference.shape}")
        if metric not in METRICS:
            raise XcamError(f"metric={metric!r} is not valid; choose one of: {', '.join(METRICS)}")
        self.metric = metric

    def _dim(self) -> int:
        return int(self.reference.shape[-1]) if self.reference.ndim <= 2 else int(np.prod(self.reference.shape[1:]))

    def params(self, n):
        """{"reference": (N, D) float32}."""
        r = self.reference
        if r.ndim == 1:
            return {"reference": np.broadcast_to(r, (n, r.size)).copy()}
        if len(r) != n:
            raise XcamError(f"the similarity reference has {len(r)} rows but the batch has {n} samples")
        return {"reference": r.reshape(n, -1)}

    def score(self, output, params, ops):
        """cos(e, r) = e . r / (|e| |r|) (norms at least 1e-12), or e . r."""
        shape = ops.shape(output)
        if len(shape) < 2 or (None not in shape[1:] and int(np.prod(shape[1:])) != self._dim()):
            self.check(np.zeros((0, *[s or 0 for s in shape[1:]])))
        e = ops.reshape(output, (-1, self._dim()))
        r = params["reference"]
        dot = ops.sum(e * r, 1)
        if self.metric == "dot":
            return dot
        norm = ops.maximum(ops.sqrt(ops.sum(e * e, 1)) * ops.sqrt(ops.sum(r * r, 1)), 1e-12)
        return dot / norm

    def check(self, output, labels=None, softmax_skipped=False):
        """The embedding's size equals the reference's."""
        shape = _shape(output)
        if len(shape) < 2 or int(np.prod(shape[1:])) != self._dim():
            raise XcamError(f"the similarity reference has {self._dim()} values but the selected output has "
                            f"shape {shape}; give a reference of the embedding's size")

    def key(self):
        """The metric and the embedding size."""
        return ("Similarity", self.metric, self._dim())

    def to_json(self):
        """{"kind": "similarity", "metric": ..., "dim": D, "reference_norm": |r|}."""
        return {"kind": self.kind, "metric": self.metric, "dim": self._dim(),
                "reference_norm": round(float(np.linalg.norm(self.reference)), 6)}


_BOX_KEYS = ("boxes", "labels", "scores")


def _is_detection(d) -> bool:
    return isinstance(d, Mapping) and all(k in d for k in _BOX_KEYS)


class Boxes(Target):
    """Detectors: for each wanted box b with label l, the detection d of the same label with the highest IoU;
    if IoU(b, d) >= ``iou``, y += IoU(b, d) + score(d) (pytorch-grad-cam's FasterRCNNBoxScoreTarget, which
    takes the best IoU over all labels and a strict >). Boxes are (x1, y1, x2, y2).

    boxes: (J, 4) for every image or a list with one (J_i, 4) per image; labels: (J,) or one list per image.
    The output is torchvision's (a list of dicts with "boxes", "labels", "scores", one per image: scored image
    by image, because each has its own number of detections) or a dict of batched, padded tensors
    {"boxes": (N, D, 4), "labels": (N, D), "scores": (N, D)} (scored in one batch; pad labels with -1).
    Adapt another detector with ``output=`` (a callable returning one of these)."""

    kind = "boxes"
    whole_output = True

    def __init__(self, boxes, labels, iou: float = 0.5):
        per_image = isinstance(boxes, (list, tuple)) and len(boxes) > 0 and np.ndim(boxes[0]) == 2
        box_list = [np.asarray(b, np.float32).reshape(-1, 4) for b in boxes] if per_image else \
            [np.asarray(boxes, np.float32).reshape(-1, 4)]
        label_list = [np.asarray(lab, np.int64).reshape(-1) for lab in labels] if per_image else \
            [np.asarray(labels, np.int64).reshape(-1)]
        if len(box_list) != len(label_list) or any(len(b) != len(lab) for b, lab in zip(box_list, label_list)):
            raise XcamError("Boxes needs one label per box (boxes (J, 4) with labels (J,), per image)")
        self.per_image, self.boxes, self.labels, self.iou = per_image, box_list, label_list, float(iou)

    def params(self, n):
        """{"boxes": (N, J, 4) float32, "labels": (N, J) int64, padded with label -1}."""
        boxes, labels = (self.boxes, self.labels) if self.per_image else (self.boxes * n, self.labels * n)
        if len(boxes) != n:
            raise XcamError(f"Boxes has boxes for {len(boxes)} images but the batch has {n}")
        j = max(1, max(len(b) for b in boxes))
        pb, pl = np.zeros((n, j, 4), np.float32), np.full((n, j), -1, np.int64)
        for i, (b, lab) in enumerate(zip(boxes, labels)):
            pb[i, :len(b)], pl[i, :len(lab)] = b, lab
        return {"boxes": pb, "labels": pl}

    def score(self, output, params, ops):
        """Sum over wanted boxes of IoU + score of the matching detection (0 without a match)."""
        if _is_detection(output):
            return self._batched(output["boxes"], output["labels"], output["scores"], params["boxes"],
                                 params["labels"], ops)
        rows = []
        for i, det in enumerate(output):  # torchvision: one dict per image, D_i detections each
            d = ops.shape(det["scores"])[0]
            one = self._batched(ops.reshape(det["boxes"], (1, d, 4)), ops.reshape(det["labels"], (1, d)),
                                ops.reshape(det["scores"], (1, d)), params["boxes"][i:i + 1],
                                params["labels"][i:i + 1], ops)
            rows.append(one)
        return ops.concat(rows, 0)

    def _batched(self, det_boxes, det_labels, det_scores, boxes, labels, ops):
        d = ops.shape(det_scores)[1]
        if d == 0:
            return ops.sum(det_scores, 1)  # no detection: 0
        b = ops.reshape(boxes, (-1, ops.shape(boxes)[1], 1, 4))
        det = ops.reshape(det_boxes, (-1, 1, d, 4))
        w = ops.maximum(ops.minimum(b[..., 2], det[..., 2]) - ops.maximum(b[..., 0], det[..., 0]), 0.0)
        h = ops.maximum(ops.minimum(b[..., 3], det[..., 3]) - ops.maximum(b[..., 1], det[..., 1]), 0.0)
        inter = w * h
        area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
        area_d = (det[..., 2] - det[..., 0]) * (det[..., 3] - det[..., 1])
        iou = inter / ops.maximum(area_b + area_d - inter, 1e-12)                     # (B, J, D)
        same = ops.equal(ops.to_float(ops.reshape(labels, (-1, ops.shape(labels)[1], 1))),
                         ops.to_float(ops.reshape(det_labels, (-1, 1, d))))
        masked = ops.where(same, iou, -1.0)
        best = ops.max(masked, 2)                                                      # (B, J)
        matched = ops.take(det_scores, ops.argmax(masked, 2))                          # (B, J)
        return ops.sum(ops.where(best >= self.iou, best + matched, 0.0), 1)

    def check(self, output, labels=None, softmax_skipped=False):
        """A detector's output: a list of per-image dicts, or a dict of batched tensors."""
        ok = _is_detection(output) or (isinstance(output, (list, tuple)) and len(output) > 0
                                        and all(_is_detection(d) for d in output))
        if not ok:
            raise XcamError("a Boxes target needs a detector's output: a list of dicts (one per image) with "
                            "'boxes', 'labels', 'scores' (torchvision), or a dict of batched tensors; the "
                            f"selected output is a {type(output).__name__} (adapt it with output=)")

    def key(self):
        """The IoU threshold."""
        return ("Boxes", self.iou)

    def to_json(self):
        """{"kind": "boxes", "boxes": ..., "labels": ..., "iou": ...}."""
        boxes = [b.tolist() for b in self.boxes] if self.per_image else self.boxes[0].tolist()
        labels = [lab.tolist() for lab in self.labels] if self.per_image else self.labels[0].tolist()
        return {"kind": self.kind, "boxes": boxes, "labels": labels, "iou": self.iou}


class Custom(Target):
    """Any callable: ``fn(output)`` (framework tensors in, (N,) out) or ``fn(output, ops)`` (written with
    ``TensorOps``, so it runs on both frameworks). ``name`` is what ``summary.json`` records."""

    kind = "custom"

    def __init__(self, fn, name: str | None = None):
        if not callable(fn):
            raise XcamError(f"a custom target must be callable, got {fn!r}")
        self.fn, self.name = fn, name or getattr(fn, "__name__", type(fn).__name__)
        try:
            self._with_ops = len(inspect.signature(fn).parameters) >= 2
        except (TypeError, ValueError):
            self._with_ops = False

    def score(self, output, params, ops):
        """fn(output) or fn(output, ops)."""
        return self.fn(output, ops) if self._with_ops else self.fn(output)

    def key(self):
        """The callable's identity."""
        return ("Custom", id(self.fn))

    def to_json(self):
        """{"kind": "custom", "name": ...}."""
        return {"kind": self.kind, "name": self.name}


KINDS = ("class", "binary", "regression", "segmentation")


def parse_target(spec: str) -> Target:
    """A target from a short spec (the CLI's ``--target``): "class" (top-1), "class:281", "class:281:probability",
    "binary", "binary:negative", "regression", "regression:2", "segmentation:15", "segmentation:15:predicted"."""
    parts = [p.strip() for p in str(spec).split(":")]
    kind, args = parts[0].lower(), parts[1:]

    def bad(why: str):
        return XcamError(f"target {spec!r}: {why}; valid forms: class, class:281, class:281:probability, binary, "
                         "binary:negative, regression, regression:2, segmentation:15, segmentation:15:predicted")

    def integer(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise bad(f"{text!r} is not an integer") from None

    if kind == "class" and len(args) <= 2:
        index = integer(args[0]) if args and args[0] not in ("", "top1") else None
        return Class(index, args[1] if len(args) > 1 else "logit")
    if kind == "binary" and len(args) <= 1:
        if args and args[0] not in ("positive", "negative"):
            raise bad(f"{args[0]!r} is neither positive nor negative")
        return Binary(not args or args[0] == "positive")
    if kind == "regression" and len(args) <= 1:
        return Regression(integer(args[0]) if args else None)
    if kind == "segmentation" and 1 <= len(args) <= 3:
        mask = args[1] if len(args) > 1 and args[1] not in ("", "all") else None
        return Segmentation(integer(args[0]), mask, args[2] if len(args) > 2 else "sum")
    if kind not in KINDS:
        raise bad(f"unknown kind {kind!r}")
    raise bad("wrong number of parts")


def as_target(targets=None, classes=None) -> Target:
    """The user's ``targets`` as a Target: None (each sample's top-1 class), an int, one int per sample, a
    spec string (``parse_target``), a Target, or a callable (``Custom``); ``classes``: several classes for every
    sample (a Class target)."""
    if classes is not None:
        space = targets.space if isinstance(targets, Class) else "logit"
        if targets is not None and not isinstance(targets, Class):
            raise XcamError("classes= explains several classes of a classifier; give either targets or classes")
        return Class(space=space, every=classes)
    if isinstance(targets, Target):
        return targets
    if isinstance(targets, str):
        try:
            return parse_target(targets)
        except XcamError as exc:
            raise XcamError("targets must be None, an int or a sequence of ints, a Target, or a spec such as "
                            f"'class:3', 'segmentation:15', 'binary'; {exc}") from None
    if callable(targets):
        return Custom(targets)
    return Class(targets)


def batch_params(target: Target, n: int, samples=None) -> dict:
    """``target.params(n)`` with rows picked by ``samples`` (row b belongs to input sample ``samples[b]``)."""
    p = target.params(n)
    return p if samples is None else {k: v[np.asarray(samples)] for k, v in p.items()}


def check_rows(target: Target, output, n: int, samples=None, softmax_skipped: bool = False) -> None:
    """``target.check`` on the output (NumPy) of rows that belong to inputs ``samples`` of a batch of ``n`` (row b
    to input ``samples[b]``; None: the batch itself): a class target is checked with the classes of those rows
    (range, logits); another target only on the batch itself."""
    if samples is None or not isinstance(target, Class) or not hasattr(output, "shape"):
        if samples is None or isinstance(target, Class):
            target.check(output, softmax_skipped=softmax_skipped)
        return
    scores = np.asarray(output)
    check_scores(scores, softmax_skipped)
    check_class_range(batch_params(target, n, samples)["index"], scores.shape[1])


def evaluate(target: Target, output, samples=None, n: int | None = None) -> np.ndarray:
    """The target's scores on a NumPy output (rows belonging to ``samples`` of a batch of ``n``)."""
    rows = len(output) if not isinstance(output, Mapping) else len(output["scores"])
    n = n if n is not None else rows
    params = batch_params(target, n, samples)
    return np.asarray(target.score(output, params, NumpyOps()), dtype=np.float64)
