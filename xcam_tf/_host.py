"""NumPy arrays handed to TensorFlow: aligned float32 host memory without a copy."""

import numpy as np
import tensorflow as tf

from xcam.ops import ALIGNMENT


def host_tensor(array: np.ndarray) -> tf.Tensor:
    """``array`` as a float32 tensor. A writeable, C-contiguous float32 array whose data starts on an
    ``ALIGNMENT``-byte boundary (``xcam.ops.aligned_empty``) is shared through DLPack (TensorFlow needs that
    alignment: ``tf.constant`` copies every array, 60 ms for 4000 rows of 64x64x3); any other is copied.
    The tensor keeps the array alive. Only for arrays handed over for one model call, whose tensor nothing
    keeps after it (the probe's rows: the core's perturbed, noisy or interpolated inputs, or its own copies); a
    capture's batch is always copied (``as_batch``), as the caller may change it after the call."""
    if (isinstance(array, np.ndarray) and array.dtype == np.float32 and array.size
            and array.flags.c_contiguous and array.flags.writeable and array.ctypes.data % ALIGNMENT == 0):
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    return tf.constant(array, tf.float32)
