"""``xcam explain`` on videos and volumes: a video read with OpenCV (``--frames T`` sampled evenly), a volume in
.npy (D, H, W) or (C, D, H, W), or NIfTI .nii / .nii.gz (through nibabel: ``pip install 'xcam[medical]'``). Per
input: each method's map (.npy, (T, H, W) / (D, H, W) in [0, 1]), a picture (a clip's strip of frames, a
volume's montage of slices along each axis), for a clip an overlay video (MP4), and one report page."""

import glob
import html
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from xcam.app.engines.batch import TOP1_COLUMN
from xcam.app.inputs.images import parse_normalization
from xcam.app.inputs.sources import is_image_name
from xcam.app.jobs.explain import target_column, write_summary
from xcam.app.outputs import files, results
from xcam.app.outputs.report import png_data_uri
from xcam.errors import XcamError
from xcam.layers import check_layer, default_layer
from xcam.methods import get_method
from xcam.montage import clip_frames, clip_strip, evenly, volume_montage
from xcam.pipeline import compute_cam
from xcam.targets import Class, as_target

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
VOLUME_SUFFIXES = (".npy", ".nii", ".nii.gz")
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def kind_of(path) -> str | None:
    """"video", "volume" or None (an image or anything else) from the file name."""
    name = str(path).lower()
    if name.endswith(VIDEO_SUFFIXES):
        return "video"
    if name.endswith(VOLUME_SUFFIXES):
        return "volume"
    return None


def read_video(path, frames: int, size: tuple[int, int]) -> np.ndarray:
    """``frames`` frames sampled evenly over the video (the centres of equal parts), resized to ``size`` (H, W),
    uint8 RGB (T, H, W, 3); an unreadable or too short video is a one-line error."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise XcamError(f"cannot read video {str(path)!r} (OpenCV could not open it)")
    all_frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            all_frames.append(frame)
    finally:
        cap.release()
    if len(all_frames) < frames:
        raise XcamError(f"video {str(path)!r} has {len(all_frames)} frames; --frames {frames} needs at least that many")
    picked = [all_frames[i] for i in evenly(frames, len(all_frames))]
    return np.stack([cv2.cvtColor(cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
                     for f in picked])


def read_volume(path) -> np.ndarray:
    """A volume as float32 (D, H, W) or (C, D, H, W): .npy as stored; NIfTI through nibabel, turned to the
    closest canonical (RAS+) orientation by its affine, then (x, y, z[, c]) as ([c,] z, y, x): axial slices first,
    whatever the scanner's voxel order."""
    name = str(path).lower()
    try:
        if name.endswith(".npy"):
            vol = np.load(path, allow_pickle=False)
        else:
            try:
                import nibabel
            except ImportError:
                raise XcamError("reading NIfTI needs nibabel: pip install 'xcam[medical]'") from None
            try:
                image = nibabel.as_closest_canonical(nibabel.load(str(path)))
            except nibabel.filebasedimages.ImageFileError as exc:
                raise ValueError(exc) from None
            data = np.asarray(image.get_fdata(dtype=np.float32))
            vol = data.transpose(2, 1, 0) if data.ndim == 3 else data.transpose(3, 2, 1, 0) if data.ndim == 4 \
                else data
    except (OSError, ValueError, EOFError) as exc:
        raise XcamError(f"cannot read volume {str(path)!r}: {exc}") from None
    vol = np.asarray(vol, np.float32)
    if vol.ndim not in (3, 4):
        raise XcamError(f"volume {str(path)!r} has shape {vol.shape}; give (D, H, W) or (C, D, H, W)")
    return vol


def model_input(kind: str, data: np.ndarray, channels: int, norm) -> np.ndarray:
    """One input, channels first (C, T|D, H, W): video frames scaled to [0, 1] and normalized per channel like
    images; a volume standardized (zero mean, unit variance), one channel repeated if the model wants more (other
    channel counts that differ from the model's are a one-line error)."""
    if kind == "video":
        x = data.astype(np.float32) / 255.0
        mean, std = norm if norm is not None else (np.zeros(3), np.ones(3))
        x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        return np.ascontiguousarray(x.transpose(3, 0, 1, 2))[:channels]
    vol = data if data.ndim == 4 else data[None]
    vol = (vol - vol.mean()) / max(float(vol.std()), 1e-12)
    if vol.shape[0] != channels and vol.shape[0] != 1:
        raise XcamError(f"the volume has {vol.shape[0]} channels but the model takes {channels}; give (D, H, W), "
                        f"(1, D, H, W) or ({channels}, D, H, W)")
    if vol.shape[0] != channels:
        vol = np.repeat(vol, channels, axis=0)
    return np.ascontiguousarray(vol, np.float32)


