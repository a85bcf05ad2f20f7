"""Issue #19 item 6: a pixel method runs the model only as often as its formula needs, on both frameworks.

A counting layer at the end of the model records every forward (its rows) and every backward through it. With
3 inputs and the default 32 rows per call, the input-gradient methods need: one forward and one backward per
32 rows of their points (the inputs, noisy copies, path points), no layer capture, no default-layer search
(its dry run would be a forward of 1 row); Integrated Gradients adds one forward of the 3 inputs and their
baselines (the completeness check); a top-1 class (targets None) costs one forward of the 3 inputs for the
methods whose points are not the inputs themselves (the class is that of the input), none for the others.
RISE, Sobol and HSIC (forwards only, fast options here) make their masked copies' forwards and nothing else.
"""

import numpy as np
import pytest

N = 3
X = np.random.RandomState(0).randn(N, 3, 10, 10).astype(np.float32)

# method: (forward rows, backwards) for explicit classes (25 noisy copies, 50 path points, 5 SHAP samples)
NEEDED = {
    "saliency": ([3], 1),
    "gradientxinput": ([3], 1),
    "deconvnet": ([3], 1),
    "guidedbackprop": ([3], 1),
    "smoothgrad": ([32, 32, 11], 3),
    "vargrad": ([32, 32, 11], 3),
    "squaregrad": ([32, 32, 11], 3),
    "integratedgradients": ([32, 32, 32, 32, 22, 6], 5),
    "gradientshap": ([15], 1),
    "fullgrad": ([3], 1),       # input and every bias gradient from one backward
}
MASKS = {  # method: (options, forward rows for explicit classes); occlusion and the others below it: the N
    # unperturbed inputs first (ablations), then all inputs' copies, batch_size rows a call whatever input
    "rise": ({"n_masks": 40}, [32] * N + [8] * N),                 # each mask batch on every input in turn
    "sobol": ({"nb_design": 4, "grid_size": 2}, [24] * N),         # 4 (d + 2) rows, d = 4 cells
    "hsic": ({"nb_design": 20, "grid_size": 2}, [20] * N),
    # 3 x 3 windows (starts 0, 3, 6 of 10) / 2 x 2 superpixels / 10 samples of each of the N = 3 inputs
    "occlusion": ({"window": 4, "stride": 3, "batch_size": 4}, [N] + [4] * 6 + [3]),
    "featureablation": ({"cells": 2, "batch_size": 3}, [N] + [3] * 4),
    "lime": ({"n_samples": 10, "batch_size": 4}, [4] * 7 + [2]),
    "kernelshap": ({"n_samples": 10, "batch_size": 4}, [4] * 7 + [2]),
}
AT_INPUTS = {"saliency", "gradientxinput", "deconvnet", "guidedbackprop", "fullgrad"}


class TorchCounted:
    """A small ReLU CNN whose output passes a counting identity (rows per forward, backwards)."""

    def __init__(self):
        import torch
        from torch import nn

        counts = self.counts = {"rows": [], "backwards": 0}

        class Count(torch.autograd.Function):
            @staticmethod
            def forward(ctx, t):
                counts["rows"].append(int(t.shape[0]))
                return t.clone()

            @staticmethod
            def backward(ctx, g):
                counts["backwards"] += 1
                return g

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                          nn.Flatten(), nn.Linear(4, 5))

            def forward(self, x):
                return Count.apply(self.body(x))

        torch.manual_seed(0)
        self.model = Net().eval()
        self.inputs = X
        self.conv = "body.0"

    def attribute(self, *args, **kwargs):
        import xcam_torch
        return xcam_torch.attribute(self.model, self.inputs, *args, **kwargs)

    def cam(self, *args, layer=None, **kwargs):
        import xcam_torch
        return xcam_torch.cam(self.model, self.inputs, layer, *args, **kwargs)


class KerasCounted:
    """The Keras counterpart: a counting identity layer (``tf.py_function`` runs in the compiled step too)."""

    def __init__(self):
        import keras
        import tensorflow as tf

        counts = self.counts = {"rows": [], "backwards": 0}

        def forward(rows):
            counts["rows"].append(int(rows))
            return 0

        def backward():
            counts["backwards"] += 1
            return 0

        class Count(keras.layers.Layer):
            def call(self, t):
                @tf.custom_gradient
                def ident(u):
                    done = tf.py_function(forward, [tf.shape(u)[0]], tf.int32)
                    with tf.control_dependencies([done]):
                        out = tf.identity(u)

                    def grad(g):
                        with tf.control_dependencies([tf.py_function(backward, [], tf.int32)]):
                            return tf.identity(g)
                    return out, grad
                return ident(t)

        keras.utils.set_random_seed(0)
        inp = keras.Input((10, 10, 3))
        h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
        out = Count()(keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(h)))
        self.model = keras.Model(inp, out)
        self.inputs = np.ascontiguousarray(np.moveaxis(X, 1, -1))
        self.conv = self.model.layers[1].name

    def attribute(self, *args, **kwargs):
        import xcam_tf
        return xcam_tf.attribute(self.model, self.inputs, *args, **kwargs)

    def cam(self, *args, layer=None, **kwargs):
        import xcam_tf
        return xcam_tf.cam(self.model, self.inputs, layer, *args, **kwargs)


