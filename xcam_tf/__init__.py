"""xcam for TensorFlow/Keras 3 (``xcam.contract.Adapter``): inputs and layers are channels last, and what the
core receives is moved to channels first; a final softmax is traced as the identity, so logits are explained.

>>> maps = xcam_tf.cam(model, x, "block5_conv3", method="gradcam", targets=[0, 1])  # (N, H, W) in [0, 1]
"""

import sys

from xcam.concepts import concepts_for
from xcam.filters import visualize_filters_for
from xcam.pipeline import attribute_for, cam_for

from ._capture import LAYOUT, capture, linear_head, resolve_layer
from ._layers import input_shape, layer_records
from ._probe import activation_gradient, kernels, probe
from ._randomize import parameter_layers, randomized

NAME = "tf"
cam = cam_for(sys.modules[__name__])
attribute = attribute_for(sys.modules[__name__])
visualize_filters = visualize_filters_for(sys.modules[__name__])
concepts = concepts_for(sys.modules[__name__])

__all__ = ["LAYOUT", "NAME", "activation_gradient", "attribute", "cam", "capture", "concepts", "input_shape", "kernels",
           "layer_records", "linear_head",
           "parameter_layers", "probe", "randomized", "resolve_layer", "visualize_filters"]
