"""One set of cases, run on both frameworks: the adapter contract, closed-form gradients, targets, errors,
and the model left exactly as it was."""

import numpy as np
import pytest

import xcam
from xcam import XcamError


def test_capture_layout_and_closed_form_gradients(fw):
    # act2 feeds global average pooling then fc: d y_c / d A_k(i, j) = W[c, k] / (h * w) everywhere
    cap = fw.capture(fw.act2, targets=[0, 1])
    assert cap.activations.shape == cap.gradients.shape == (2, 3, 8, 8)
    assert cap.activations.dtype == np.float32 and cap.scores.shape == (2, 2)
    w = fw.fc_weight
    for n, c in enumerate([0, 1]):
        np.testing.assert_allclose(cap.gradients[n], np.broadcast_to(w[c][:, None, None] / 64, (3, 8, 8)),
                                   rtol=1e-5, atol=1e-8)
    # the logits are GAP(A) @ W.T + b: check the scores against the captured activations
    gap = cap.activations.mean(axis=(2, 3))
    np.testing.assert_allclose(cap.scores - gap @ w.T, np.broadcast_to((cap.scores - gap @ w.T)[0], (2, 2)),
                               atol=1e-5)


def test_gradcam_on_gap_model_is_relu_of_cam(fw):
    # Grad-CAM weights are W[c, k] / (hw), so Grad-CAM = normalize(ReLU(CAM raw)) on a GAP + linear model
    cap = fw.capture(fw.act2, targets=1, head=True)
    raw = np.einsum("k,nkhw->nhw", fw.fc_weight[1], cap.activations)
    expected = xcam.normalize_minmax(np.maximum(raw, 0))
    np.testing.assert_allclose(fw.cam(fw.act2, "gradcam", 1, size=(8, 8)), expected, atol=1e-5)
    np.testing.assert_allclose(fw.cam(fw.act2, "cam", 1), xcam.normalize_minmax(raw), atol=1e-5)


def test_layercam_matches_formula_on_captured_values(fw):
    cap = fw.capture(fw.conv2, targets=0)
    expected = xcam.normalize_minmax(np.maximum((np.maximum(cap.gradients, 0) * cap.activations).sum(1), 0))
    np.testing.assert_allclose(fw.cam(fw.conv2, "layercam", 0), expected, atol=1e-5)


def test_targets_default_int_and_sequence(fw):
    top = fw.capture(fw.conv2).scores.argmax(1)
    np.testing.assert_array_equal(fw.capture(fw.conv2).targets, top)
    np.testing.assert_array_equal(fw.capture(fw.conv2, targets=1).targets, [1, 1])
    np.testing.assert_array_equal(fw.capture(fw.conv2, targets=[1, 0]).targets, [1, 0])


def test_several_classes_in_one_call_equal_separate_calls(fw):
    both = fw.cam(fw.conv2, "gradcam", classes=[0, 1])
    assert both.shape == (2, 2, 8, 8)
    np.testing.assert_allclose(both[:, 0], fw.cam(fw.conv2, "gradcam", 0), atol=1e-5)
    np.testing.assert_allclose(both[:, 1], fw.cam(fw.conv2, "gradcam", 1), atol=1e-5)


def test_size_argument(fw):
    assert fw.cam(fw.conv2, size=(5, 7)).shape == (2, 5, 7)
    own = fw.cam(fw.conv2, size=(8, 8))
    cap = fw.capture(fw.conv2)
    np.testing.assert_allclose(own, xcam.compute_cam(cap, "gradcam"), atol=1e-6)


@pytest.mark.parametrize("targets, message", [
    (5, r"class index 5 is out of range: the model has 2 classes, valid indices are 0\.\.1"),
    (-3, r"class index -3 is out of range"),
    ([0, 1, 1], r"targets has 3 entries but the batch has 2 samples"),
    ("cat", r"targets must be None, an int or a sequence of ints"),
])
def test_bad_targets_are_one_line_errors(fw, targets, message):
    with pytest.raises(XcamError, match=message) as err:
        fw.cam(fw.conv2, "gradcam", targets)
    assert "\n" not in str(err.value)


def test_out_of_range_class_names_the_labels(fw):
    with pytest.raises(XcamError, match=r"valid indices are 0\.\.1 \(0=cat, 1=dog\)"):
        fw.cam(fw.conv2, "gradcam", 1873, labels=["cat", "dog"])
    with pytest.raises(XcamError, match="out of range"):
        fw.cam(fw.conv2, "gradcam", classes=[0, 2])


def test_unknown_layer_suggests_nearest(fw):
    with pytest.raises(XcamError, match=r"unknown layer 'conv3'; nearest: conv\w*"):
        fw.cam("conv3")


def test_layer_without_spatial_output_is_refused(fw):
    with pytest.raises(XcamError, match=r"layer 'fc' outputs .* not a spatial map"):
        fw.cam("fc")


def test_cam_needs_a_gap_linear_head(fw):
    with pytest.raises(XcamError, match="method 'cam' needs global average pooling then one"):
        fw.cam(fw.conv2.replace("2", "1") if fw.name == "torch" else "conv1", "cam")