def split_inputs(specs) -> tuple[list[str], list[str]]:
    """(image specs, video and volume files) from ``--images``: a file goes by its name (``kind_of``); a
    directory or a glob without images gives its videos and volumes (sorted, hidden entries skipped); one with
    images stays an image spec (the image job reads only its images, as always: a stray .npy beside photos is
    not a volume to explain), as do lists (.txt) and specs that match nothing (the image job says so)."""
    images, media = [], []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            names = []
            for root, dirs, found in os.walk(path):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                names += [os.path.join(root, n) for n in found if not n.startswith(".")]
            found = sorted(n for n in names if kind_of(n))
            if not found or any(is_image_name(n) for n in names):
                images.append(spec)
            else:
                media += found
        elif not path.exists() and set("*?[") & set(str(spec)):
            matches = sorted(glob.glob(str(spec), recursive=True))
            found = [m for m in matches if kind_of(m) and Path(m).is_file()]
            if not found or any(is_image_name(m) or Path(m).is_dir() for m in matches):
                images.append(spec)
            else:
                media += found
        elif kind_of(spec):
            media.append(str(spec))
        else:
            images.append(spec)
    return images, list(dict.fromkeys(media))


def explain_clips(framework, model, paths: list, out, methods: list, layer=None, frames: int = 16,
                  size: int | None = None, targets=None, normalize: str = "imagenet", overwrite: bool = False,
                  alpha: float = 0.5, log=sys.stderr, output=None, labels=None, model_name: str = "") -> int:
    """Explain each video / volume in ``paths`` (see the module docstring); returns the exit code (1 if an input
    could not be read, the others still explained). Like the image job it writes ``results.jsonl`` (a line per
    input: predicted label, probabilities, the files written; or the error) and ``summary.json`` from it, with
    the same keys; the whole output is staged and moved into place at the end (no ``--resume``)."""
    adapter = framework.adapter
    ms = [get_method(m) for m in methods]
    needs_grad, needs_head = any(m.needs_gradients for m in ms), any(m.needs_head for m in ms)
    channels = adapter.input_shape(model)[0]
    spec = parse_normalization(normalize)
    if spec == "caffe":
        raise XcamError("--normalize caffe is for BGR images; videos take imagenet, none or MEAN,STD")
    norm = {"imagenet": IMAGENET, "none": None}.get(spec, spec) if isinstance(spec, str) else spec
    side = size or 112
    keys, failed, layers, column = set(), 0, [], None
    with files.staged_dir(out, overwrite) as tmp:
        files.write_bytes(tmp / results.RESULTS_FILE, b"")
        for index, path in enumerate(paths):
            kind = kind_of(path)
            try:
                data = read_video(path, frames, (side, side)) if kind == "video" else read_volume(path)
                x = model_input(kind, data, channels, norm)[None]
            except XcamError as exc:
                said = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
                print(f"xcam: error: {said}", file=log or sys.stderr)
                failed += 1
                _append(tmp, {"index": index, "image": str(path), "error": said})
                continue
            batch = x if adapter.LAYOUT == "channels_first" else np.moveaxis(x, 1, -1)
            records = adapter.layer_records(model, batch.shape[1:])
            name = default_layer(records).name if layer is None else check_layer(records, layer).name
            layers.append(name)
            cap = adapter.capture(model, batch, name, targets, gradients=needs_grad, head=needs_head, output=output)
            probe = adapter.probe(model, batch, name, output=output) if any(m.needs_probe for m in ms) else None
            classifier = isinstance(cap.explained, Class)
            k = cap.scores.shape[1] if cap.scores.ndim >= 2 else 1
            if labels is not None and len(labels) != k:
                raise XcamError(f"{len(labels)} labels given but the model has {k} classes")
            names = list(labels or [str(i) for i in range(k)])
            column = TOP1_COLUMN if targets is None else target_column(as_target(targets), names)
            key = _unique(Path(path).name.split(".")[0] or "input", keys)
            folder = tmp / key
            folder.mkdir()
            probs = cap.probabilities[0] if classifier else None
            top = int(probs.argmax()) if classifier else None
            entry = {"index": index, "key": key, "image": str(path), "kind": kind, "shape": list(x.shape[1:]),
                     "layer": name, "predicted": names[top] if classifier else "-", "predicted_index": top,
                     "probabilities": {names[c]: round(float(probs[c]), 6) for c in range(k)} if classifier else {},
                     "target_score": np.round(np.asarray(cap.target_scores[0], float), 6).tolist(),
                     "channels": int(cap.activations.shape[1]), "maps": {}}
            label = column if targets is not None else names[int(cap.targets[0])]
            for m in ms:
                heat = compute_cam(cap, m, size=tuple(x.shape[2:]), probe=probe,
                                   model_inputs=None if probe is None else probe.inputs)[0]
                files.write_npy(folder / f"{m.name}.npy", heat.astype(np.float32))
                record = {"class": label, "map": f"{key}/{m.name}.npy"}
                if kind == "video":
                    files.write_png(folder / f"{m.name}_strip.png", clip_strip(data, heat, 8, alpha))
                    files.write_video(folder / f"{m.name}.mp4", clip_frames(data, heat, alpha))
                    record.update(picture=f"{key}/{m.name}_strip.png", video=f"{key}/{m.name}.mp4")
                else:
                    files.write_png(folder / f"{m.name}_montage.png", volume_montage(data, heat, 5, alpha))
                    record["picture"] = f"{key}/{m.name}_montage.png"
                entry["maps"][m.name] = {column: record}
            _append(tmp, entry)
        header = {"model": model_name, "framework": framework.name,
                  "layer": layers[0] if len(set(layers)) == 1 else layer, "frames": frames,
                  "target": as_target(targets).to_json(), "methods": [m.name for m in ms],
                  "method_titles": {m.name: m.title for m in ms}, "labels": labels, "columns": [column or TOP1_COLUMN],
                  "results": results.RESULTS_FILE}
        write_summary(tmp, header)
        files.write_text(tmp / "report.html", _report(tmp, json.loads((tmp / "summary.json").read_text())))
    return 1 if failed else 0


