"""The same tiny networks in PyTorch and Keras (weights ported), behind one small interface for tests.

TinyNet: conv(3->4, 3x3, pad 1) -> ReLU -> conv(4->3, 3x3, pad 1) ["conv2"] -> ReLU ["act2"]
         -> global average pool -> linear(3 -> 2).  Input 8x8.
"""

import numpy as np


def torch_tiny(seed=0, inplace=False):
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
            self.act1 = nn.ReLU(inplace=inplace)
            self.conv2 = nn.Conv2d(4, 3, 3, padding=1)
            self.act2 = nn.ReLU(inplace=inplace)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            x = self.act2(self.conv2(self.act1(self.conv1(x))))
            return self.fc(torch.flatten(self.pool(x), 1))

    return Tiny().eval()


class Kit:
    """name, model, inputs (framework layout), layer names, and helpers that hide the framework."""

    def __init__(self, name, model, module, x_nchw):
        self.name, self.model, self.module = name, model, module
        self.x_nchw = x_nchw
        self.inputs = x_nchw if name == "torch" else x_nchw.transpose(0, 2, 3, 1)
        self.conv2, self.act2 = ("conv2", "act2")

    def cam(self, *args, **kwargs):
        return self.module.cam(self.model, self.inputs, *args, **kwargs)

    def capture(self, *args, **kwargs):
        return self.module.capture(self.model, self.inputs, *args, **kwargs)

    def predict(self, x_nchw: np.ndarray) -> np.ndarray:
        """Logits straight from the framework, no xcam involved."""
        if self.name == "torch":
            import torch

            with torch.no_grad():
                return self.model(torch.from_numpy(np.ascontiguousarray(x_nchw))).numpy()
        return np.asarray(self.model(np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)), training=False))

    def relu_state(self):
        """What guided backprop must not change: each module's type and in-place flag / each layer's activation."""
        if self.name == "torch":
            return [(n, type(m).__name__, getattr(m, "inplace", None), len(m._forward_hooks),
                     len(m._backward_hooks)) for n, m in self.model.named_modules()]
        return [(layer.name, getattr(layer, "activation", None), "call" in vars(layer)) for layer in self.model.layers]

    @property
    def fc_weight(self) -> np.ndarray:
        if self.name == "torch":
            return self.model.fc.weight.detach().numpy()
        return np.asarray(self.model.get_layer("fc").kernel.numpy()).T


def make_kit(name, seed=0):
    x = np.random.RandomState(seed + 1).randn(2, 3, 8, 8).astype(np.float32)
    tmodel = torch_tiny(seed)
    if name == "torch":
        import xcam_torch

        return Kit("torch", tmodel, xcam_torch, x)
    import xcam_tf
    from xcam.app.models.porting_keras import build
    from xcam.app.models.porting_torch import describe

    return Kit("tf", build(describe(tmodel, (3, 8, 8)), (8, 8, 3)), xcam_tf, x)
