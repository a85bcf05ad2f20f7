"""``xcam.targets.TensorOps`` with TensorFlow ops (they run inside the compiled Keras steps; no formulas here)."""

import numpy as np
import tensorflow as tf


class TFOps:
    """Target operations on TensorFlow tensors (gradients flow through all but argmax/equal)."""

    def constant(self, array, like):
        """A NumPy array as a constant; floats in ``like``'s dtype, integers as int32."""
        a = np.asarray(array)
        dtype = like.dtype if a.dtype.kind == "f" else tf.int32 if a.dtype.kind in "iu" else None
        return tf.constant(a, dtype=dtype)

    def shape(self, x):
        """The static shape (None where unknown)."""
        return tuple(x.shape)

    def take(self, x, index):
        """Per-row gather along axis 1 (tf.gather with batch_dims=1)."""
        return tf.gather(x, tf.cast(index, tf.int32), axis=1, batch_dims=1)

    def softmax(self, x, axis=1):
        """tf.nn.softmax."""
        return tf.nn.softmax(x, axis=axis)

    def log_softmax(self, x, axis=1):
        """tf.nn.log_softmax."""
        return tf.nn.log_softmax(x, axis=axis)

    def sigmoid(self, x):
        """tf.sigmoid."""
        return tf.sigmoid(x)

    def sum(self, x, axis):
        """tf.reduce_sum."""
        return tf.reduce_sum(x, axis=axis)

    def mean(self, x, axis):
        """tf.reduce_mean."""
        return tf.reduce_mean(x, axis=axis)

    def max(self, x, axis):
        """tf.reduce_max."""
        return tf.reduce_max(x, axis=axis)

    def argmax(self, x, axis):
        """tf.argmax as int32."""
        return tf.argmax(x, axis=axis, output_type=tf.int32)

    def where(self, condition, a, b):
        """tf.where (scalars broadcast)."""
        a = tf.convert_to_tensor(a)
        b = tf.convert_to_tensor(b, dtype=a.dtype)
        return tf.where(condition, a, b)

    def equal(self, a, b):
        """tf.equal (integers compared as int32)."""
        a, b = tf.convert_to_tensor(a), tf.convert_to_tensor(b)
        if a.dtype.is_integer and b.dtype.is_integer:
            a, b = tf.cast(a, tf.int32), tf.cast(b, tf.int32)
        return tf.equal(a, b)

    def maximum(self, a, b):
        """tf.maximum."""
        return tf.maximum(a, tf.cast(b, a.dtype))

    def minimum(self, a, b):
        """tf.minimum."""
        return tf.minimum(a, tf.cast(b, a.dtype))

    def sqrt(self, x):
        """tf.sqrt."""
        return tf.sqrt(x)

    def reshape(self, x, shape):
        """tf.reshape."""
        return tf.reshape(x, shape)

    def to_float(self, x):
        """As float32 unless already floating."""
        return x if x.dtype.is_floating else tf.cast(x, tf.float32)

    def clip(self, x, low, high):
        """tf.clip_by_value (in ``x``'s dtype)."""
        return tf.clip_by_value(x, tf.cast(low, x.dtype), tf.cast(high, x.dtype))

    def concat(self, tensors, axis):
        """tf.concat."""
        return tf.concat(list(tensors), axis=axis)
