"""Targets as objects and output selection: closed-form golden gradients for every target kind on both
frameworks (the tiny networks of kits.py, weights ported), torch/Keras parity per target, probes scoring with
the same target, one-line errors (also from inside a compiled Keras step), inference_mode/no_grad."""

import numpy as np
import pytest

import xcam
from xcam import XcamError
from xcam.targets import (
    Binary,
    Boxes,
    Class,
    Custom,
    NumpyOps,
    Regression,
    Segmentation,
    Similarity,
    as_target,
    evaluate,
    parse_target,
    select_output,
)

# ---------------------------------------------------------------- core, NumPy only


def test_parse_target_specs_and_json():
    assert parse_target("class").to_json() == {"kind": "class", "index": None, "space": "logit"}
    assert parse_target("class:281").to_json() == {"kind": "class", "index": 281, "space": "logit"}
    assert parse_target("class:3:probability").space == "probability"
    assert parse_target("binary").to_json() == {"kind": "binary", "positive": True, "space": "logit"}
    assert parse_target("binary:negative").positive is False
    assert parse_target("regression:2").to_json() == {"kind": "regression", "index": 2}
    seg = parse_target("segmentation:15:predicted")
    assert seg.to_json() == {"kind": "segmentation", "class": 15, "mask": "predicted", "reduce": "sum"}
    assert parse_target("segmentation:15").mask is None
    for bad, why in [("klass:3", "unknown kind 'klass'"), ("class:x", "'x' is not an integer"),
                     ("binary:maybe", "neither positive nor negative"), ("segmentation", "wrong number")]:
        with pytest.raises(XcamError, match=why) as err:
            parse_target(bad)
        assert "\n" not in str(err.value) and "valid forms: class, class:281" in str(err.value)


def test_as_target_keeps_ints_and_lists():
    assert isinstance(as_target(None), Class) and as_target(None).index is None
    np.testing.assert_array_equal(as_target([1, 0]).params(2)["index"], [1, 0])
    np.testing.assert_array_equal(as_target(None, classes=[0, 1]).params(2)["index"], [[0, 1], [0, 1]])
    assert isinstance(as_target(lambda out: out[:, 0]), Custom)
    with pytest.raises(XcamError, match="targets must be None, an int or a sequence of ints"):
        as_target("cat")
    with pytest.raises(XcamError, match="give either targets or classes"):
        as_target(Binary(), classes=[0, 1])


def test_select_output_by_key_index_attribute_name_and_callable():
    a, b = np.zeros((2, 3)), np.ones((2, 4))

    class HF:  # a Hugging Face-style output object
        def __init__(self):
            self.logits, self.hidden_states, self.loss = a, b, None

    assert select_output(a) is a
    assert select_output({"out": a}) is a                       # one entry: no need to name it
    assert select_output({"out": a, "aux": b}, "aux") is b
    assert select_output((a, b), 1) is b
    assert select_output([a, b], "second", names=["first", "second"]) is b
    assert select_output(HF(), "logits") is a
    assert select_output((a, b), lambda out: out[0]) is a
    with pytest.raises(XcamError, match=r"returns a dict with outputs 'out' \(2, 3\), 'aux' \(2, 4\); choose "
                                        r"the one to explain with output= \(e\.g\. output='out'\)"):
        select_output({"out": a, "aux": b})
    with pytest.raises(XcamError, match=r"no output 'logit' \(did you mean logits\?\)"):
        select_output(HF(), "logit")
    with pytest.raises(XcamError, match="no output 2"):
        select_output((a, b), 2)
    whole = [{"boxes": a}]
    assert select_output(whole, whole=True) is whole


