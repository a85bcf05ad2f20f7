"""xcam: class activation maps for PyTorch and Keras through one NumPy core.

The core (this package, outside ``xcam.app``) imports only NumPy and OpenCV. ``xcam_torch`` and ``xcam_tf``
fetch activations, gradients and logits into a :class:`Capture`; every formula is here. Imports run one way:
errors <- ops <- inputs, layouts <- contract, targets, layers <- maps <- methods <- pipeline, filters <-
adapters <- app.
"""

from . import methods
from .concepts import Concepts, concept_picture
from .contract import Adapter, Capture, Probe
from .errors import XcamError
from .layouts import Layout
from .maps import combine, fuse
from .methods import Method, get_method, method_names, register
from .montage import clip_frames, clip_strip, signal_plot, volume_montage, volume_slices
from .notebook import Shown, show, show_cam
from .ops import normalize_minmax, relu, resize, resize_bilinear, softmax
from .pipeline import compute_cam, explain, raw_maps
from .viz import colorize, feature_grid, overlay

__version__ = "0.2.0"
__all__ = [
    "Adapter", "Capture", "Layout", "Method", "Probe", "Shown", "XcamError", "clip_frames", "clip_strip",
    "colorize",
    "combine", "compute_cam", "explain", "feature_grid", "fuse", "get_method", "method_names", "methods",
    "normalize_minmax", "overlay", "raw_maps", "register", "relu", "resize", "resize_bilinear", "show",
    "show_cam", "signal_plot",
    "softmax", "volume_montage", "volume_slices",
    "Concepts", "concept_picture",
]