def _append(folder: Path, record: dict) -> None:
    """One line of results.jsonl (flushed: the file is readable as the run goes)."""
    with open(folder / results.RESULTS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _unique(key: str, taken: set) -> str:
    """``key``, or ``key_2``, ``key_3``, ... when an earlier input had that name (clip.mp4 and clip.avi)."""
    found, n = key, 1
    while found in taken:
        n += 1
        found = f"{key}_{n}"
    taken.add(found)
    return found


def _report(folder: Path, summary: dict) -> str:
    """One self-contained page: a section per input with each method's picture inline, then the errors."""
    parts = []
    for entry in summary["images"]:
        pics = []
        for method, by_column in entry["maps"].items():
            for m in by_column.values():
                rgb = cv2.cvtColor(cv2.imread(str(folder / m["picture"])), cv2.COLOR_BGR2RGB)
                pics.append(f"<figure><img src='{png_data_uri(rgb, max_side=1200)}'><figcaption>"
                            f"{html.escape(method)} ({html.escape(str(m['class']))})</figcaption></figure>")
        title = html.escape(f"{entry['image']} ({entry['kind']}, {'x'.join(map(str, entry['shape']))}, "
                            f"layer {entry['layer']}, predicted {entry['predicted']})")
        parts.append(f"<section><h2>{title}</h2>{''.join(pics)}</section>")
    errors = "".join(f"<li>{html.escape(e)}</li>" for e in summary["errors"])
    if errors:
        parts.append(f"<section><h2>Not explained</h2><ul>{errors}</ul></section>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>xcam report</title></head><body>"
            f"<h1>xcam: videos and volumes</h1>{''.join(parts)}</body></html>\n")
