"""`xcam explain --target/--output` end to end: a torchvision FCN (dict output) explained for a segmentation
class, a Keras model with two named outputs explained for its regression head; the maps on disk equal the
Python API's, summary.json records the target; bad specs and missing output choices are one-line errors."""

import json

import numpy as np
import pytest
from test_cli import IMAGES, error_line, run_cli

from xcam.app.inputs.images import load_image, preprocess


@pytest.fixture(scope="module")
def fcn_file(tmp_path_factory):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=3,
                                                         aux_loss=True).eval()
    path = tmp_path_factory.mktemp("fcn") / "fcn.pth"
    torch.save(model, path)
    return model, path


def fcn_args(path, out, *extra):
    return ("explain", "--model", path, "--trust-model", "--images", *IMAGES, "--input-size", "64",
            "--layer", "backbone.layer4", "--labels", "bg,cat,dog", "--out", out, "--quiet", *extra)


@pytest.mark.slow
def test_explain_segmentation_target_on_a_dict_output(capsys, tmp_path, fcn_file):
    import xcam_torch

    model, path = fcn_file
    out = tmp_path / "seg"
    code, _, err = run_cli(capsys, *fcn_args(path, out, "--target", "segmentation:1:predicted", "--output", "out",
                                             "--methods", "gradcam", "saliency"))
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target"] == {"kind": "segmentation", "class": 1, "mask": "predicted", "reduce": "sum"}
    assert summary["columns"] == ["segmentation cat"]
    x = preprocess([load_image(p) for p in IMAGES], (64, 64)).transpose(0, 3, 1, 2)
    cap = xcam_torch.capture(model, x, "backbone.layer4", "segmentation:1:predicted", output="out")
    for entry, score in zip(summary["images"], cap.target_scores):
        assert entry["predicted"] == "-" and entry["probabilities"] == {}
        np.testing.assert_allclose(entry["target_score"], score, rtol=1e-5)
    for method in ("gradcam", "saliency"):
        expected = xcam_torch.cam(model, x, "backbone.layer4", method, "segmentation:1:predicted", output="out")
        for i, entry in enumerate(summary["images"]):
            record = entry["maps"][method]["segmentation cat"]
            assert record["map"].endswith(f"{method}_segmentation_cat.npy")
            got = np.load(out / record["map"])
            if method == "gradcam":
                np.testing.assert_allclose(got, expected[i], atol=1e-5)
            else:  # input gradients through 50 random-weight layers follow float32 rounding, which changes with
                # the memory layout and thread count (measured: max 9e-3 on a few pixels, mean 1e-4)
                assert np.abs(got - expected[i]).max() < 3e-2 and np.abs(got - expected[i]).mean() < 1e-3


@pytest.mark.slow
def test_dict_output_without_a_choice_and_bad_targets_are_one_line_errors(capsys, tmp_path, fcn_file):
    _, path = fcn_file
    cases = [((), r"returns a dict with outputs 'out' (1, 3, 64, 64), 'aux' (1, 3, 64, 64); choose the one to "
                  "explain with output= (e.g. output='out')"),
             (("--target", "segmentation:7", "--output", "out"), "class index 7 is out of range: the model has 3 "
                                                                  "classes, valid indices are 0..2 (0=bg, 1=cat"),
             (("--target", "segmentation:1", "--output", "outt"), "no output 'outt' (did you mean out"),
             (("--target", "segment:1"), "unknown kind 'segment'; valid forms: class, class:281"),
             (("--target", "class:1", "--classes", "cat"), "give either --target or --classes")]
    for i, (extra, message) in enumerate(cases):
        out = tmp_path / f"o{i}"
        code, _, err = run_cli(capsys, *fcn_args(path, out, *extra))
        assert code == 2 and message in error_line(err), err
        assert not out.exists()


@pytest.mark.slow
def test_explain_keras_second_named_output(capsys, tmp_path):
    pytest.importorskip("tensorflow")
    import keras

    import xcam_tf

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    feats = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    pooled = keras.layers.GlobalAveragePooling2D()(feats)
    model = keras.Model(inp, {"cls": keras.layers.Dense(2, name="cls")(pooled),
                              "size": keras.layers.Dense(1, name="size")(pooled)})
    path = tmp_path / "two.keras"
    model.save(path)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "explain", "--model", path, "--images", *IMAGES, "--layer", "conv",
                           "--target", "regression", "--output", "size", "--out", out, "--quiet")
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target"] == {"kind": "regression", "index": None} and summary["columns"] == ["regression"]
    x = preprocess([load_image(p) for p in IMAGES], (32, 32))
    expected = xcam_tf.cam(model, x, "conv", "gradcam", "regression", output="size")
    got = np.load(out / summary["images"][0]["maps"]["gradcam"]["regression"]["map"])
    np.testing.assert_allclose(got, expected[0], atol=1e-5)
    code, _, err = run_cli(capsys, "explain", "--model", path, "--images", *IMAGES, "--layer", "conv",
                           "--out", tmp_path / "none", "--quiet")
    assert code == 2 and "choose the one to explain with output= (e.g. output='cls')" in error_line(err)
