"""keras-hub preset directories (``task.save_to_preset(DIR)``: config.json, metadata.json, task.json,
model.weights.h5, task.weights.h5, image_converter.json ...), loaded with keras-hub from the local files only.
The task class is the one task.json names; the input size and normalization come from the image converter
(``image_converter.json``, else the one inside ``preprocessor.json``): its ``image_size``, and ``x * scale +
offset`` on raw 0-255 pixels read as ``(x / 255 - mean) / std``. No labels: keras-hub presets carry no class
names (``--labels`` gives them)."""

import json
from pathlib import Path

from xcam.app.models.hints import Hints, attach, missing
from xcam.errors import XcamError

TASK, CONVERTER, PREPROCESSOR, METADATA, CONFIG = ("task.json", "image_converter.json", "preprocessor.json",
                                                  "metadata.json", "config.json")


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise XcamError(f"cannot read {str(path)!r}: {exc}") from None
    return value if isinstance(value, dict) else {}


def is_preset(path) -> bool:
    """Whether ``path`` is a directory keras-hub's save_to_preset wrote: config.json beside a metadata.json
    that names a keras(-hub) version, or a config.json whose object keras-hub registered. A Hugging Face
    save_pretrained directory has no metadata.json and its config.json no ``registered_name``."""
    p = Path(path)
    if not (p.is_dir() and (p / CONFIG).is_file()):
        return False
    try:
        if (p / METADATA).is_file():
            meta = json.loads((p / METADATA).read_text(encoding="utf-8"))
            if isinstance(meta, dict) and ("keras_hub_version" in meta or "keras_version" in meta):
                return True
        config = json.loads((p / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and str(config.get("registered_name") or "").startswith("keras_hub>")


def _per_channel(value, channels: int = 3):
    if value is None:
        return None
    values = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]
    return values * channels if len(values) == 1 else values


def converter_hints(config: dict) -> tuple:
    """(size, normalize) of an image converter's config: its ``image_size`` as (H, W) and its ``scale`` /
    ``offset`` on 0-255 pixels as (means, stds) after scaling to [0, 1] (x * scale + offset = (x / 255 - m) / s
    with s = 1 / (255 * scale), m = -offset * s); "none" for scale 1/255 without offset."""
    size = config.get("image_size")
    size = (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) and len(size) == 2 and all(size) \
        else None
    scale, offset = _per_channel(config.get("scale")), _per_channel(config.get("offset"))
    if scale is None and offset is None:
        return size, ((0.0,) * 3, (1 / 255,) * 3)   # raw 0-255 pixels
    scale = scale or [1.0] * 3
    offset = offset or [0.0] * 3
    if len(scale) != 3 or len(offset) != 3 or not all(s > 0 for s in scale):
        return size, None
    stds = tuple(round(1 / (255 * s), 10) for s in scale)   # 0.229, not 0.22900000000000004
    means = tuple(round(-o / (255 * s), 10) + 0.0 for o, s in zip(offset, scale))
    if all(abs(m) < 1e-12 for m in means) and all(abs(s - 1) < 1e-9 for s in stds):
        return size, "none"
    return size, (means, stds)


def _converter(folder: Path) -> dict | None:
    if (folder / CONVERTER).is_file():
        return _read_json(folder / CONVERTER).get("config") or {}
    if (folder / PREPROCESSOR).is_file():
        inner = (_read_json(folder / PREPROCESSOR).get("config") or {}).get("image_converter")
        if isinstance(inner, dict):
            return inner.get("config") or {}
    return None


def load(path):
    """The task model of a keras-hub preset directory with its ``Hints``; local files only (no hub handle
    is ever resolved: the path is a directory that exists)."""
    folder = Path(path).resolve()
    try:
        import keras_hub
    except ImportError:
        raise XcamError(missing("kerashub", "a keras-hub preset directory")) from None
    if not (folder / TASK).is_file():
        raise XcamError(f"{str(folder)!r} is a keras-hub preset without task.json (a backbone only): xcam needs "
                        "a task with a head, e.g. an ImageClassifier saved with task.save_to_preset(DIR)")
    task = _read_json(folder / TASK)
    name = task.get("class_name")
    cls = getattr(keras_hub.models, name, None) if isinstance(name, str) else None
    if cls is None:
        import keras

        cls = keras.saving.get_registered_object(str(task.get("registered_name")))
    if cls is None or not hasattr(cls, "from_preset"):
        raise XcamError(f"{str(folder)!r}: task.json names {name!r}, which keras-hub {keras_hub.__version__} "
                        "does not have")
    try:
        model = cls.from_preset(str(folder))
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise XcamError(f"cannot load the keras-hub preset in {str(folder)!r}: {first}") from None
    found = _converter(folder)
    size, norm = converter_hints(found) if found is not None else (None, None)
    source = "keras-hub preset" + (" image converter" if found is not None else "")
    return attach(model, Hints(size=size, normalize=norm, source=source))
