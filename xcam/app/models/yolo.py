"""ultralytics YOLO checkpoints (``.pt``: a pickled dict whose "model" / "ema" is the network, so they load
only with ``--trust-model``), as detectors for ``--target boxes``. The network is the checkpoint's
DetectionModel in float32 and eval mode; labels come from its ``names``, the input size from the training
``imgsz``; the input is RGB in [0, 1] (normalization "none"). ``detections`` turns its raw output (N, 4 + K, A)
(boxes as centre x, centre y, width, height in input pixels, then K class scores, for every anchor A, before
NMS) into the batched dict the core's ``Boxes`` target scores: {"boxes": (N, A, 4) x1 y1 x2 y2, "labels":
(N, A) the best class, "scores": (N, A) its score}."""

import os

from xcam.app.models.hints import Hints, attach, missing
from xcam.errors import XcamError

NEEDS = missing("yolo", "an ultralytics YOLO checkpoint")


def offline() -> None:
    """No network from ultralytics: offline mode (no hub, no font or asset downloads on import)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")


def is_checkpoint(obj) -> bool:
    """Whether ``obj`` (what torch.load read) is an ultralytics checkpoint: a dict whose "ema" or "model" is a
    module of the ultralytics package."""
    if not isinstance(obj, dict):
        return False
    net = obj.get("ema") or obj.get("model")
    return type(net).__module__.startswith("ultralytics.")


def load(obj, path):
    """The detector in an ultralytics checkpoint ``obj`` read from ``path``, with its ``Hints``."""
    net = obj.get("ema") or obj.get("model")
    head = net.model[-1] if hasattr(net, "model") and len(net.model) else None
    if type(head).__name__ not in ("Detect", "v10Detect", "YOLOEDetect", "WorldDetect"):
        raise XcamError(f"{str(path)!r} is an ultralytics {type(net).__name__} with a {type(head).__name__} head; "
                        "xcam explains detectors (a Detect head) with --target boxes")
    net = net.float().eval()
    for p in net.parameters():
        p.requires_grad_(True)
    names = getattr(net, "names", None) or {}
    labels = tuple(str(names[k]) for k in sorted(names)) if isinstance(names, dict) and names else None
    imgsz = (obj.get("train_args") or {}).get("imgsz")
    size = (int(imgsz), int(imgsz)) if isinstance(imgsz, int) else \
        (int(imgsz[0]), int(imgsz[1])) if isinstance(imgsz, (list, tuple)) and len(imgsz) == 2 else None
    return attach(net, Hints(size=size, normalize="none", labels=labels, source="ultralytics checkpoint"))


def is_detector(model) -> bool:
    """Whether ``model`` is an ultralytics model whose last module is a detection head (``...Detect``)."""
    return type(model).__module__.startswith("ultralytics.") and hasattr(model, "model") and \
        type(model.model[-1]).__name__.endswith("Detect")


def raw(output):
    """The (N, 4 + K, A) tensor of a Detect head's eval output ((y, x) or y)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def detections(output) -> dict:
    """The batched detections of a YOLO output (see the module docstring), differentiable in the scores."""
    import torch

    y = raw(output)
    xywh, cls = y[:, :4].transpose(1, 2), y[:, 4:].transpose(1, 2)   # (N, A, 4), (N, A, K)
    half = xywh[..., 2:] / 2
    boxes = torch.cat([xywh[..., :2] - half, xywh[..., :2] + half], -1)
    scores, labels = cls.max(-1)
    return {"boxes": boxes, "labels": labels, "scores": scores}