def test_numpy_scores_of_every_kind():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4)).astype(np.float32)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(evaluate(Class(), logits), logits.max(1), rtol=1e-6)
    np.testing.assert_allclose(evaluate(Class([1, 2, 3], "probability"), logits), p[[0, 1, 2], [1, 2, 3]], rtol=1e-5)
    np.testing.assert_allclose(evaluate(Class(2, "log-probability"), logits), np.log(p[:, 2]), rtol=1e-5)
    z = logits[:, :1]
    np.testing.assert_allclose(evaluate(Binary(False, "probability"), z), 1 / (1 + np.exp(z[:, 0])), rtol=1e-5)
    np.testing.assert_allclose(evaluate(Regression(3), logits), logits[:, 3])
    r = np.array([1.0, -1.0, 0.5, 2.0], np.float32)
    cos = logits @ r / np.linalg.norm(logits, axis=1) / np.linalg.norm(r)
    np.testing.assert_allclose(evaluate(Similarity(r), logits), cos, rtol=1e-5)
    np.testing.assert_allclose(evaluate(Similarity(r, "dot"), logits), logits @ r, rtol=1e-5)
    seg = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    mask = (rng.random((4, 5)) > 0.5).astype(np.float32)
    np.testing.assert_allclose(evaluate(Segmentation(1, mask), seg), (seg[:, 1] * mask).sum((1, 2)), rtol=1e-5)
    np.testing.assert_allclose(evaluate(Segmentation(1, mask, "mean"), seg),
                               (seg[:, 1] * mask).sum((1, 2)) / mask.sum(), rtol=1e-5)
    predicted = seg.argmax(1) == 2
    np.testing.assert_allclose(evaluate(Segmentation([2, 2], "predicted"), seg),
                               (seg[:, 2] * predicted).sum((1, 2)), rtol=1e-5)
    fixed = Segmentation(2, "predicted").resolve(seg)
    np.testing.assert_array_equal(fixed.mask, predicted)


def test_boxes_closed_form_on_both_output_formats():
    det = {"boxes": np.array([[[0, 0, 2, 2], [1, 1, 3, 3], [0, 0, 2, 2]]], np.float32),
           "labels": np.array([[1, 2, 2]]), "scores": np.array([[0.9, 0.8, 0.3]], np.float32)}
    # box 1 matches detection 0 exactly (IoU 1); box 2 (label 2) overlaps detection 1 with IoU 4/5 and
    # detection 2 with IoU 1/7.5: the best same-label one is taken; box 3 has no match above 0.5
    target = Boxes([[0, 0, 2, 2], [1, 1, 3, 3.5], [10, 10, 11, 11]], [1, 2, 1])
    expected = (1 + 0.9) + (0.8 + 0.8)
    np.testing.assert_allclose(evaluate(target, det), [expected], rtol=1e-6)
    per_image = [{k: v[0] for k, v in det.items()}, {k: v[0, :0] for k, v in det.items()}]  # 2nd: none found
    two = Boxes([[[0, 0, 2, 2]], [[0, 0, 2, 2]]], [[1], [1]])
    np.testing.assert_allclose(evaluate(two, per_image), [1.9, 0.0], rtol=1e-6)
    assert Boxes([[0, 0, 1, 1]], [3], iou=0.7).to_json() == {"kind": "boxes", "boxes": [[0, 0, 1, 1]],
                                                            "labels": [3], "iou": 0.7}
    with pytest.raises(XcamError, match="one label per box"):
        Boxes([[0, 0, 1, 1]], [1, 2])
    with pytest.raises(XcamError, match="a Boxes target needs a detector's output"):
        Boxes([[0, 0, 1, 1]], [1]).check(np.zeros((2, 3)))


