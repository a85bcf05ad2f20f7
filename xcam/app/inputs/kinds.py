"""Which kind of input a file is (image, video, volume or signal) and the model input each kind becomes: the
readers are ``images``, ``clips``, ``volumes`` and ``signals``; this module routes ``--images`` to them and
prepares one input the way the job feeds it, channels last ((T, H, W, C), (D, H, W, C), (L, C)).

- a video: frames scaled to [0, 1] and normalized per channel like images (imagenet by default);
- a volume or a signal: standardized over the whole input (zero mean, unit variance), or as stored with
  ``--normalize none``; one channel is repeated if the model takes more.

A ``.npy`` file is a signal for a model whose first convolution is 1-D, else a volume."""

import glob
import os
from pathlib import Path

import numpy as np

from xcam.app.inputs.clips import VIDEO_SUFFIXES, read_video
from xcam.app.inputs.signals import SIGNAL_SUFFIXES, read_signal
from xcam.app.inputs.sources import is_image_name
from xcam.app.inputs.volumes import VOLUME_SUFFIXES, read_volume
from xcam.errors import XcamError

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
MEDIA_KINDS = ("video", "volume", "signal")


def kind_of(path) -> str | None:
    """"video", "volume", "signal" or None (an image or anything else) from the file name (a .npy is called a
    volume here; ``input_kind`` makes it a signal for a 1-D model)."""
    name = str(path).lower()
    if name.endswith(VIDEO_SUFFIXES):
        return "video"
    if name.endswith(VOLUME_SUFFIXES):
        return "volume"
    if name.endswith(SIGNAL_SUFFIXES):
        return "signal"
    return None


def input_kind(path, rank: int) -> str:
    """The kind of a video, volume or signal file for a model of spatial ``rank`` (1: signals, 3: volumes and
    clips): a .npy is a signal for a 1-D model, else a volume."""
    kind = kind_of(path)
    if kind == "volume" and rank == 1 and str(path).lower().endswith(".npy"):
        return "signal"
    return kind or "image"


def model_input(kind: str, data: np.ndarray, channels: int, norm) -> np.ndarray:
    """One input, channels first (C, T|D|L, ...): see the module docstring. ``norm``: a video's (means, stds) or
    None; a volume's or signal's "none" (as stored) or anything else (standardized). Other channel counts that
    differ from the model's are a one-line error."""
    if kind == "video":
        x = data.astype(np.float32) / 255.0
        mean, std = norm if norm is not None else (np.zeros(3), np.ones(3))
        x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        return np.ascontiguousarray(x.transpose(3, 0, 1, 2))[:channels]
    x = data if (kind == "volume" and data.ndim == 4) or (kind == "signal" and data.ndim == 2) else data[None]
    if norm != "none":
        x = (x - x.mean()) / max(float(x.std()), 1e-12)
    shape = "(L,), (1, L)" if kind == "signal" else "(D, H, W), (1, D, H, W)"
    if x.shape[0] != channels and x.shape[0] != 1:
        raise XcamError(f"the {kind} has {x.shape[0]} channels but the model takes {channels}; give {shape} or "
                        f"({channels}, ...)")
    if x.shape[0] != channels:
        x = np.repeat(x, channels, axis=0)
    return np.ascontiguousarray(x, np.float32)


def read_input(path, kind: str, channels: int, spec, frames: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(the picture's data, the model input channels last) for one video, volume or signal: the video's uint8
    frames (T, side, side, 3), the volume as read, the signal (C, L). ``spec``: the parsed --normalize."""
    if kind == "video":
        data = read_video(path, frames, (side, side))
    elif kind == "signal":
        data = read_signal(path)
    else:
        data = read_volume(path)
    x = model_input(kind, data, channels, media_norm(spec, kind))
    return data, np.ascontiguousarray(np.moveaxis(x, 0, -1))


def media_norm(spec, kind: str):
    """The ``norm`` of ``model_input`` for a parsed --normalize: a video's (means, stds) (imagenet's by default,
    None for "none"); a volume's or signal's "none" (as stored) or "imagenet" (the default: standardized). caffe
    anywhere, or MEAN,STD for a volume or a signal, is a one-line error."""
    if spec == "caffe":
        raise XcamError("--normalize caffe is for BGR images; videos take imagenet, none or MEAN,STD")
    if kind == "video":
        return {"imagenet": IMAGENET, "none": None}.get(spec, spec) if isinstance(spec, str) else spec
    if not isinstance(spec, str):
        raise XcamError(f"{kind}s are standardized (the default, imagenet) or fed as stored (--normalize none); "
                        "MEAN,STD is for images and videos")
    return spec


def split_inputs(specs) -> tuple[list[str], list[str]]:
    """(image specs, video, volume and signal files) from ``--images``: a file goes by its name (``kind_of``); a
    directory or a glob without images gives its videos, volumes and signals (sorted, hidden entries skipped); one
    with images stays an image spec (the image job reads only its images, as always: a stray .npy beside photos is
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