@pytest.fixture(scope="module", params=[pytest.param("torch", marks=pytest.mark.torch),
                                        pytest.param("tf", marks=pytest.mark.tf)])
def counted(request):
    kit = TorchCounted() if request.param == "torch" else KerasCounted()
    kit.attribute("saliency", [0, 1, 2])  # compiled steps (Keras) traced once: tracing runs no py_function
    return kit


def calls(kit, fn) -> tuple[list, int]:
    kit.counts["rows"].clear()
    kit.counts["backwards"] = 0
    fn()
    return list(kit.counts["rows"]), kit.counts["backwards"]


@pytest.mark.parametrize("method", sorted(NEEDED))
def test_explicit_classes_cost_exactly_the_method_s_batched_gradients(counted, method):
    rows, backwards = NEEDED[method]
    fns = {"attribute": lambda: counted.attribute(method, [0, 3, 1]),
           "cam": lambda: counted.cam(method, [0, 3, 1])}
    for name, fn in fns.items():
        fn()  # traced (Keras) with these shapes
        assert calls(counted, fn) == (rows, backwards), (name, method)


@pytest.mark.parametrize("method", sorted(NEEDED))
def test_a_top1_class_costs_one_forward_only_where_the_points_are_not_the_inputs(counted, method):
    rows, backwards = NEEDED[method]
    expected = (rows if method in AT_INPUTS else [N] + rows, backwards)
    counted.attribute(method)
    assert calls(counted, lambda: counted.attribute(method)) == expected


@pytest.mark.parametrize("method", ["saliency", "fullgrad", "smoothgrad"])
def test_a_layer_given_to_a_method_that_uses_none_costs_no_capture(counted, method):
    """The layer is only checked to exist: the same calls and maps as without it; a wrong name still fails."""
    from xcam.errors import XcamError

    rows, backwards = NEEDED[method]
    without = counted.cam(method, [0, 3, 1])
    assert calls(counted, lambda: counted.cam(method, [0, 3, 1], layer=counted.conv)) == (rows, backwards)
    np.testing.assert_array_equal(counted.cam(method, [0, 3, 1], layer=counted.conv), without)
    with pytest.raises(XcamError, match="no_such_layer"):
        counted.cam(method, [0, 3, 1], layer="no_such_layer")
    assert calls(counted, lambda: counted.attribute(method, [0, 3, 1], layer=counted.conv)) == (rows, backwards)


def test_several_classes_take_one_batched_gradient_per_class(counted):
    counted.attribute("gradientxinput", classes=[1, 2])
    assert calls(counted, lambda: counted.attribute("gradientxinput", classes=[1, 2])) == ([3, 3], 2)


def test_the_completeness_check_is_the_only_forward_integrated_gradients_adds(counted):
    options = {"tolerance": None}
    counted.attribute("integratedgradients", 1, options=options)
    got = calls(counted, lambda: counted.attribute("integratedgradients", 1, options=options, batch_size=150))
    assert got == ([150], 1)


@pytest.mark.parametrize("method", sorted(MASKS))
def test_mask_methods_run_only_their_masked_forwards(counted, method):
    options, rows = MASKS[method]
    counted.attribute(method, [0, 3, 1], options=options)
    assert calls(counted, lambda: counted.attribute(method, [0, 3, 1], options=options)) == (rows, 0)
    assert calls(counted, lambda: counted.cam(method, [0, 3, 1], options=options)) == (rows, 0)
    counted.attribute(method, options=options)
    assert calls(counted, lambda: counted.attribute(method, options=options)) == ([N] + rows, 0)  # + the top-1


@pytest.mark.parametrize("method", ["occlusion", "featureablation", "lime", "kernelshap"])
def test_the_calls_batch_size_reaches_the_perturbation_methods(counted, method):
    """batch_size= of the call sets their rows per forward as the option does (the option wins over it)."""
    options, rows = MASKS[method]
    rest = {k: v for k, v in options.items() if k != "batch_size"}
    counted.attribute(method, [0, 3, 1], options=rest, batch_size=options["batch_size"])
    assert calls(counted, lambda: counted.attribute(method, [0, 3, 1], options=rest,
                                                    batch_size=options["batch_size"])) == (rows, 0)
    assert calls(counted, lambda: counted.attribute(method, [0, 3, 1], options=options, batch_size=1000)) == (rows, 0)


@pytest.mark.parametrize("method", ["occlusion", "featureablation", "lime", "kernelshap", "rise"])
def test_a_batch_size_below_one_is_a_one_line_error(counted, method):
    from xcam import XcamError

    for kwargs in ({"options": {"batch_size": 0}}, {"batch_size": 0}):
        with pytest.raises(XcamError, match=r"^batch_size=0 is not valid; give a positive number of rows per model "
                                            r"call$"):
            counted.attribute(method, [0, 3, 1], **kwargs)