def test_target_checks_are_one_line_errors():
    logits = np.zeros((2, 3), np.float32)
    cases = [(Class(5), logits, r"class index 5 is out of range: the model has 3 classes"),
             (Binary(), logits, r"Binary needs one value per sample, \(N,\) or \(N, 1\); .* \(2, 3\)"),
             (Regression(), logits, r"give index= to pick a column"),
             (Regression(7), logits, r"Regression index 7 is out of range"),
             (Segmentation(1), logits, r"needs class maps \(N, K, H, W\)"),
             (Segmentation(4), np.zeros((2, 3, 4, 4)), r"class index 4 is out of range"),
             (Segmentation(1, np.ones((3, 3))), np.zeros((2, 3, 4, 4)), r"mask is 3x3 but the class maps are 4x4"),
             (Similarity(np.ones(5)), logits, r"reference has 5 values but the selected output has shape")]
    for target, out, message in cases:
        with pytest.raises(XcamError, match=message) as err:
            target.check(out)
        assert "\n" not in str(err.value)
    with pytest.raises(XcamError, match="choose one of: logit, probability, log-probability"):
        Class(1, "prob")
    with pytest.raises(XcamError, match="reduce='max' is not valid"):
        Segmentation(1, reduce="max")


def test_numpy_ops_satisfy_the_protocol():
    assert isinstance(NumpyOps(), xcam.targets.TensorOps)


# ---------------------------------------------------------------- both frameworks: golden gradients

W64 = 64.0  # act2 is 8x8 and feeds global average pooling: d GAP_k / d A_k(i, j) = 1/64


def expect_rows(cap, rows):
    """Gradients (N, 3, 8, 8) equal to rows (N, 3) / 64 at every position."""
    expected = np.broadcast_to((np.asarray(rows) / W64)[:, :, None, None], cap.gradients.shape)
    np.testing.assert_allclose(cap.gradients, expected, rtol=2e-5, atol=1e-8)


def _framework_stack(fw):
    if fw.name == "torch":
        import torch

        return torch.stack
    import tensorflow as tf

    return tf.stack


def test_class_spaces_golden(fw):
    w = fw.fc_weight
    cap = fw.capture(fw.act2, targets=Class([0, 1], "probability"))
    p = xcam.softmax(cap.scores)
    rows = [p[n, c] * (w[c] - p[n] @ w) for n, c in enumerate([0, 1])]
    expect_rows(cap, rows)
    np.testing.assert_allclose(cap.target_scores, p[[0, 1], [0, 1]], rtol=1e-5)
    cap = fw.capture(fw.act2, targets=Class(1, "log-probability"))
    expect_rows(cap, [w[1] - p[n] @ w for n in range(2)])
    assert cap.target.to_json() == {"kind": "class", "index": [1, 1], "space": "log-probability"}
    top = fw.capture(fw.act2, targets=Class())
    np.testing.assert_array_equal(top.targets, top.scores.argmax(1))
    expect_rows(top, w[top.scores.argmax(1)])


def test_binary_and_regression_golden(fw):
    w = fw.fc_weight
    one_logit = lambda out: out[:, :1]  # noqa: E731 (a (N, 1) output picked by a callable)
    cap = fw.capture(fw.act2, targets=Binary(), output=one_logit)
    expect_rows(cap, [w[0], w[0]])
    np.testing.assert_allclose(cap.target_scores, cap.scores[:, 0], rtol=1e-6)
    np.testing.assert_array_equal(cap.targets, [1, 1])
    cap = fw.capture(fw.act2, targets=Binary(positive=False, space="probability"), output=one_logit)
    s = 1 / (1 + np.exp(cap.scores[:, 0]))                      # sigmoid(-z)
    expect_rows(cap, [-(s[n] * (1 - s[n])) * w[0] for n in range(2)])
    cap = fw.capture(fw.act2, targets=Regression(1))
    expect_rows(cap, [w[1], w[1]])
    assert (cap.targets == -1).all()


def test_similarity_golden(fw):
    w, r = fw.fc_weight, np.array([0.3, -1.2], np.float32)
    cap = fw.capture(fw.act2, targets=Similarity(r))
    e = cap.scores
    ne, nr = np.linalg.norm(e, axis=1, keepdims=True), np.linalg.norm(r)
    dcos = r / (ne * nr) - (e @ r)[:, None] * e / (ne ** 3 * nr)            # d cos / d e, (N, 2)
    expect_rows(cap, dcos @ w)
    np.testing.assert_allclose(cap.target_scores, (e @ r) / (ne[:, 0] * nr), rtol=1e-5)


