"""Activation methods: maps from the activations alone (CAM's head weights, Eigen-CAM's principal component)."""

import numpy as np

from ..errors import XcamError
from ..factorize import factorize
from ..maps import extreme_signed, kernel_principal_map, principal_map
from .registry import MethodArgs, choice, register


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


@register("fem", title="FEM", needs_gradients=False, options={"k": 2.0},
          paper="Fuad et al., Features understanding in 3D CNNs for actions recognition in video, IPTA 2020, "
                "hal-02963298 (pytorch-grad-cam's FEM)")
def fem(x: MethodArgs) -> np.ndarray:
    r"""Feature Explanation Method: a k-sigma rule per channel. t_k = mean_p A_k(p) + k * std_p A_k(p)
    (population std over the Z positions of the signal, image or volume), w_k = (1/Z) #{p : A_k(p) > t_k};
    L = ReLU(\sum_k w_k A_k). Option k (default 2, the paper's and pytorch-grad-cam's). Class-independent.
    Any spatial rank (pytorch-grad-cam: 2-D and 3-D only)."""
    a = x.activations
    k = float(x.options["k"])
    threshold = a.mean(axis=x.axes, keepdims=True) + k * a.std(axis=x.axes, keepdims=True)
    return (a > threshold).mean(axis=x.axes).astype(np.float32)


@register("randomcam", title="Random-CAM", needs_gradients=False, options={"seed": 0},
          paper="baseline: random channel weights (pytorch-grad-cam's RandomCAM)")
def randomcam(x: MethodArgs) -> np.ndarray:
    r"""A sanity-check baseline: w_k^c ~ U(-1, 1) independently per sample, class and channel;
    L^c = ReLU(\sum_k w_k^c A_k). Option seed (default 0; None draws fresh weights every call): the weights are
    NumPy's ``RandomState(seed).uniform(-1, 1, (N, [K,] C))``, so the same seed gives the same map on every
    framework, and for one class per sample the same weights as pytorch-grad-cam after ``np.random.seed(seed)``
    (it draws from NumPy's global generator, unseeded)."""
    channels = x.activations.shape[-x.rank - 1]
    seed = x.options["seed"]
    rng = np.random.RandomState(None if seed is None else int(seed))
    return rng.uniform(-1, 1, size=np.shape(x.targets) + (channels,)).astype(np.float32)


@register("kpcacam", title="KPCA-CAM", kind="map", needs_gradients=False, weighted=lambda x: x.activations,
          options={"kernel": "sigmoid", "gamma": None},
          paper="Karmani et al., KPCA-CAM: Visual Explainability of Deep Computer Vision Models using Kernel PCA, "
                "MMSP 2024, arXiv:2410.00267")
def kpcacam(x: MethodArgs) -> np.ndarray:
    r"""Eigen-CAM with kernel PCA: positions x channels centred over positions, kernel matrix K (options kernel:
    sigmoid tanh(gamma <a_p, a_q> + 1) (default, as pytorch-grad-cam's KPCA_CAM), rbf or linear; gamma=None is
    1/C, sklearn's default), double-centred; L = ReLU(sqrt(lambda_1) v_1), the leading kernel component.
    The eigenvector's sign is arbitrary (the anchor takes sklearn's); it is fixed so that L correlates
    positively with \sum_k A_k, as for eigencam. Class-independent. Cost: a P x P eigenproblem per map
    (P positions). Written in NumPy (the anchor calls sklearn.decomposition.KernelPCA)."""
    kernel = choice(x.options, "kernel", ("sigmoid", "rbf", "linear"))
    gamma = x.options["gamma"]
    return kernel_principal_map(x.activations, x.rank, kernel, None if gamma is None else float(gamma))


@register("segeigencam", title="Seg-Eigen-CAM", kind="map", options={"sign": "extreme"},
          weighted=lambda x: np.abs(x.gradients) * x.activations,
          paper="Chung & Ying, Seg-Eigen-CAM: Eigen-Value-Based Visual Explanations for Semantic Segmentation "
                "Models, Applied Sciences 2025, doi:10.3390/app15137562")
def segeigencam(x: MethodArgs) -> np.ndarray:
    r"""L^c = ReLU(first principal component over positions of |dy^c/dA| \odot A) (Eq. 10-12).
    Option sign: "extreme" (default, the paper's Eq. 13 and pytorch-grad-cam's SegEigenCAM): the projection
    is negated where |min| > |max|; "correlation": signed to correlate positively with
    \sum_k |dy^c/dA_k| \odot A_k, as eigencam. Where |min| = |max| exactly the anchor keeps the SVD's sign
    and ours keeps the correlation sign."""
    mode = choice(x.options, "sign", ("extreme", "correlation"))
    proj = principal_map(np.abs(x.gradients) * x.activations, x.rank)
    return extreme_signed(proj, x.rank) if mode == "extreme" else proj


@register("dff", title="Deep Feature Factorization", kind="map", needs_gradients=False, needs_head=True,
          options={"k": 5, "seed": 0, "max_iter": 200, "tol": 1e-4},
          paper="Collins et al., Deep Feature Factorization For Concept Discovery, ECCV 2018, arXiv:1806.10206")
def dff(x: MethodArgs) -> np.ndarray:
    r"""The map of the concept that scores the target class highest. Each sample's activations (C, positions)
    minus their per-channel minimum ~ W H (non-negative matrix factorization into k concepts,
    ``xcam.factorize``: pytorch-grad-cam's ``dff``, scikit-learn's random start from ``seed`` and coordinate
    descent); concept j's vector v_j = W_j + min scores S_jc = w_c . v_j through the head's row c (the bias does
    not change which j is highest); L^c = H_{j*} with j* = argmax_j S_jc. Options k (default 5, as
    pytorch-grad-cam's ``dff``), seed, max_iter, tol. Needs a class target and the head after global average
    pooling, as ``cam``. Each sample is factorized alone (the samples' problems swept together), so a map does
    not depend on the rest of the batch (``xcam_torch.concepts`` factorizes the batch jointly, as
    pytorch-grad-cam does); the per-concept maps and scores: ``xcam_torch.concepts`` / ``xcam_tf.concepts``."""
    if (np.asarray(x.targets) < 0).any():
        raise XcamError("method 'dff' explains a class (the concept the head scores highest for class c); use "
                        "gradcam for this target")
    several = x.targets.ndim == 2
    acts = x.activations[:, 0] if several else x.activations
    targets = x.targets if several else x.targets[:, None]
    opts = {"max_iter": int(x.options["max_iter"]), "tol": float(x.options["tol"]), "seed": x.options["seed"]}
    vectors, concept_maps, _ = factorize(acts, x.options["k"], each=True, **opts)   # (N, C, k), (N, k, *s)
    best = (x.head_weights[targets] @ vectors).argmax(axis=2)       # (N, K): each sample's concept per class
    maps = np.take_along_axis(concept_maps, best.reshape(*best.shape, *([1] * (concept_maps.ndim - 2))), axis=1)
    return maps if several else maps[:, 0]
