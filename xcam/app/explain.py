"""The lab in one call: for every image, the layer's feature grid and each method's map for each class,
written as PNG overlays, .npy maps, summary.json and report.html (all into a fresh directory at once)."""

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xcam.errors import XcamError
from xcam.layers import check_layer, default_layer
from xcam.methods import get_method
from xcam.pipeline import compute_cam
from xcam.viz import feature_grid, overlay

from . import files
from .images import load_image, parse_normalization, preprocess
from .report import render_html

TOP1_COLUMN = "top-1"  # the report column when each image is explained for its own top class


@dataclass
class Job:
    """One ``xcam explain`` run: the model, images, methods, classes and where the outputs go."""

    framework: object             # xcam.app.frameworks.Framework
    model: object
    model_name: str
    images: list
    out: Path
    methods: list = field(default_factory=lambda: ["gradcam", "layercam"])
    classes: list | None = None   # ints or label names; None or ["top1"] = each image's top-1; ["all"]
    labels: list | None = None
    layer: str | None = None
    input_size: int | None = None
    normalize: str = "imagenet"
    overwrite: bool = False
    batch_size: int = 8
    alpha: float = 0.5
    colormap: str = "jet"
    log: object = sys.stderr
    shown_out: Path | None = None  # where the output ends up, if `out` is a staging directory


def parse_labels(spec) -> list[str] | None:
    """'cat,dog' or a file with one label a line."""
    if spec is None:
        return None
    path = Path(spec)
    if path.is_file():
        try:
            names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise XcamError(f"cannot read label file {str(path)!r}: {exc}") from None
    else:
        names = [s.strip() for s in str(spec).split(",") if s.strip()]
    if not names:
        raise XcamError(f"no labels in {spec!r}")
    return names


def class_indices(tokens, labels, num_classes) -> list[int] | None:
    """--classes tokens -> indices (None = top-1): ints, label names, 'top1' or 'all'."""
    if not tokens or list(tokens) == ["top1"]:
        return None
    if list(tokens) == ["all"]:
        return list(range(num_classes))
    out = []
    for tok in tokens:
        tok = str(tok)
        if tok.lstrip("-").isdigit():
            out.append(int(tok))
        elif labels and tok in labels:
            out.append(labels.index(tok))
        else:
            valid = f"labels: {', '.join(labels)}" if labels else "give --labels to use names"
            raise XcamError(f"unknown class {tok!r}: use an index 0..{num_classes - 1}, 'top1', 'all', or a "
                            f"label name ({valid})")
    return out


def _progress(done, total, log):
    if total > 2 and log is not None:
        width = 30
        filled = round(width * done / total)
        log.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} images")
        if done == total:
            log.write("\n")
        log.flush()


def _say(job, text):
    if job.log is not None:
        print(f"xcam: {text}", file=job.log)


def _unique_keys(paths):
    keys, seen = [], {}
    for p in paths:
        stem = Path(p).stem or "image"
        seen[stem] = seen.get(stem, 0) + 1
        keys.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return keys


def run(job: Job) -> int:
    """Explain every image; returns the exit code (0 all done, 1 some images could not be read)."""
    methods = [get_method(m) for m in job.methods]
    norm = parse_normalization(job.normalize) if isinstance(job.normalize, str) else job.normalize
    out = Path(job.out)
    files.check_new_dir(out, job.overwrite)
    if not job.images:
        raise XcamError("no images given")
    channels, hw = job.framework.input_spec(job.model, job.input_size)
    records = job.framework.layer_records(job.model, channels, hw)
    if job.layer:
        layer = check_layer(records, job.layer).name
    else:
        layer = default_layer(records).name
        _say(job, f"explaining layer {layer} (the last layer with a spatial output; choose one with --layer)")

    errors, loaded = [], []
    for path in job.images:
        try:
            loaded.append((str(path), load_image(path)))
        except XcamError as exc:
            errors.append(str(exc))
            _say(job, f"error: {exc}")
    if not loaded:
        raise XcamError("none of the images could be read: " + "; ".join(errors))

    keys = _unique_keys([p for p, _ in loaded])
    with files.staged_dir(out, job.overwrite) as tmp:
        summary, pictures = _explain_all(job, methods, layer, channels, hw, norm, loaded, keys, tmp)
        summary["errors"] = errors
        files.write_json(tmp / "summary.json", summary)
        files.write_text(tmp / "report.html", render_html(summary, pictures))
    _say(job, f"wrote {(job.shown_out or out) / 'report.html'} ({len(loaded)} images, {len(errors)} unreadable)")
    return 1 if errors else 0


