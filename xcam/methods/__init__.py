"""Every method, split by family (``registry.FAMILIES``); importing this package registers them all.

``xcam.methods`` is this package, and calling it lists the registered names (``xcam.methods()``, kept from
before the split; ``method_names`` is the same function).
"""

import sys
import types

from . import (  # noqa: F401  (registers every method)
    activation,
    attribution_gradient,
    gradient,
    masks,
    occlusion,
    perturbation,
    pixel,
)
from .registry import Method, MethodArgs, get_method, method_names, reduce_channels, register, resolve_options

__all__ = ["Method", "MethodArgs", "get_method", "method_names", "reduce_channels", "register", "resolve_options"]


class _CallablePackage(types.ModuleType):
    """Lets ``xcam.methods(kind=None)`` list the method names while ``xcam.methods`` stays this package."""

    def __call__(self, kind: str | None = None) -> list[str]:
        return method_names(kind)


sys.modules[__name__].__class__ = _CallablePackage