def test_model_is_left_as_it_was(fw):
    if fw.name == "torch":
        fw.model.train()
        fw.cam(fw.conv2)
        assert fw.model.training and all(m.training for m in fw.model.modules())
        assert all(p.grad is None for p in fw.model.parameters())
        assert all(not m._forward_hooks and not m._backward_hooks for m in fw.model.modules())
        with pytest.raises(XcamError):
            fw.cam(fw.conv2, "gradcam", 9)
        assert all(not m._forward_hooks for m in fw.model.modules())
        import torch
        assert torch.is_grad_enabled()
    else:
        fw.cam(fw.conv2)
        with pytest.raises(XcamError):
            fw.cam(fw.conv2, "gradcam", 9)
        assert all("call" not in vars(layer) for layer in fw.model.layers)


def test_repeated_calls_give_identical_maps(fw):
    first = fw.cam(fw.conv2, "layercam", [1, 0])
    for _ in range(3):
        np.testing.assert_array_equal(fw.cam(fw.conv2, "layercam", [1, 0]), first)


def test_import_of_core_loads_no_framework():
    import subprocess
    import sys

    code = ("import sys, xcam, xcam.app.cli, xcam.app.jobs.explain, xcam.app.jobs.demo, xcam.app.outputs.report, "
            "xcam.app.models.zoo.torchfile, xcam.app.models.frameworks; "
            "bad = [m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_ablationcam_closed_form_on_gap_head(fw):
    # zeroing channel k of act2 lowers logit c by W[c, k] * mean(A_k): w_k = W[c, k] mean(A_k) / |y_c|
    cap = fw.capture(fw.act2, targets=[0, 1])
    w = fw.fc_weight[[0, 1]] * cap.activations.mean(axis=(2, 3))
    w /= np.abs(cap.scores[[0, 1], [0, 1]])[:, None]
    expected = xcam.normalize_minmax(np.maximum(np.einsum("nk,nkhw->nhw", w, cap.activations), 0))
    np.testing.assert_allclose(fw.cam(fw.act2, "ablationcam", [0, 1]), expected, atol=1e-5)


def test_scorecam_equals_the_straightforward_loop(fw):
    # one forward per channel, one channel at a time, straight through the framework
    cap = fw.capture(fw.conv2, targets=[1, 0])
    expected = []
    for n in range(2):
        weights = []
        for k in range(cap.activations.shape[1]):
            up = xcam.resize_bilinear(cap.activations[n, k][None], (8, 8))
            mask = xcam.normalize_minmax(up)[0]
            logits = fw.predict(fw.x_nchw[n:n + 1] * mask)
            weights.append(xcam.softmax(logits)[0, cap.targets[n]])
        expected.append(np.maximum(np.einsum("k,khw->hw", weights, cap.activations[n]), 0))
    np.testing.assert_allclose(fw.cam(fw.conv2, "scorecam", [1, 0], options={"batch_size": 2}),
                               xcam.normalize_minmax(np.stack(expected)), atol=1e-5)


def test_several_layers_fuse_like_separate_maps(fw):
    caps = fw.capture(["conv1", fw.conv2], targets=1)
    raws = [xcam.raw_maps(c, "layercam") for c in caps]
    np.testing.assert_allclose(fw.cam(["conv1", fw.conv2], "layercam", 1), xcam.fuse(raws, (8, 8)), atol=1e-6)
    # one forward and one backward: each layer's capture equals a single-layer capture
    np.testing.assert_allclose(caps[0].gradients, fw.capture("conv1", targets=1).gradients, atol=1e-6)


@pytest.mark.parametrize("method", ["guidedbackprop", "guidedgradcam", "saliency"])
def test_pixel_methods_leave_the_model_as_it_was(fw, method):
    before = fw.relu_state()
    out = fw.cam(fw.conv2, method, [0, 1])
    assert out.shape == (2, 8, 8) and out.max() == 1.0
    assert fw.relu_state() == before
    np.testing.assert_allclose(fw.predict(fw.x_nchw), fw.capture(fw.conv2).scores, atol=1e-5)


def test_guided_backprop_and_saliency_closed_form(fw):
    # y_c = v_c . mean_p relu(W x_p + b) with 1x1 convs: dy/dx_p = W^T (v_c [z_p > 0]) / P, and guided
    # backprop passes only the positive part of v_c: W^T (relu(v_c) [z_p > 0]) / P
    import torch

    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    x = fw.x_nchw
    if fw.name == "torch":
        model, inputs, module = net, torch.from_numpy(x), fw.module
    else:
        from xcam.app.models.porting_keras import build
        from xcam.app.models.porting_torch import describe
        model, inputs, module = build(describe(net, (3, 8, 8)), (8, 8, 3)), x.transpose(0, 2, 3, 1), fw.module
    w = net[0].weight.detach().numpy()[:, :, 0, 0]
    b = net[0].bias.detach().numpy()
    v = net[4].weight.detach().numpy()
    z = np.einsum("oc,nchw->nohw", w, x) + b[None, :, None, None]
    on = (z > 0).astype(np.float32)
    c = 0
    assert (v[c] < 0).any() and (v[c] > 0).any()  # the guided and plain gradients must differ
    plain = np.einsum("oc,o,nohw->nchw", w, v[c], on) / 64
    guided = np.einsum("oc,o,nohw->nchw", w, np.maximum(v[c], 0), on) / 64
    layer = "0"  # the first conv, named "0" in both (ported names keep PyTorch's)
    np.testing.assert_allclose(module.cam(model, inputs, layer, "saliency", c),
                               xcam.normalize_minmax(np.abs(plain).max(1)), atol=1e-5)
    np.testing.assert_allclose(module.cam(model, inputs, layer, "guidedbackprop", c),
                               xcam.normalize_minmax(np.abs(guided).max(1)), atol=1e-5)