def _explain_all(job, methods, layer, channels, hw, norm, loaded, keys, tmp):
    needs_grad = any(m.needs_gradients for m in methods)
    needs_head = any(m.needs_head for m in methods)
    labels, classes, columns = job.labels, None, None
    entries, pictures = [], {}
    for start in range(0, len(loaded), job.batch_size):
        chunk = loaded[start:start + job.batch_size]
        batch = preprocess([img for _, img in chunk], hw, norm, channels)
        if start == 0:  # learn the class count from the first batch, then check labels and classes
            first = job.framework.capture(job.model, batch[:1], layer, gradients=False)
            k = first.scores.shape[1]
            if labels is not None and len(labels) != k:
                raise XcamError(f"{len(labels)} labels given but the model has {k} classes")
            labels = labels or [str(i) for i in range(k)]
            classes = class_indices(job.classes, labels, k)
            columns = [labels[c] if 0 <= c < k else str(c) for c in classes] if classes is not None else [TOP1_COLUMN]
        cap = job.framework.capture(job.model, batch, layer, targets=None, classes=classes, gradients=needs_grad,
                                    head=needs_head, labels=labels)
        probe = job.framework.probe(job.model, batch, layer) if any(m.needs_probe for m in methods) else None
        maps = {m.name: compute_cam(cap, m, size=hw, model_inputs=None if probe is None else probe.inputs,
                                    probe=probe) for m in methods}
        probs = cap.probabilities
        for i, (path, img) in enumerate(chunk):
            key = keys[start + i]
            folder = tmp / key
            folder.mkdir()
            grid = feature_grid(cap.activations[i])
            files.write_png(folder / "features.png", grid)
            pics = {"original": img, "features": grid}
            top = int(probs[i].argmax())
            entry = {"key": key, "image": path, "predicted": labels[top], "predicted_index": top,
                     "probabilities": {labels[c]: round(float(probs[i, c]), 6) for c in range(len(labels))},
                     "features": f"{key}/features.png",
                     "channels": int(cap.activations.shape[1]), "maps": {}}
            for m in methods:
                entry["maps"][m.name] = {}
                for j, col in enumerate(columns):
                    heat = maps[m.name][i, j] if classes is not None else maps[m.name][i]
                    label = col if classes is not None else labels[int(cap.targets[i])]
                    stem = f"{m.name}_{_safe(label)}"
                    pic = overlay(img, heat, alpha=job.alpha, colormap=job.colormap)
                    files.write_png(folder / f"{stem}.png", pic)
                    files.write_npy(folder / f"{stem}.npy", heat.astype(np.float32))
                    pics[(m.name, col)] = pic
                    entry["maps"][m.name][col] = {"class": label, "overlay": f"{key}/{stem}.png",
                                                  "map": f"{key}/{stem}.npy"}
            entries.append(entry)
            pictures[key] = pics
        _progress(len(entries), len(loaded), job.log)
    summary = {"model": job.model_name, "framework": job.framework.name, "layer": layer,
               "input_size": list(hw), "normalize": job.normalize if isinstance(job.normalize, str) else "custom",
               "methods": [m.name for m in methods], "method_titles": {m.name: m.title for m in methods},
               "labels": labels, "columns": columns, "images": entries}
    return summary, pictures


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(text))
