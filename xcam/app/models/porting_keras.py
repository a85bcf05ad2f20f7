"""Rebuild a plain conv/pool/dense network in Keras from a framework-free plan (``porting_torch.describe``).

Layouts: conv kernels (out, in, kh, kw) -> (kh, kw, in, out); dense (out, in) -> (in, out); the first dense
after a flatten has its rows reordered from PyTorch's (C, H, W) flatten order to Keras' (H, W, C).
Layer names keep the PyTorch names with '.' -> '_' ("features.10" -> "features_10").
"""

import keras
import numpy as np

from xcam.errors import XcamError


def keras_name(torch_name: str) -> str:
    """A PyTorch module name as a Keras layer name: 'features.10' -> 'features_10'."""
    return torch_name.replace(".", "_")


def build(plan: list[dict], input_shape: tuple[int, int, int]) -> keras.Model:
    """A functional Keras model (input (H, W, C)) equal to the plan's network, weights set."""
    h, w, c = input_shape
    inputs = keras.Input((h, w, c))
    x = inputs
    flat_from = None  # (H, W, C) at the last flatten, until the next dense consumes it
    for step in plan:
        kind, name = step["type"], keras_name(step["name"])
        if kind == "conv":
            weight = step["weight"]
            if step["groups"] != 1:
                raise XcamError(f"cannot port {step['name']}: grouped convolution")
            ph, pw = step["padding"]
            if ph or pw:
                x = keras.layers.ZeroPadding2D(((ph, ph), (pw, pw)), name=f"{name}_pad")(x)
            layer = keras.layers.Conv2D(weight.shape[0], weight.shape[2:], strides=step["stride"],
                                        dilation_rate=step["dilation"], use_bias=step["bias"] is not None,
                                        name=name)
            x = layer(x)
            layer.set_weights([weight.transpose(2, 3, 1, 0)] + ([step["bias"]] if step["bias"] is not None else []))
        elif kind == "relu":
            x = keras.layers.ReLU(max_value=step["max"], name=name)(x)
        elif kind in ("maxpool", "avgpool"):
            cls = keras.layers.MaxPooling2D if kind == "maxpool" else keras.layers.AveragePooling2D
            x = cls(step["kernel"], strides=step["stride"], name=name)(x)
        elif kind == "adaptive_avgpool":
            (ih, iw), (oh, ow) = x.shape[1:3], step["output"]
            if ih % oh or iw % ow:
                raise XcamError(f"cannot port {step['name']}: adaptive pooling {ih}x{iw} -> {oh}x{ow} is not even")
            if (ih, iw) != (oh, ow):
                x = keras.layers.AveragePooling2D((ih // oh, iw // ow), name=name)(x)
        elif kind == "batchnorm":
            layer = keras.layers.BatchNormalization(epsilon=step["eps"], name=name)
            x = layer(x)
            layer.set_weights([step["gamma"], step["beta"], step["mean"], step["var"]])
        elif kind == "flatten":
            flat_from = tuple(x.shape[1:])
            x = keras.layers.Flatten(name=name)(x)
        elif kind == "dense":
            weight = step["weight"]
            if flat_from is not None:
                fh, fw, fc = flat_from
                weight = weight.reshape(-1, fc, fh, fw).transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)
                flat_from = None
            layer = keras.layers.Dense(weight.shape[0], name=name)
            x = layer(x)
            layer.set_weights([weight.T, step["bias"] if step["bias"] is not None else np.zeros(weight.shape[0])])
        else:
            raise XcamError(f"unknown plan step {kind!r}")
    return keras.Model(inputs, x)
