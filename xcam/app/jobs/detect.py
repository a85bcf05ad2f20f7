"""``xcam explain --target boxes...`` on an ultralytics YOLO detector: one map per box. The boxes are the
model's own detections (``boxes``: score >= 0.25; ``boxes:0.1``: another threshold; NMS at IoU 0.45, at most
``MAX_BOXES`` per image, best first) or a JSON file (``boxes:FILE.json``: a list with one entry per image, or an
object keyed by image file name or stem; an entry is a list of [x1, y1, x2, y2, label] in the image's own
pixels). Each box is explained with the core's ``Boxes`` target (IoU with the best detection of its label plus
that detection's score) on the model's raw pre-NMS anchors (``xcam.app.models.yolo.detections``).

Written: OUT/summary.json (settings; per image its boxes in input and image pixels, label, score and, per
method, one record per box), OUT/KEY/METHOD_boxJ.npy (the map at the input size) and, unless --no-overlays,
OUT/KEY/METHOD_boxJ.png (the overlay with the box drawn)."""

import json
import sys
from pathlib import Path

import cv2
import numpy as np

from xcam.app.inputs.images import load_image, preprocess
from xcam.app.inputs.sources import expand_images
from xcam.app.models import yolo
from xcam.app.models.hints import hints_of
from xcam.app.outputs import files
from xcam.errors import XcamError
from xcam.targets import Boxes
from xcam.viz import overlay

DEFAULT_SCORE, NMS_IOU, MAX_BOXES = 0.25, 0.45, 20


def is_boxes(spec) -> bool:
    """Whether a --target spec asks for boxes (``boxes``, ``boxes:SCORE``, ``boxes:FILE.json``)."""
    return isinstance(spec, str) and spec.split(":", 1)[0].strip().lower() == "boxes"


def parse(spec: str) -> dict:
    """{"score": float} or {"file": path} from boxes, boxes:SCORE, boxes:FILE.json."""
    rest = spec.split(":", 1)[1].strip() if ":" in spec else ""
    if not rest:
        return {"score": DEFAULT_SCORE}
    try:
        score = float(rest)
    except ValueError:
        if not rest.lower().endswith(".json"):
            raise XcamError(f"target {spec!r}: give boxes, boxes:SCORE (0.25) or boxes:FILE.json") from None
        return {"file": rest}
    if not 0 <= score <= 1:
        raise XcamError(f"target {spec!r}: the score threshold must be in [0, 1]")
    return {"score": score}


