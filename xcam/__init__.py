"""xcam: class activation maps for PyTorch and Keras CNNs through one NumPy core.

The core (this package) imports only NumPy and OpenCV. ``xcam_torch`` and ``xcam_tf`` fetch activations,
gradients and logits into a :class:`Capture`; every formula is here.
"""

from .cam import combine, compute_cam, raw_maps
from .capture import Capture
from .errors import XcamError
from .methods import Method, get_method, methods, register
from .ops import normalize_minmax, relu, resize_bilinear, softmax
from .viz import colorize, feature_grid, overlay

__version__ = "0.1.0"
__all__ = [
    "Capture", "Method", "XcamError", "colorize", "combine", "compute_cam", "feature_grid", "get_method",
    "methods", "normalize_minmax", "overlay", "raw_maps", "register", "relu", "resize_bilinear", "softmax",
]
