"""The per-batch function of ``xcam explain``: decode -> preprocess -> capture -> maps -> staged files, for
every kind of input (images; videos, volumes and signals: ``Plan.kind == "media"``). The same code runs in the
local engine (decoding in a background thread pool, see ``engines.local``) and in each Ray actor
(``engines.ray``), so both give the same files and the same result lines.

Pictures (overlays, feature grids, a clip's strip and overlay video, a volume's montage, a signal's plot) are
drawn and encoded, and the maps' .npy files written, by ``Worker.submit``'s tasks: in a bounded thread pool
beside the model when the worker has one (``picture_threads``), else at once; the same functions on the same
arrays, so the same bytes either way.

A ``Plan`` is everything a worker needs besides the model; it is plain data, so it pickles to Ray actors.
"""

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from xcam.app.inputs.images import load_image, preprocess
from xcam.app.inputs.kinds import input_kind, read_input
from xcam.app.outputs import files, results
from xcam.errors import XcamError
from xcam.methods import get_method
from xcam.montage import clip_frames, clip_strip, signal_plot, volume_montage
from xcam.pipeline import capture_asks, compute_cam
from xcam.targets import Class, parse_target
from xcam.viz import feature_grid_gray, overlay

TOP1_COLUMN = "top-1"  # the report column when each image is explained for its own top class
THUMB_SIDE = 128
MAP_SIZES = ("input", "layer")
MAP_DTYPES = ("float32", "float16")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")

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
    kind: str = "image"             # "image", or "media": videos, volumes and signals (``inputs.kinds``)
    rank: int = 2                   # the model's spatial rank (1 signals, 2 images, 3 volumes and clips)
    frames: int = 16                # frames sampled per video
    side: int = 112                 # a video's frames are resized to side x side
    memory_format: str = "contiguous"  # or "channels_last": how the model runs for the job (PyTorch)


@dataclass
class Loaded:
    """One decoded input: its place in the run, the picture's data (an image's uint8 pixels, kept only for
    overlays; a video's frames, a volume, a signal), its thumbnail (only for a paged report of images) and the
    preprocessed input, channels last ((H, W, C), (T, H, W, C), (D, H, W, C), (L, C)); or the error that kept it
    from being read. ``kind``: image, video, volume or signal."""

    index: int
    key: str
    path: str
    image: np.ndarray | None = None
    x: np.ndarray | None = None
    error: str | None = None
    thumb: np.ndarray | None = None
    kind: str = "image"


def load_one(plan: Plan, index: int, key: str, path: str) -> Loaded:
    """Decode and preprocess one input (thread-safe: no model involved)."""
    if plan.kind == "media":
        return _load_media(plan, index, key, path)
    try:
        img = load_image(os.path.join(plan.root, path), name=path)
        x = preprocess([img], tuple(plan.input_size), plan.normalize, plan.channels)[0]
    except XcamError as exc:
        return Loaded(index, key, path, error=str(exc))
    thumb = thumbnail(img) if plan.thumbnails else None
    return Loaded(index, key, path, image=img if plan.overlays else None, x=x, thumb=thumb)


def _load_media(plan: Plan, index: int, key: str, path: str) -> Loaded:
    kind = input_kind(path, plan.rank)
    try:
        if kind == "image":
            raise XcamError("not a video, volume or signal file")
        data, x = read_input(os.path.join(plan.root, path), kind, plan.channels, plan.normalize, plan.frames,
                             plan.side)
    except XcamError as exc:
        said = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
        return Loaded(index, key, path, error=said, kind=kind)
    return Loaded(index, key, path, image=data, x=x, kind=kind)


def load_batch(plan: Plan, items) -> list[Loaded]:
    """Decode and preprocess (index, key, path) items one after the other (each Ray actor does this)."""
    return [load_one(plan, i, k, p) for i, k, p in items]


