"""What a model file says about feeding the model (``Hints``): input size, normalization and class names, read
by the loaders that know them (a Hugging Face preprocessor_config.json and id2label, a timm pretrained_cfg,
a keras-hub preset) and used by the CLI where the user gave none."""

from dataclasses import dataclass

_ATTR = "_xcam_hints"


@dataclass(frozen=True)
class Hints:
    """size: (H, W) the model is fed; normalize: ((means), (stds)) after scaling to [0, 1], or "none";
    labels: the class names in output order; source: where they were read (for the log)."""

    size: tuple | None = None
    normalize: object = None
    labels: tuple | None = None
    source: str = ""


def attach(model, hints: Hints):
    """``model`` carrying ``hints`` (an attribute set by the loader that built it); returns the model."""
    object.__setattr__(model, _ATTR, hints)
    return model


def hints_of(model) -> Hints:
    """The hints a loader attached to ``model``, or empty ones."""
    found = getattr(model, _ATTR, None)
    return found if isinstance(found, Hints) else Hints()


def missing(extra: str, what: str) -> str:
    """The one-line message for a loader whose package is missing."""
    return f"{what} needs the {extra!r} extra: pip install 'xcam[{extra}]'"
