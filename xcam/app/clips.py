"""``xcam explain`` on videos and volumes: a video read with OpenCV (``--frames T`` sampled evenly), a volume in
.npy (D, H, W) or (C, D, H, W), or NIfTI .nii / .nii.gz (through nibabel: ``pip install 'xcam[medical]'``). Per
input: each method's map (.npy, (T, H, W) / (D, H, W) in [0, 1]), a picture (a clip's strip of frames, a
volume's montage of slices along each axis), for a clip an overlay video (MP4), and one report page."""

import html
import sys
from pathlib import Path

import cv2
import numpy as np

from xcam.errors import XcamError
from xcam.layers import check_layer, default_layer
from xcam.methods import get_method
from xcam.montage import clip_frames, clip_strip, evenly, volume_montage

from . import files
from .images import parse_normalization
from .report import png_data_uri

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
    """A volume as float32 (D, H, W) or (C, D, H, W): .npy as stored; NIfTI (x, y, z[, c]) as (z, y, x) (axial
    slices first) through nibabel."""
    name = str(path).lower()
    try:
        if name.endswith(".npy"):
            vol = np.load(path, allow_pickle=False)
        else:
            try:
                import nibabel
            except ImportError:
                raise XcamError("reading NIfTI needs nibabel: pip install 'xcam[medical]'") from None
            data = np.asarray(nibabel.load(str(path)).get_fdata(dtype=np.float32))
            vol = data.transpose(2, 1, 0) if data.ndim == 3 else data.transpose(3, 2, 1, 0) if data.ndim == 4 \
                else data
    except (OSError, ValueError) as exc:
        raise XcamError(f"cannot read volume {str(path)!r}: {exc}") from None
    vol = np.asarray(vol, np.float32)
    if vol.ndim not in (3, 4):
        raise XcamError(f"volume {str(path)!r} has shape {vol.shape}; give (D, H, W) or (C, D, H, W)")
    return vol


def model_input(kind: str, data: np.ndarray, channels: int, norm) -> np.ndarray:
    """One input, channels first (C, T|D, H, W): video frames scaled to [0, 1] and normalized per channel like
    images; a volume standardized (zero mean, unit variance), its channels repeated if the model wants more."""
    if kind == "video":
        x = data.astype(np.float32) / 255.0
        mean, std = norm if norm is not None else (np.zeros(3), np.ones(3))
        x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        return np.ascontiguousarray(x.transpose(3, 0, 1, 2))[:channels]
    vol = data if data.ndim == 4 else data[None]
    vol = (vol - vol.mean()) / max(float(vol.std()), 1e-12)
    if vol.shape[0] != channels:
        vol = np.repeat(vol[:1], channels, axis=0)
    return np.ascontiguousarray(vol, np.float32)


def explain_clips(framework, model, paths: list, out, methods: list, layer=None, frames: int = 16,
                  size: int | None = None, targets=None, normalize: str = "imagenet", overwrite: bool = False,
                  alpha: float = 0.5, log=sys.stderr, output=None) -> int:
    """Explain each video / volume in ``paths`` (see the module docstring); returns the exit code (1 if an input
    could not be read, the others still explained)."""
    adapter = framework.adapter
    ms = [get_method(m) for m in methods]
    channels = adapter.input_shape(model)[0]
    spec = parse_normalization(normalize)
    if spec == "caffe":
        raise XcamError("--normalize caffe is for BGR images; videos take imagenet, none or MEAN,STD")
    norm = {"imagenet": IMAGENET, "none": None}.get(spec, spec) if isinstance(spec, str) else spec
    side = size or 112
    entries, failed = [], 0
    with files.staged_dir(out, overwrite) as tmp:
        for path in paths:
            kind = kind_of(path)
            try:
                data = read_video(path, frames, (side, side)) if kind == "video" else read_volume(path)
            except XcamError as exc:
                print(f"xcam: error: {exc}", file=log or sys.stderr)
                failed += 1
                continue
            x = model_input(kind, data, channels, norm)[None]
            batch = x if adapter.LAYOUT == "channels_first" else np.moveaxis(x, 1, -1)
            shape = batch.shape[1:]
            records = adapter.layer_records(model, shape)
            name = default_layer(records).name if layer is None else check_layer(records, layer).name
            key = Path(path).name.split(".")[0]
            folder = tmp / key
            folder.mkdir()
            entry = {"input": str(path), "kind": kind, "shape": list(x.shape[1:]), "layer": name, "maps": {}}
            for m in ms:
                heat = adapter.cam(model, batch, name, m.name, targets=targets, output=output)[0]
                files.write_npy(folder / f"{m.name}.npy", heat.astype(np.float32))
                if kind == "video":
                    files.write_png(folder / f"{m.name}_strip.png", clip_strip(data, heat, 8, alpha))
                    files.write_video(folder / f"{m.name}.mp4", clip_frames(data, heat, alpha))
                    picture = f"{m.name}_strip.png"
                else:
                    files.write_png(folder / f"{m.name}_montage.png", volume_montage(data, heat, 5, alpha))
                    picture = f"{m.name}_montage.png"
                entry["maps"][m.name] = {"map": f"{key}/{m.name}.npy", "picture": f"{key}/{picture}"}
            entries.append(entry)
        summary = {"inputs": entries, "methods": [m.name for m in ms], "frames": frames}
        files.write_json(tmp / "summary.json", summary)
        files.write_text(tmp / "report.html", _report(tmp, summary))
    return 1 if failed else 0


def _report(folder: Path, summary: dict) -> str:
    """One self-contained page: a section per input with each method's picture inline."""
    parts = []
    for entry in summary["inputs"]:
        pics = []
        for method, m in entry["maps"].items():
            rgb = cv2.cvtColor(cv2.imread(str(folder / m["picture"])), cv2.COLOR_BGR2RGB)
            pics.append(f"<figure><img src='{png_data_uri(rgb, max_side=1200)}'><figcaption>{html.escape(method)}"
                        "</figcaption></figure>")
        title = html.escape(f"{entry['input']} ({entry['kind']}, {'x'.join(map(str, entry['shape']))}, "
                            f"layer {entry['layer']})")
        parts.append(f"<section><h2>{title}</h2>{''.join(pics)}</section>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>xcam report</title></head><body>"
            f"<h1>xcam: videos and volumes</h1>{''.join(parts)}</body></html>\n")