def test_custom_target_golden(fw):
    w = fw.fc_weight
    cap = fw.capture(fw.act2, targets=lambda out, ops: out[:, 0] - 2 * out[:, 1])
    expect_rows(cap, [w[0] - 2 * w[1]] * 2)
    assert cap.target.to_json() == {"kind": "custom", "name": "<lambda>"}


def test_boxes_golden(fw):
    # a detector stand-in: one detection per image, box (0, 0, 10 + o0, 10 + o1), score o0, label 1. The wanted
    # box (0, 0, 20, 20) contains it: IoU = (10 + o0)(10 + o1) / 400 (about 0.25, above iou=0.2), y = IoU + o0
    w, stack = fw.fc_weight, _framework_stack(fw)

    def detector(out):
        zero = out[:, 0] * 0
        boxes = stack([zero, zero, 10 + out[:, 0], 10 + out[:, 1]], 1)[:, None]
        return {"boxes": boxes, "labels": zero[:, None] + 1, "scores": out[:, :1]}

    cap = fw.capture(fw.act2, targets=Boxes([[0, 0, 20, 20]], [1], iou=0.2), output=detector)
    o = fw.capture(fw.act2).scores.T  # the logits, (2, N)
    np.testing.assert_allclose(cap.target_scores, (10 + o[0]) * (10 + o[1]) / 400 + o[0], rtol=1e-5)
    rows = [((10 + o[1, n]) / 400 + 1) * w[0] + (10 + o[0, n]) / 400 * w[1] for n in range(2)]
    expect_rows(cap, rows)
    assert cap.scores.shape == (2, 0)  # a structured output: no logits to record


def seg_torch_model():
    """The kits' network with a 1x1 conv head "head" (3 -> 2 classes, weights of both signs) instead of pooling:
    class maps (N, 2, 8, 8)."""
    import torch
    from kits import torch_tiny
    from torch import nn

    tiny = torch_tiny(0)
    model = nn.Sequential()
    for name in ("conv1", "act1", "conv2", "act2"):
        model.add_module(name, getattr(tiny, name))
    model.add_module("head", nn.Conv2d(3, 2, 1))
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor([[1.0, -0.5, 0.8], [-0.7, 0.9, 0.4]])[:, :, None, None])
        model.head.bias.copy_(torch.tensor([0.02, -0.01]))
    return model.eval()


@pytest.fixture(params=["torch", "tf"])
def seg(request):
    """A segmentation kit (see ``seg_torch_model``) and its head weights (2, 3)."""
    pytest.importorskip({"torch": "torch", "tf": "tensorflow"}[request.param])
    from kits import Kit

    model = seg_torch_model()
    x = np.random.RandomState(1).randn(2, 3, 8, 8).astype(np.float32)
    head = model.head.weight.detach().numpy()[:, :, 0, 0]
    if request.param == "torch":
        import xcam_torch

        return Kit("torch", model, xcam_torch, x), head
    import xcam_tf
    from xcam.app.models.porting_keras import build
    from xcam.app.models.porting_torch import describe

    return Kit("tf", build(describe(model, (3, 8, 8)), (8, 8, 3)), xcam_tf, x), head


