"""The per-batch function of ``xcam explain``: decode -> preprocess -> capture -> maps -> staged files. The
same code runs in the local engine (decoding in a background thread pool, see ``engines.local``) and in each
Ray actor (``engines.ray``), so both give the same files and the same result lines.

A ``Plan`` is everything a worker needs besides the model; it is plain data, so it pickles to Ray actors.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from xcam.app.inputs.images import load_image, preprocess
from xcam.app.outputs import files, results
from xcam.errors import XcamError
from xcam.methods import get_method
from xcam.pipeline import compute_cam
from xcam.targets import Class, parse_target
from xcam.viz import feature_grid, overlay

TOP1_COLUMN = "top-1"  # the report column when each image is explained for its own top class
THUMB_SIDE = 128
MAP_SIZES = ("input", "layer")
MAP_DTYPES = ("float32", "float16")
PROBE_OPTIONS = ("output", "layer_output", "call", "reshape")  # capture options the probe takes too


@dataclass
class Plan:
    """What every batch is explained with: the layer, input size, methods, classes and output options."""

    out: str
    layer: str
    channels: int
    input_size: tuple
    normalize: object               # "imagenet", "none", "caffe" or ((means), (stds))
    methods: list
    classes: list | None            # class indices for every image, or None (each image's top-1)
    labels: list
    columns: list
    map_size: str = "input"         # "input": maps at the input size; "layer": at the layer's resolution
    map_dtype: str = "float32"
    overlays: bool = True
    features: bool = True
    thumbnails: bool = False        # small JPEGs for a paged report
    report: str = "single"          # "single" or "paged"
    alpha: float = 0.5
    colormap: str = "jet"
    capture_options: dict = field(default_factory=dict)  # passed to the adapter's capture as keywords
    target: str | None = None       # a --target spec ("segmentation:15"); None: the classes above
    root: str = "."                 # relative image paths are relative to this folder (the caller's cwd)


@dataclass
class Loaded:
    """One decoded image: its place in the run, the uint8 picture (kept only for overlays), its thumbnail
    (only for a paged report) and the preprocessed (H, W, C) input; or the error that kept it from being read."""

    index: int
    key: str
    path: str
    image: np.ndarray | None = None
    x: np.ndarray | None = None
    error: str | None = None
    thumb: np.ndarray | None = None


def load_one(plan: Plan, index: int, key: str, path: str) -> Loaded:
    """Decode and preprocess one image (thread-safe: no model involved)."""
    try:
        img = load_image(os.path.join(plan.root, path), name=path)
        x = preprocess([img], tuple(plan.input_size), plan.normalize, plan.channels)[0]
    except XcamError as exc:
        return Loaded(index, key, path, error=str(exc))
    thumb = thumbnail(img) if plan.thumbnails else None
    return Loaded(index, key, path, image=img if plan.overlays else None, x=x, thumb=thumb)


def load_batch(plan: Plan, items) -> list[Loaded]:
    """Decode and preprocess (index, key, path) items one after the other (each Ray actor does this)."""
    return [load_one(plan, i, k, p) for i, k, p in items]


def safe_name(text: str) -> str:
    """A label as a file-name part: letters, digits, '-' and '_' kept, anything else '_'."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(text))


class Worker:
    """Explains batches with one model: ``worker(batch_no, loaded) -> result lines``; the batch's files go to
    its staging folder (``results.commit`` moves them into place)."""

    def __init__(self, framework, model, plan: Plan):
        self.framework, self.model, self.plan = framework, model, plan
        self.methods = [get_method(m) for m in plan.methods]
        self.needs_grad = any(m.needs_gradients for m in self.methods)
        self.needs_head = any(m.needs_head for m in self.methods)
        self.needs_probe = any(m.needs_probe for m in self.methods)

    def __call__(self, batch_no: int, loaded: list[Loaded]) -> list[dict]:
        plan = self.plan
        stage = results.staging_dir(plan.out, batch_no)
        good = [item for item in loaded if item.error is None]
        lines = {item.index: {"index": item.index, "image": item.path, "error": item.error}
                 for item in loaded if item.error is not None}
        if good:
            for item, entry in zip(good, self._explain(stage, good)):
                lines[item.index] = entry
        return [lines[i] for i in sorted(lines)]

    def _explain(self, stage: Path, good: list[Loaded]) -> list[dict]:
        plan, fw = self.plan, self.framework
        batch = np.stack([item.x for item in good])
        layer, labels, classes = plan.layer, plan.labels, plan.classes
        target = parse_target(plan.target) if plan.target else None
        cap = fw.capture(self.model, batch, layer, targets=target, classes=classes, gradients=self.needs_grad,
                         head=self.needs_head, labels=labels, **plan.capture_options)
        output = {k: v for k, v in plan.capture_options.items() if k in PROBE_OPTIONS}
        probe = fw.probe(self.model, batch, layer, **output) if self.needs_probe else None
        size = tuple(plan.input_size) if plan.map_size == "input" else None
        maps = {m.name: compute_cam(cap, m, size=size, model_inputs=None if probe is None else probe.inputs,
                                    probe=probe) for m in self.methods}
        classifier = isinstance(cap.explained, Class)  # logits (N, K): predicted class and probabilities
        probs = cap.probabilities if classifier else None
        dtype = np.dtype(plan.map_dtype)
        entries = []
        for i, item in enumerate(good):
            key = item.key
            folder = stage / key
            folder.mkdir()
            top = int(probs[i].argmax()) if classifier else None
            entry = {"index": item.index, "key": key, "image": item.path,
                     "predicted": labels[top] if classifier else "-", "predicted_index": top,
                     "probabilities": {labels[c]: round(float(probs[i, c]), 6) for c in range(len(labels))}
                     if classifier else {},
                     "target_score": np.round(cap.target_scores[i].astype(float), 6).tolist(),
                     "channels": int(cap.activations.shape[1]), "maps": {}}
            if plan.features:
                files.write_png(folder / "features.png", feature_grid(cap.activations[i]))
                entry["features"] = f"{key}/features.png"
            if plan.thumbnails:
                files.write_jpeg(folder / "thumb.jpg", item.thumb)
                entry["thumbnail"] = f"{key}/thumb.jpg"
            for m in self.methods:
                entry["maps"][m.name] = {}
                for j, col in enumerate(plan.columns):
                    heat = maps[m.name][i, j] if classes is not None else maps[m.name][i]
                    label = col if classes is not None or target is not None else labels[int(cap.targets[i])]
                    stem = f"{m.name}_{safe_name(label)}"
                    record = {"class": label, "map": f"{key}/{stem}.npy"}
                    files.write_npy(folder / f"{stem}.npy", heat.astype(dtype))
                    if plan.overlays:
                        pic = overlay(item.image, heat, alpha=plan.alpha, colormap=plan.colormap)
                        files.write_png(folder / f"{stem}.png", pic)
                        record["overlay"] = f"{key}/{stem}.png"
                    entry["maps"][m.name][col] = record
            entries.append(entry)
        return entries


def thumbnail(rgb: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """The picture shrunk so its longer side is at most ``side`` (area interpolation)."""
    h, w = rgb.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale >= 1.0:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def run_batch(worker: Worker, batch_no: int, items) -> list[dict]:
    """Decode, preprocess and explain one batch of (index, key, path) items: the whole per-batch function."""
    return worker(batch_no, load_batch(worker.plan, items))