def read_file(path, names: list[str]) -> list[np.ndarray]:
    """(J, 5) arrays [x1, y1, x2, y2, label], one per image, from a boxes file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise XcamError(f"cannot read boxes file {str(path)!r}: {exc}") from None
    if isinstance(data, list):
        if len(data) != len(names):
            raise XcamError(f"the boxes file lists {len(data)} entries but {len(names)} images were given")
        entries = data
    elif isinstance(data, dict):
        entries = []
        for name in names:
            p = Path(name)
            if p.name not in data and p.stem not in data:
                raise XcamError(f"the boxes file has no entry for {p.name!r} (keys: file name or stem)")
            entries.append(data.get(p.name, data.get(p.stem)))
    else:
        raise XcamError("the boxes file must hold a list (one entry per image) or an object keyed by image name")
    out = []
    for name, entry in zip(names, entries):
        arr = np.asarray(entry, np.float64)
        if arr.ndim == 1 and arr.size == 5:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != 5 or (arr.size and np.any(arr[:, 2:4] <= arr[:, :2])):
            raise XcamError(f"boxes of {Path(name).name!r} must be [x1, y1, x2, y2, label] (x2 > x1, y2 > y1) or "
                            f"a list of them, got {entry!r}")
        out.append(arr)
    return out


def own_boxes(model, x, score: float):
    """The model's detections of one preprocessed image (1, 3, H, W): (J, 5) [x1, y1, x2, y2, label] in input
    pixels and their (J,) scores, NMS per class, best first."""
    import torch
    import torchvision

    with torch.no_grad():
        det = yolo.detections(model(torch.from_numpy(x).to(next(model.parameters()).device)))
    boxes, labels, scores = det["boxes"][0], det["labels"][0], det["scores"][0]
    keep = scores >= score
    boxes, labels, scores = boxes[keep], labels[keep], scores[keep]
    kept = torchvision.ops.batched_nms(boxes, scores, labels, NMS_IOU)[:MAX_BOXES]
    rows = torch.cat([boxes[kept], labels[kept, None].to(boxes.dtype)], 1)
    return rows.cpu().numpy().astype(np.float64), scores[kept].cpu().numpy()


def _layer(model, layer):
    """--layer, else the Detect head's highest-resolution input (YOLOv8n: model.15): every box's score reaches
    it (the coarser heads are computed from it)."""
    if layer:
        return layer
    head = model.model[-1]
    first = head.f[0] if isinstance(head.f, (list, tuple)) else head.f
    return f"model.{first if first >= 0 else len(model.model) + first}"


def _draw(image, heat, box, alpha, colormap):
    pic = overlay(image, heat, alpha=alpha, colormap=colormap).copy()
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    cv2.rectangle(pic, (x1, y1), (x2, y2), (255, 255, 255), max(1, round(min(pic.shape[:2]) / 200)))
    return pic


def run(args, framework, model, labels=None) -> int:
    """The detection job of ``xcam explain`` (``args`` as the CLI parsed them)."""
    if not yolo.is_detector(model):
        raise XcamError("--target boxes is for ultralytics YOLO detectors (a .pt checkpoint with --trust-model)")
    if list(args.classes) != ["top1"]:
        raise XcamError("give either --target or --classes, not both")
    how = parse(args.target)
    hints = hints_of(model)
    size = args.input_size or hints.size or 640
    hw = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if hw[0] % 32 or hw[1] % 32:
        raise XcamError(f"--input-size {hw[0]}x{hw[1]}: a YOLO detector takes sides that are multiples of 32")
    normalize = args.normalize or "none"
    labels = list(labels or hints.labels or [])
    names = expand_images(args.images)
    given = read_file(how["file"], names) if "file" in how else None
    layer = _layer(model, args.layer)
    out = Path(args.out)
    files.check_new_dir(out, args.overwrite)
    log = None if args.quiet else sys.stderr
    entries = []
    with files.staged_dir(out, args.overwrite) as stage:
        for index, name in enumerate(names):
            image = load_image(name)
            h, w = image.shape[:2]
            sx, sy = hw[1] / w, hw[0] / h
            x = np.ascontiguousarray(preprocess([image], hw, normalize).transpose(0, 3, 1, 2))
            if given is not None:
                rows = given[index] * np.array([sx, sy, sx, sy, 1.0])
                scores = [None] * len(rows)
            else:
                rows, scores = own_boxes(model, x, how["score"])
            rows = rows.astype(np.float32)   # the values Boxes scores, written to the summary as they are
            key = f"{index:04d}_{Path(name).stem}"
            folder = stage / key
            folder.mkdir()
            entry = {"index": index, "key": key, "image": name, "boxes": [], "maps": {}}
            for row, score in zip(rows, scores):
                label = int(row[4])
                entry["boxes"].append({
                    "box": [float(v) for v in row[:4]],
                    "box_image": [round(float(v), 3) for v in row[:4] / np.array([sx, sy, sx, sy])],
                    "label": label, "class": labels[label] if 0 <= label < len(labels) else str(label),
                    "score": None if score is None else round(float(score), 6)})
            for method in args.methods:
                entry["maps"][method] = {}
                if not len(rows):
                    continue
                target = Boxes([r[None, :4] for r in rows], [[int(r[4])] for r in rows])
                maps = framework.adapter.cam(model, np.repeat(x, len(rows), 0), layer, method, targets=target,
                                             output=yolo.detections, size=hw)
                for j, row in enumerate(rows):
                    stem = f"{method}_box{j}"
                    files.write_npy(folder / f"{stem}.npy", maps[j].astype(np.dtype(args.map_dtype)))
                    record = {"box": j, "map": f"{key}/{stem}.npy"}
                    if not args.no_overlays:
                        heat = cv2.resize(maps[j], (w, h), interpolation=cv2.INTER_LINEAR)
                        files.write_png(folder / f"{stem}.png",
                                        _draw(image, heat, row[:4] / np.array([sx, sy, sx, sy]), 0.5, "jet"),
                                        photo=True)
                        record["overlay"] = f"{key}/{stem}.png"
                    entry["maps"][method][f"box{j}"] = record
            entries.append(entry)
            if log:
                print(f"xcam: {name}: {len(rows)} boxes", file=log)
        summary = {"model": str(args.model), "framework": framework.name, "layer": layer, "input_size": list(hw),
                   "normalize": normalize, "target": {"kind": "boxes", **how, "iou": 0.5, "nms_iou": NMS_IOU,
                                                       "max_boxes": MAX_BOXES},
                   "methods": list(args.methods), "labels": labels, "images": entries}
        files.write_json(stage / "summary.json", summary)
    if log:
        print(f"xcam: wrote {out / 'summary.json'} ({len(entries)} images)", file=log)
    return 0