def safe_name(text: str) -> str:
    """A label as a file-name part: letters, digits, '-' and '_' kept, anything else '_'."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(text))


class Worker:
    """Explains batches with one model: ``worker(batch_no, loaded) -> result lines``; the batch's files go to
    its staging folder (``results.commit`` moves them into place). With ``picture_threads`` the pictures are
    drawn in that many threads beside the model (``submit`` returns before they are written)."""

    def __init__(self, framework, model, plan: Plan, picture_threads: int = 0):
        self.framework, self.model, self.plan = framework, model, plan
        self.methods = [get_method(m) for m in plan.methods]
        self.needs_grad = any(m.needs_gradients for m in self.methods)
        self.needs_head = any(m.needs_head for m in self.methods)
        self.asks = {}   # what the methods ask the capture beyond activations and gradients
        for m in self.methods:
            self.asks.update(capture_asks(m))
        self.needs_probe = any(m.needs_probe for m in self.methods)
        self.pool = ThreadPoolExecutor(picture_threads, thread_name_prefix="xcam-pictures") \
            if picture_threads > 0 else None

    def __call__(self, batch_no: int, loaded: list[Loaded]) -> list[dict]:
        lines, pending = self.submit(batch_no, loaded)
        for f in pending:
            f.result()
        return lines

    def submit(self, batch_no: int, loaded: list[Loaded]) -> tuple[list[dict], list[Future]]:
        """Explain one batch: (its result lines, the picture tasks still running); the batch is done, and may be
        committed, once every task has finished (``Future.result`` raises a task's error)."""
        plan = self.plan
        stage = results.staging_dir(plan.out, batch_no)
        good = [item for item in loaded if item.error is None]
        lines = {item.index: {"index": item.index, "image": item.path, "error": item.error}
                 for item in loaded if item.error is not None}
        pending: list[Future] = []
        groups: dict = {}
        for item in good:  # one forward per input shape (volumes and signals may differ in size)
            groups.setdefault(item.x.shape, []).append(item)
        for group in groups.values():
            for item, entry in zip(group, self._explain(stage, group, pending)):
                lines[item.index] = entry
        return [lines[i] for i in sorted(lines)], pending

    def close(self) -> None:
        """Stop the picture threads (after their tasks)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def _draw(self, pending: list, fn, *args) -> None:
        if self.pool is None:
            fn(*args)
        else:
            pending.append(self.pool.submit(fn, *args))

    def _explain(self, stage: Path, good: list[Loaded], pending: list) -> list[dict]:
        plan, fw = self.plan, self.framework
        batch = np.stack([item.x for item in good])
        layer, labels, classes = plan.layer, plan.labels, plan.classes
        target = parse_target(plan.target) if plan.target else None
        cap = fw.capture(self.model, batch, layer, targets=target, classes=classes, gradients=self.needs_grad,
                         head=self.needs_head, labels=labels, **self.asks,
                         **plan.capture_options)
        output = {k: v for k, v in plan.capture_options.items() if k in PROBE_OPTIONS}
        probe = fw.probe(self.model, batch, layer, **output) if self.needs_probe else None
        media = plan.kind == "media"
        size = (tuple(batch.shape[1:-1]) if media else tuple(plan.input_size)) if plan.map_size == "input" else None
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
            entry = {"index": item.index, "key": key, "image": item.path}
            if media:
                entry.update(kind=item.kind, shape=[int(batch.shape[-1]), *map(int, batch.shape[1:-1])], layer=layer)
            entry.update({"predicted": labels[top] if classifier else "-", "predicted_index": top,
                          "probabilities": {labels[c]: round(float(probs[i, c]), 6) for c in range(len(labels))}
                          if classifier else {},
                          "target_score": np.round(cap.target_scores[i].astype(float), 6).tolist(),
                          "channels": int(cap.activations.shape[1]), "maps": {}})
            if plan.features and not media:
                self._draw(pending, _write_features, folder / "features.png", cap.activations[i])
                entry["features"] = f"{key}/features.png"
            if plan.thumbnails and item.thumb is not None:
                self._draw(pending, files.write_jpeg, folder / "thumb.jpg", item.thumb)
                entry["thumbnail"] = f"{key}/thumb.jpg"
            for m in self.methods:
                entry["maps"][m.name] = {}
                for j, col in enumerate(plan.columns):
                    heat = maps[m.name][i, j] if classes is not None else maps[m.name][i]
                    label = col if classes is not None or target is not None else labels[int(cap.targets[i])]
                    stem = m.name if media and classes is None else f"{m.name}_{safe_name(label)}"
                    record = {"class": label, "map": f"{key}/{stem}.npy"}
                    self._draw(pending, files.write_npy, folder / f"{stem}.npy", heat.astype(dtype))  # a copy
                    if plan.overlays:
                        record.update(self._pictures(pending, item, folder, key, stem, heat))
                    entry["maps"][m.name][col] = record
            entries.append(entry)
        return entries

    def _pictures(self, pending: list, item: Loaded, folder: Path, key: str, stem: str, heat) -> dict:
        """Queue the pictures of one map; returns the record's keys for them."""
        plan = self.plan
        if item.kind == "image":
            self._draw(pending, _write_overlay, folder / f"{stem}.png", item.image, heat, plan.alpha, plan.colormap)
            return {"overlay": f"{key}/{stem}.png"}
        if item.kind == "video":
            self._draw(pending, _write_clip, folder, stem, item.image, heat, plan.alpha, plan.colormap)
            return {"picture": f"{key}/{stem}_strip.png", "video": f"{key}/{stem}.mp4"}
        if item.kind == "volume":
            self._draw(pending, _write_montage, folder / f"{stem}_montage.png", item.image, heat, plan.alpha,
                       plan.colormap)
            return {"picture": f"{key}/{stem}_montage.png"}
        self._draw(pending, _write_signal, folder / f"{stem}_plot.png", item.image, heat, plan.colormap)
        return {"picture": f"{key}/{stem}_plot.png"}


def _write_features(path, activations) -> None:
    """features.png: the gray feature grid as a grayscale PNG (the pixels of ``feature_grid``'s RGB; about
    half the encoding time and 40% of the bytes)."""
    files.write_png(path, feature_grid_gray(activations))


def _write_overlay(path, image, heat, alpha, colormap) -> None:
    files.write_png(path, overlay(image, heat, alpha=alpha, colormap=colormap), photo=True)


def _write_clip(folder: Path, stem: str, frames, heat, alpha, colormap) -> None:
    files.write_png(folder / f"{stem}_strip.png", clip_strip(frames, heat, 8, alpha, colormap), photo=True)
    files.write_video(folder / f"{stem}.mp4", clip_frames(frames, heat, alpha, colormap))


def _write_montage(path, volume, heat, alpha, colormap) -> None:
    files.write_png(path, volume_montage(volume, heat, 5, alpha, colormap))


def _write_signal(path, signal, heat, colormap) -> None:
    files.write_png(path, signal_plot(signal, heat, colormap=colormap))


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
