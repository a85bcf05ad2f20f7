"""Hugging Face model directories (``config.json`` + ``model.safetensors``, as ``save_pretrained`` writes them),
loaded offline from local files only (PyTorch; transformers 5 has no TensorFlow classes). The class is the
config's ``architectures[0]``; labels come from ``config.id2label``, the input size and normalization from
``preprocessor_config.json`` when it is there (else the config's ``image_size``)."""

import json
import os
from pathlib import Path

from xcam.app.models.hints import Hints, attach, missing
from xcam.errors import XcamError

WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def is_hf_dir(path) -> bool:
    """Whether ``path`` is a directory save_pretrained wrote (config.json and PyTorch weights)."""
    p = Path(path)
    return p.is_dir() and (p / "config.json").is_file() and any((p / w).is_file() for w in WEIGHTS)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise XcamError(f"cannot read {str(path)!r}: {exc}") from None


def _side(value):
    """(H, W) of an image_size / size entry: an int, a pair, or a dict with height/width or shortest_edge."""
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    if isinstance(value, dict):
        if "height" in value and "width" in value:
            return int(value["height"]), int(value["width"])
        if "shortest_edge" in value:
            return int(value["shortest_edge"]), int(value["shortest_edge"])
    return None


def preprocessing(folder: Path, config: dict) -> tuple:
    """(size, normalize) from preprocessor_config.json (crop size when it center-crops, else size; image_mean
    and image_std after rescaling to [0, 1]; "none" when it does not normalize), else the config's image_size."""
    size, norm = _side(config.get("image_size")), None
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        p = _read_json(pre)
        size = (_side(p.get("crop_size")) if p.get("do_center_crop") else None) or _side(p.get("size")) or size
        if p.get("do_normalize", True) and p.get("image_mean") is not None and p.get("image_std") is not None:
            mean, std = p["image_mean"], p["image_std"]
            mean = [mean] * 3 if isinstance(mean, (int, float)) else mean
            std = [std] * 3 if isinstance(std, (int, float)) else std
            norm = (tuple(float(v) for v in mean), tuple(float(v) for v in std))
        elif not p.get("do_normalize", True):
            norm = "none"
    return size, norm


def load(path):
    """The model of a save_pretrained directory, in eval mode, with its ``Hints``; offline, local files only."""
    folder = Path(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers
    except ImportError:
        raise XcamError(missing("hf", "a Hugging Face model directory")) from None
    config = _read_json(folder / "config.json")
    names = config.get("architectures") or []
    cls = getattr(transformers, names[0], None) if names else None
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise XcamError(f"{str(folder)!r}: config.json names architecture {names[0] if names else None!r}, "
                        f"which transformers {transformers.__version__} does not have")
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()   # no "Loading weights" bar on the CLI's stderr
    try:
        model = cls.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise XcamError(f"cannot load the Hugging Face model in {str(folder)!r}: {first}") from None
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    id2label = config.get("id2label") or {}
    labels = tuple(id2label[k] for k in sorted(id2label, key=int)) if id2label else None
    size, norm = preprocessing(folder, config)
    return attach(model.eval(), Hints(size=size, normalize=norm, labels=labels, source="preprocessor_config.json"
                                      if (folder / "preprocessor_config.json").is_file() else "config.json"))
