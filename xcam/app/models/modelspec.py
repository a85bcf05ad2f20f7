"""How to build a model anywhere: a small, picklable description that a Ray actor (or any other process)
turns into the framework and the model, so the model is never pickled and shipped itself."""

from collections.abc import Callable
from dataclasses import dataclass

from xcam.app.models.frameworks import FRAMEWORKS, load_framework
from xcam.errors import XcamError


@dataclass(frozen=True)
class ModelSpec:
    """A model file with its loader options (``path``, ``trust_model``, ``arch``, ``num_classes``, as on the
    command line), or ``factory``: a picklable callable (a module-level function) that returns the model.
    ``demo=True`` is the bundled demo model of ``framework``."""

    framework: str
    path: str | None = None
    trust_model: bool = False
    arch: str | None = None
    num_classes: int | None = None
    factory: Callable | None = None
    demo: bool = False

    def build(self):
        """(Framework, model): the model loaded from its file, made by the factory, or the demo model."""
        if self.framework not in FRAMEWORKS:
            raise XcamError(f"unknown framework {self.framework!r}; valid: {', '.join(FRAMEWORKS)}")
        framework = load_framework(self.framework)
        if self.demo:
            from xcam.app.models.zoo import demo_model

            return framework, demo_model(self.framework)
        if self.factory is not None:
            return framework, self.factory()
        if self.path is None:
            raise XcamError("a ModelSpec needs a model path, a factory, or demo=True")
        return framework, framework.load_model(self.path, trust_model=self.trust_model, arch=self.arch,
                                               num_classes=self.num_classes)
