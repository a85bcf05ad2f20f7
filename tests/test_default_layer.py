"""``layer=None`` (#21 item 3): cam and capture pick the layer the CLI picks (``xcam.app.jobs.explain.choose_layer``,
one rule in ``xcam.layers.default_layer``) and the Capture names it; on the tiny CNN of both adapters (kits.py:
conv1, act1, conv2, act2, then a pooling layer and a linear head the rule must skip)."""

import io
from types import SimpleNamespace

import numpy as np
import pytest

from xcam.app.jobs.explain import choose_layer
from xcam.app.models.frameworks import load_framework
from xcam.errors import XcamError


def cli_layer(fw) -> str:
    """The layer `xcam explain` uses for this model at 8x8 when no --layer is given (and what it logs)."""
    log = io.StringIO()
    job = SimpleNamespace(framework=load_framework(fw.name), model=fw.model, input_size=8, layer=None, log=log)
    layer = choose_layer(job)[2]
    assert f"explaining layer {layer} " in log.getvalue()
    return layer


def test_default_layer_is_the_clis(fw):
    layer = cli_layer(fw)
    assert layer.rsplit("/", 1)[-1] == "act2"  # past the pooling layer and the head, the last spatial layer
    assert fw.capture(None).layer == fw.capture(layer).layer == layer
    for method in ("gradcam", "scorecam"):
        np.testing.assert_array_equal(fw.cam(method=method), fw.cam(layer, method=method))
    np.testing.assert_array_equal(fw.cam(None, "gradcampp", 1), fw.cam(layer, "gradcampp", 1))
    cap, ref = fw.capture(None, targets=1), fw.capture(layer, targets=1)
    np.testing.assert_array_equal(cap.activations, ref.activations)
    np.testing.assert_array_equal(cap.gradients, ref.gradients)
    # a different layer gives different maps: the default is not ignored
    assert not np.array_equal(fw.cam(), fw.cam(fw.conv2))


def test_default_layer_with_several_inputs_is_a_one_line_error(fw):
    with pytest.raises(XcamError, match="several inputs give the layer") as err:
        fw.module.capture(fw.model, [fw.inputs], None)
    assert "\n" not in str(err.value)
