"""Bundled models in Keras: EfficientNet-Lite0 with the ImageNet weights ported from the PyTorch file (read
without torch), and the cat/dog head. Layer names follow ``torch_lite0`` ('.' -> '_')."""

import keras
import numpy as np

from .lite0 import CAT_CLASSES, DOG_CLASSES, LITE0_BLOCKS, efficientnet_lite0_weights


@keras.saving.register_keras_serializable(package="xcam")
class ClassGroups(keras.layers.Layer):
    """logit_g = log sum_{c in group g} exp(logit_c): groups of a backbone's classes as new classes."""

    def __init__(self, groups, **kwargs):
        super().__init__(**kwargs)
        self.groups = [list(map(int, g)) for g in groups]

    def call(self, logits):
        return keras.ops.stack([keras.ops.logsumexp(keras.ops.take(logits, g, axis=1), axis=1)
                                for g in self.groups], axis=1)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


def _bn(name):
    return keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name=name)


def efficientnet_lite0(pretrained: bool = True, input_shape=(224, 224, 3)) -> keras.Model:
    """EfficientNet-Lite0 in Keras (layer names as in ``torch_lite0``), ImageNet weights when ``pretrained``."""
    inp = keras.Input(input_shape)
    x = keras.layers.Conv2D(32, 3, 2, padding="same", use_bias=False, name="_conv_stem")(inp)
    x = keras.layers.ReLU(6.0, name="stem_act")(_bn("_bn0")(x))
    for i, (cin, cout, kernel, stride, expand) in enumerate(LITE0_BLOCKS):
        p, y = f"_blocks_{i}_", x
        if expand != 1:
            y = keras.layers.Conv2D(cin * expand, 1, use_bias=False, name=p + "_expand_conv")(y)
            y = keras.layers.ReLU(6.0, name=p + "act0")(_bn(p + "_bn0")(y))
        y = keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False,
                                         name=p + "_depthwise_conv")(y)
        y = keras.layers.ReLU(6.0, name=p + "act1")(_bn(p + "_bn1")(y))
        y = _bn(p + "_bn2")(keras.layers.Conv2D(cout, 1, use_bias=False, name=p + "_project_conv")(y))
        x = keras.layers.Add(name=p + "add")([y, x]) if stride == 1 and cin == cout else y
    x = keras.layers.Conv2D(1280, 1, use_bias=False, name="_conv_head")(x)
    x = keras.layers.ReLU(6.0, name="head_act")(_bn("_bn1")(x))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inp, keras.layers.Dense(1000, name="_fc")(x), name="efficientnet_lite0")
    if pretrained:
        load_lite0_weights(model, efficientnet_lite0_weights())
    return model


def load_lite0_weights(model: keras.Model, state: dict) -> None:
    """Set a Keras Lite0's weights from the efficientnet_pytorch-layout state dict (NumPy arrays)."""
    for layer in model.layers:
        key = layer.name.replace("_blocks_", "_blocks.").replace("__", "._", 1) if "_blocks_" in layer.name \
            else layer.name
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            layer.set_weights([state[key + ".weight"].transpose(2, 3, 0, 1)])
        elif isinstance(layer, keras.layers.Conv2D):
            layer.set_weights([state[key + ".weight"].transpose(2, 3, 1, 0)])
        elif isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([state[key + s] for s in (".weight", ".bias", ".running_mean", ".running_var")])
        elif isinstance(layer, keras.layers.Dense):
            layer.set_weights([state[key + ".weight"].T, state[key + ".bias"]])


def cat_dog_model(pretrained: bool = True) -> keras.Model:
    """The demo's 2-class model: class 0 = cat (ImageNet 281-285), class 1 = dog (ImageNet 151-268)."""
    backbone = efficientnet_lite0(pretrained)
    out = ClassGroups([CAT_CLASSES, DOG_CLASSES], name="cat_dog")(backbone.output)
    return keras.Model(backbone.input, out, name="cat_dog_lite0")


__all__ = ["ClassGroups", "cat_dog_model", "efficientnet_lite0", "load_lite0_weights", "np"]