@pytest.mark.parametrize("mask, reduce", [(None, "sum"), ("predicted", "sum"), ("array", "mean")])
def test_segmentation_golden(seg, mask, reduce):
    # maps = sum_k H[c, k] A_k + b_c: d (sum_ij M_ij maps_c) / d A_k(i, j) = H[c, k] M_ij
    kit, head = seg
    maps = kit.predict(kit.x_nchw)
    maps = maps if kit.name == "torch" else maps.transpose(0, 3, 1, 2)
    m = {None: np.ones((2, 8, 8)), "predicted": (maps.argmax(1) == 1).astype(np.float32),
         "array": np.broadcast_to(np.eye(8, dtype=np.float32), (2, 8, 8))}[mask]
    given = np.eye(8, dtype=np.float32) if mask == "array" else mask
    cap = kit.capture("act2", targets=Segmentation(1, given, reduce))
    scale = m.sum((1, 2)) if reduce == "mean" else np.ones(2)
    expected = head[1][None, :, None, None] * m[:, None] / scale[:, None, None, None]
    np.testing.assert_allclose(cap.gradients, expected, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(cap.scores, maps, atol=1e-5)  # Keras class maps handed over channels first
    np.testing.assert_allclose(cap.target_scores, (maps[:, 1] * m).sum((1, 2)) / scale, rtol=1e-5)
    if mask == "predicted":
        np.testing.assert_array_equal(cap.target.mask, m)  # resolved: the probes score the same mask


# ---------------------------------------------------------------- parity per target, probes with targets

TARGETS = {
    "class": lambda: (Class([1, 0], "probability"), None),
    "binary": lambda: (Binary(False), lambda out: out[:, 1:]),
    "regression": lambda: (Regression(), lambda out: -out[:, 1:]),
    "similarity": lambda: (Similarity([0.3, -1.2]), None),
    "custom": lambda: (Custom(lambda out, ops: -ops.sigmoid(out[:, 0]) * out[:, 1]), None),
}


@pytest.fixture(scope="module")
def both():
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    from kits import make_kit

    return make_kit("torch"), make_kit("tf")


@pytest.mark.parametrize("kind", sorted(TARGETS))
@pytest.mark.parametrize("method", ["gradcam", "scorecam", "ablationcam", "saliency"])
def test_parity_per_target_and_method(both, kind, method):
    tk, kk = both
    target, output = TARGETS[kind]()
    if method == "gradcam":
        ct, ck = (k.capture(k.act2, targets=target, output=output) for k in both)
        np.testing.assert_allclose(ct.gradients, ck.gradients, atol=3.7e-7, rtol=1e-4)
        np.testing.assert_allclose(ct.target_scores, ck.target_scores, atol=1e-6)
    mt, mk = (k.cam(k.act2, method, target, output=output) for k in both)
    assert mt.max() == 1.0 or method == "ablationcam"
    np.testing.assert_allclose(mt, mk, atol=1e-4)


def majority_classes(kit) -> list:
    maps = kit.predict(kit.x_nchw)
    maps = maps if kit.name == "torch" else maps.transpose(0, 3, 1, 2)
    return [int(np.bincount(m.argmax(0).ravel(), minlength=2).argmax()) for m in maps]


def test_segmentation_parity_every_method_family(seg):
    kit, _ = seg
    target = Segmentation(majority_classes(kit), "predicted")
    maps = {m: kit.cam("act2", m, target) for m in ("gradcam", "scorecam", "ablationcam", "saliency", "eigencam")}
    # probes score the same resolved target: Score-CAM's weights are the masked-input scores on the first mask
    cap = kit.capture("act2", targets=target)
    probe = kit.module.probe(kit.model, kit.inputs, "act2")
    s = probe.score(kit.x_nchw, cap.target, np.arange(2))
    np.testing.assert_allclose(s, cap.target_scores, rtol=1e-5)
    grads = probe.input_gradients(kit.x_nchw, cap.target)
    assert np.abs(grads).max() > 0
    for name, m in maps.items():
        assert m.shape == (2, 8, 8) and np.isfinite(m).all() and m.max() == 1.0, name


def test_segmentation_maps_agree_across_frameworks():
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    import torch

    import xcam_tf
    import xcam_torch
    from xcam.app.models.porting_keras import build
    from xcam.app.models.porting_torch import describe

    model = seg_torch_model()
    keras_model = build(describe(model, (3, 8, 8)), (8, 8, 3))
    x = np.random.RandomState(1).randn(2, 3, 8, 8).astype(np.float32)
    with torch.no_grad():
        classes = [int(np.bincount(m.argmax(0).ravel(), minlength=2).argmax()) for m in model(torch.from_numpy(x))]
    for target in (Segmentation(classes, "predicted"), Segmentation(classes, None, "mean")):
        for method in ("gradcam", "scorecam", "ablationcam", "saliency"):
            mt = xcam_torch.cam(model, x, "act2", method, target)
            mk = xcam_tf.cam(keras_model, x.transpose(0, 2, 3, 1), "act2", method, target)
            np.testing.assert_allclose(mt, mk, atol=1e-4, err_msg=f"{method} {target}")


# ---------------------------------------------------------------- errors and grad modes


def test_output_and_target_errors_are_one_line_on_both(fw):
    cases = [({"targets": Segmentation(1)}, r"a segmentation target needs class maps \(N, K, H, W\)"),
             ({"targets": Binary()}, r"Binary needs one value per sample"),
             ({"output": "logits"}, r"the model returns one tensor of shape \(\w*, 2\), which has no output"),
             ({"targets": Similarity(np.ones(5))}, r"similarity reference has 5 values")]
    for kwargs, message in cases:
        with pytest.raises(XcamError, match=message) as err:
            fw.cam(fw.conv2, "gradcam", **kwargs)
        assert "\n" not in str(err.value), str(err.value)
        assert type(err.value) is XcamError  # not a StagingError, not TensorFlow's re-raise with a traceback


def test_keras_compiled_step_error_is_the_plain_xcam_error():
    pytest.importorskip("tensorflow")
    from kits import make_kit

    kit = make_kit("tf")
    with pytest.raises(XcamError) as err:
        kit.cam("act2", "gradcam", Custom(lambda out: (_ for _ in ()).throw(XcamError("custom says no"))))
    assert str(err.value) == "custom says no"
    with pytest.raises(XcamError, match="custom says no") as err:
        kit.cam("act2", "saliency", Custom(lambda out: (_ for _ in ()).throw(XcamError("custom says no"))))
    assert "\n" not in str(err.value)


def test_torch_gradients_inside_inference_mode_and_no_grad():
    torch = pytest.importorskip("torch")
    from kits import make_kit

    kit = make_kit("torch")
    plain = kit.cam(kit.act2, "gradcam", [0, 1])
    for mode in (torch.inference_mode, torch.no_grad):
        with mode():
            x = torch.from_numpy(kit.x_nchw) * 1.0  # an inference tensor under inference_mode
            maps = kit.module.cam(kit.model, x, kit.act2, "gradcam", [0, 1])
            sal = kit.module.cam(kit.model, x, kit.act2, "saliency", [0, 1])
        np.testing.assert_array_equal(maps, plain)
        assert sal.max() == 1.0
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    with torch.inference_mode():
        from kits import torch_tiny
        frozen = torch_tiny(0)  # parameters are inference tensors
    with pytest.raises(XcamError, match=r"created inside torch\.inference_mode\(\)") as err:
        kit.module.cam(frozen, kit.x_nchw, "act2", "gradcam")
    assert "\n" not in str(err.value)
    assert kit.module.cam(frozen, kit.x_nchw, "act2", "eigencam").max() == 1.0  # no gradient needed


@pytest.mark.parametrize("module, cls", [pytest.param("xcam_torch._tensor_ops", "TorchOps", marks=pytest.mark.torch),
                                         pytest.param("xcam_tf._tensor_ops", "TFOps", marks=pytest.mark.tf)])
def test_adapter_ops_satisfy_the_protocol(module, cls):
    import importlib

    pytest.importorskip({"TorchOps": "torch", "TFOps": "tensorflow"}[cls])
    assert isinstance(getattr(importlib.import_module(module), cls)(), xcam.targets.TensorOps)
