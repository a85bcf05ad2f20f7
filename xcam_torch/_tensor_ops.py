"""``xcam.targets.TensorOps`` on PyTorch tensors: the operations targets are written with (no formulas here)."""

import numpy as np
import torch


def _t(x, like):
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=like.dtype, device=like.device)


class TorchOps:
    """Target operations on torch tensors (autograd flows through all but argmax/equal)."""

    def constant(self, array, like):
        """A NumPy array on ``like``'s device; floats in ``like``'s dtype, integers as int64."""
        a = np.asarray(array)
        dtype = like.dtype if a.dtype.kind == "f" else torch.int64 if a.dtype.kind in "iu" else None
        return torch.as_tensor(a, dtype=dtype, device=like.device)

    def shape(self, x):
        """The shape as a tuple of ints."""
        return tuple(x.shape)

    def take(self, x, index):
        """Per-row gather along axis 1."""
        rows = torch.arange(x.shape[0], device=x.device).reshape((-1,) + (1,) * (index.ndim - 1))
        return x[rows, index]

    def softmax(self, x, axis=1):
        """torch.softmax."""
        return torch.softmax(x, dim=axis)

    def log_softmax(self, x, axis=1):
        """torch.log_softmax."""
        return torch.log_softmax(x, dim=axis)

    def sigmoid(self, x):
        """torch.sigmoid."""
        return torch.sigmoid(x)

    def sum(self, x, axis):
        """torch.sum."""
        return torch.sum(x, dim=axis)

    def mean(self, x, axis):
        """torch.mean."""
        return torch.mean(x, dim=axis)

    def max(self, x, axis):
        """torch.amax."""
        return torch.amax(x, dim=axis)

    def argmax(self, x, axis):
        """torch.argmax."""
        return torch.argmax(x, dim=axis)

    def where(self, condition, a, b):
        """torch.where (scalars allowed)."""
        return torch.where(condition, a, b)

    def equal(self, a, b):
        """torch.eq."""
        return torch.eq(a, b)

    def maximum(self, a, b):
        """Element-wise maximum (a scalar ``b`` allowed)."""
        return torch.clamp(a, min=b) if not isinstance(b, torch.Tensor) else torch.maximum(a, _t(b, a))

    def minimum(self, a, b):
        """Element-wise minimum (a scalar ``b`` allowed)."""
        return torch.clamp(a, max=b) if not isinstance(b, torch.Tensor) else torch.minimum(a, _t(b, a))

    def sqrt(self, x):
        """torch.sqrt."""
        return torch.sqrt(x)

    def reshape(self, x, shape):
        """torch.reshape."""
        return torch.reshape(x, shape)

    def to_float(self, x):
        """As floating point (float32 unless already floating)."""
        return x if x.is_floating_point() else x.float()

    def clip(self, x, low, high):
        """torch.clamp."""
        return torch.clamp(x, low, high)

    def concat(self, tensors, axis):
        """torch.cat."""
        return torch.cat(list(tensors), dim=axis)
