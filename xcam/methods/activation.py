"""Activation methods: maps from the activations alone (CAM's head weights, Eigen-CAM's principal component)."""

import numpy as np

from ..errors import XcamError
from ..maps import principal_map
from .registry import MethodArgs, register


@register("cam", title="CAM", needs_gradients=False, needs_head=True, relu=False,
          paper="Zhou et al., Learning Deep Features for Discriminative Localization, CVPR 2016, arXiv:1512.04150")
def cam(x: MethodArgs) -> np.ndarray:
    r"""w_k^c = W_{c,k}, the final linear layer's weight after global average pooling;
    L^c = \sum_k w_k^c A_k (no ReLU in the paper; min-max normalization keeps negative evidence lowest).
    Needs a class target (the head's row c)."""
    if (np.asarray(x.targets) < 0).any():
        raise XcamError("method 'cam' explains a class (the head's weights of class c); use gradcam for this "
                        "target")
    return x.head_weights[x.targets]


@register("eigencam", title="Eigen-CAM", kind="map", needs_gradients=False, weighted=lambda x: x.activations,
          paper="Muhammad & Yeasin, Eigen-CAM, IJCNN 2020, arXiv:2008.00299")
def eigencam(x: MethodArgs) -> np.ndarray:
    r"""L = ReLU(projection of the centred activations (positions x channels) onto their first principal
    direction). The SVD's sign is arbitrary; it is fixed so that L correlates positively with \sum_k A_k
    (pytorch-grad-cam leaves it to chance, which can invert or zero the map). Class-independent."""
    return principal_map(x.activations, x.rank)


def check_head_weights(weight: np.ndarray | None, channels: int, num_classes: int) -> np.ndarray:
    """CAM's head: the model's last linear layer ``weight`` (out, in) must map the explained layer's channels to
    the classes (global average pooling, then one linear layer); returns it as float32 (K, C)."""
    if weight is None:
        raise XcamError("method 'cam' needs a final linear (dense) layer after global average pooling; the "
                        "model has none")
    w = np.asarray(weight, dtype=np.float32)
    if w.shape != (num_classes, channels):
        raise XcamError(f"method 'cam' needs global average pooling then one linear layer from the explained "
                        f"layer's {channels} channels to the {num_classes} classes; the last linear layer maps "
                        f"{w.shape[1]} -> {w.shape[0]} (use gradcam for this model)")
    return w
