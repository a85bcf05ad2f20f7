"""The few tensor operations a target is written with (``TensorOps``), so that one target definition runs on
PyTorch tensors, on Keras/TensorFlow tensors inside a compiled step, and on NumPy arrays (``NumpyOps``, used by
the core and by the golden tests). Each adapter supplies its own implementation (``xcam_torch._tensor_ops``,
``xcam_tf._tensor_ops``); nothing else in a target touches a framework.

Conventions: ``axis`` is an int or a tuple of ints; integer tensors are the framework's index dtype; every
operation keeps gradients where the mathematics has them (``take``, ``where``, ``max``), none through
``argmax``/``equal``.
"""

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TensorOps(Protocol):
    """Tensor operations for targets; one implementation per framework."""

    def constant(self, array: np.ndarray, like: Any) -> Any:
        """A NumPy array as a tensor next to ``like`` (same device; floats in ``like``'s dtype)."""

    def shape(self, x) -> tuple:
        """The static shape (None where unknown)."""

    def take(self, x, index):
        """Per-row gather along axis 1: x (B, K, ...) with index (B,) -> (B, ...); index (B, J) -> (B, J, ...)."""

    def softmax(self, x, axis: int = 1):
        """exp(x) / sum exp(x) along ``axis``."""

    def log_softmax(self, x, axis: int = 1):
        """x - log sum exp(x) along ``axis``."""

    def sigmoid(self, x):
        """1 / (1 + exp(-x))."""

    def sum(self, x, axis):
        """Sum over ``axis``."""

    def mean(self, x, axis):
        """Mean over ``axis``."""

    def max(self, x, axis):
        """Maximum over ``axis`` (the gradient goes to the maximal entry)."""

    def argmax(self, x, axis: int):
        """Index of the maximum along ``axis`` (no gradient)."""

    def where(self, condition, a, b):
        """Element-wise ``a`` where ``condition`` else ``b`` (broadcasting)."""

    def equal(self, a, b):
        """Element-wise a == b (a boolean tensor)."""

    def maximum(self, a, b):
        """Element-wise maximum."""

    def minimum(self, a, b):
        """Element-wise minimum."""

    def sqrt(self, x):
        """Element-wise square root."""

    def reshape(self, x, shape: tuple):
        """``x`` with a new shape (-1 once allowed)."""

    def to_float(self, x):
        """``x`` as a floating tensor (booleans and integers become 0/1 and their values)."""

    def clip(self, x, low, high):
        """``x`` limited to [low, high] (ints or tensors)."""

    def concat(self, tensors: list, axis: int):
        """Tensors joined along ``axis``."""


class NumpyOps:
    """``TensorOps`` on NumPy arrays: the same targets evaluated in the core (golden tests, probes' outputs)."""

    def constant(self, array, like=None):
        """The array itself (floats as float32)."""
        a = np.asarray(array)
        return a.astype(np.float32) if a.dtype.kind == "f" else a

    def shape(self, x) -> tuple:
        """The array's shape."""
        return tuple(np.shape(x))

    def take(self, x, index):
        """Per-row gather along axis 1."""
        x, index = np.asarray(x), np.asarray(index)
        rows = np.arange(x.shape[0]).reshape((-1,) + (1,) * (index.ndim - 1))
        return x[rows, index]

    def softmax(self, x, axis=1):
        """Softmax along ``axis``."""
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    def log_softmax(self, x, axis=1):
        """Log-softmax along ``axis``."""
        z = x - np.max(x, axis=axis, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))

    def sigmoid(self, x):
        """Logistic function."""
        return 1.0 / (1.0 + np.exp(-np.asarray(x)))

    def sum(self, x, axis):
        """Sum over ``axis``."""
        return np.sum(x, axis=axis)

    def mean(self, x, axis):
        """Mean over ``axis``."""
        return np.mean(x, axis=axis)

    def max(self, x, axis):
        """Maximum over ``axis``."""
        return np.max(x, axis=axis)

    def argmax(self, x, axis):
        """Argmax along ``axis``."""
        return np.argmax(x, axis=axis)

    def where(self, condition, a, b):
        """np.where."""
        return np.where(condition, a, b)

    def equal(self, a, b):
        """a == b."""
        return np.equal(a, b)

    def maximum(self, a, b):
        """np.maximum."""
        return np.maximum(a, b)

    def minimum(self, a, b):
        """np.minimum."""
        return np.minimum(a, b)

    def sqrt(self, x):
        """np.sqrt."""
        return np.sqrt(x)

    def reshape(self, x, shape):
        """np.reshape."""
        return np.reshape(x, shape)

    def to_float(self, x):
        """As float32."""
        return np.asarray(x, dtype=np.float32)

    def clip(self, x, low, high):
        """np.clip."""
        return np.clip(x, low, high)

    def concat(self, tensors, axis):
        """np.concatenate."""
        return np.concatenate(tensors, axis=axis)
