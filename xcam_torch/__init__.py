"""xcam for PyTorch: a thin adapter that hands the NumPy core activations, gradients and logits
(``xcam.contract.Adapter``; every formula is in ``xcam``). Inputs and layers are channels first.

>>> maps = xcam_torch.cam(model, x, "features.10", method="gradcam", targets=[0, 1])  # (N, H, W) in [0, 1]
"""

import sys

from xcam.concepts import concepts_for
from xcam.filters import visualize_filters_for
from xcam.pipeline import attribute_for, cam_for

from ._capture import LAYOUT, capture, linear_head, resolve_module
from ._layers import input_shape, layer_records
from ._probe import activation_gradient, kernels, probe
from ._randomize import parameter_layers, randomized

NAME = "torch"
cam = cam_for(sys.modules[__name__])
attribute = attribute_for(sys.modules[__name__])
visualize_filters = visualize_filters_for(sys.modules[__name__])
concepts = concepts_for(sys.modules[__name__])

__all__ = ["LAYOUT", "NAME", "activation_gradient", "attribute", "cam", "capture", "concepts", "input_shape", "kernels",
           "layer_records", "linear_head",
           "parameter_layers", "probe", "randomized", "resolve_module", "visualize_filters"]
