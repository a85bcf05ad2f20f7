"""The command line end to end on real-size models (pickled torchvision AlexNet, Keras VGG16 as .keras),
and one test per bad input: a one-line error, the right exit code, and no half-written output."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from reportpage import metric_cells, outside_refs

import xcam
from xcam.app.cli import main
from xcam.app.inputs.images import load_image, preprocess
from xcam.app.models.zoo import demo_images

IMAGES = [str(p) for p in demo_images()]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("xcam: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.alexnet(num_classes=2).eval()
    folder = tmp_path_factory.mktemp("alex")
    torch.save(model, folder / "torch_alex.pth")          # the lab's whole pickled model
    torch.save(model.state_dict(), folder / "alex_state.pth")
    return model, folder


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    pytest.importorskip("tensorflow")
    import keras

    keras.utils.set_random_seed(0)
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(224, 224, 3))
    inp = keras.Input((224, 224, 3))
    out = keras.layers.Dense(2, activation="softmax", name="predictions")(
        keras.layers.GlobalAveragePooling2D()(base(inp)))
    model = keras.Model(inp, out)
    path = tmp_path_factory.mktemp("vgg") / "vgg16_catdog.keras"
    model.save(path)
    return model, path


def check_outputs(out: Path, methods=("gradcam", "layercam"), labels=("cat", "dog")):
    summary = json.loads((out / "summary.json").read_text())
    peaks = []
    assert [Path(e["image"]).name for e in summary["images"]] == [Path(p).name for p in IMAGES]
    for entry in summary["images"]:
        assert (out / entry["features"]).is_file()
        assert sum(entry["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        for m in methods:
            for lab in labels:
                files = entry["maps"][m][lab]
                assert files["class"] == lab
                heat = np.load(out / files["map"])
                assert heat.shape == (224, 224) and heat.dtype == np.float32
                assert heat.min() >= 0.0 and heat.max() <= 1.0  # all zero is legal: no positive evidence
                peaks.append(heat.max())
                assert (out / files["overlay"]).stat().st_size > 1000
    assert max(peaks) == 1.0
    # the lab's rows (the demo's evaluation section comes after them)
    html = (out / "report.html").read_text().split("<section id='xcam-evaluation'>")[0]
    assert html.count("<tr>") == 1 + len(IMAGES) and html.count("data:image/png;base64,") >= len(IMAGES) * 6
    assert not list(out.parent.glob(f".{out.name}.*partial"))
    return summary


@pytest.mark.torch
@pytest.mark.slow
def test_explain_pickled_alexnet_end_to_end(capsys, tmp_path, alexnet_file):
    import torch

    import xcam_torch

    model, folder = alexnet_file
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "explain", "--model", folder / "torch_alex.pth", "--trust-model", "--images",
                           *IMAGES, "--classes", "cat", "dog", "--labels", "cat,dog", "--out", out)
    assert code == 0, err
    assert "explaining layer features.11" in err
    summary = check_outputs(out)
    assert summary["layer"] == "features.11" and summary["framework"] == "torch"
    # numbers: probabilities are the softmax of the model's logits; maps equal the library's on the same input
    x = torch.from_numpy(preprocess([load_image(p) for p in IMAGES], (224, 224))).permute(0, 3, 1, 2)
    with torch.no_grad():
        probs = torch.softmax(model(x), 1).numpy()
    maps = xcam_torch.cam(model, x, "features.11", "layercam", classes=[0, 1])
    for i, entry in enumerate(summary["images"]):
        assert [entry["probabilities"]["cat"], entry["probabilities"]["dog"]] == pytest.approx(probs[i], abs=1e-5)
        np.testing.assert_allclose(np.load(out / entry["maps"]["layercam"]["dog"]["map"]), maps[i, 1], atol=1e-6)


@pytest.mark.torch
@pytest.mark.slow
def test_explain_state_dict_with_arch_and_layers_listing(capsys, tmp_path, alexnet_file):
    _, folder = alexnet_file
    code, out, err = run_cli(capsys, "layers", "--model", folder / "alex_state.pth", "--arch", "alexnet")
    assert code == 0, err
    assert "features.11" in out and "(default)" in out and "256x13x13" in out
    code, _, err = run_cli(capsys, "explain", "--model", folder / "alex_state.pth", "--arch", "alexnet",
                           "--images", IMAGES[0], "--layer", "features.10", "--methods", "gradcam",
                           "--out", tmp_path / "o", "--quiet")
    assert code == 0, err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["layer"] == "features.10" and list(summary["images"][0]["maps"]["gradcam"]) == ["top-1"]


@pytest.mark.tf
@pytest.mark.slow
def test_explain_keras_vgg16_end_to_end(capsys, tmp_path, vgg_file):
    import xcam_tf

    model, path = vgg_file
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "explain", "--model", path, "--images", *IMAGES, "--classes", "0", "1",
                           "--labels", "cat,dog", "--out", out, "--normalize", "caffe")
    assert code == 0, err
    summary = check_outputs(out)
    assert summary["layer"] == "vgg16/block5_conv3"
    x = preprocess([load_image(p) for p in IMAGES], (224, 224), "caffe")
    probs = np.asarray(model(x))
    maps = xcam_tf.cam(model, x, "vgg16/block5_conv3", "gradcam", classes=[0, 1])
    for i, entry in enumerate(summary["images"]):
        assert [entry["probabilities"]["cat"], entry["probabilities"]["dog"]] == pytest.approx(probs[i], abs=1e-4)
        np.testing.assert_allclose(np.load(out / entry["maps"]["gradcam"]["cat"]["map"]), maps[i, 0], atol=1e-5)


@pytest.mark.torch
@pytest.mark.tf
@pytest.mark.slow
def test_demo_on_both_frameworks_finds_the_cat(capsys, tmp_path):
    out = tmp_path / "demo"
    code, _, err = run_cli(capsys, "demo", "--framework", "both", "--out", out)
    assert code == 0, err
    for fw in ("torch", "tf"):
        summary = check_outputs(out / fw)
        by_name = {Path(e["image"]).name: e for e in summary["images"]}
        assert by_name["chelsea_cat.png"]["predicted"] == "cat"
        assert by_name["chelsea_cat.png"]["probabilities"]["cat"] > 0.9
        assert by_name["german_shepherd.jpg"]["predicted"] == "dog"
    parity = json.loads((out / "parity.json").read_text())["max_abs_difference_torch_vs_tf"]
    assert parity < 1e-4
    assert "max |torch - tf|" in err
    # the evaluation section: the same metrics on both frameworks, and Grad-CAM beats the random map
    ev = {fw: json.loads((out / fw / "evaluation" / "metrics.json").read_text())["metrics"] for fw in ("torch", "tf")}
    for metric in ("deletion", "insertion", "average_drop", "average_gain"):
        for name in ("gradcam", "layercam", "random", "centre", "sobel"):
            np.testing.assert_allclose(ev["torch"][metric]["methods"][name]["per_image"],
                                       ev["tf"][metric]["methods"][name]["per_image"], atol=2e-3)
    insertion = ev["torch"]["insertion"]["methods"]
    assert insertion["gradcam"]["mean"] > insertion["random"]["mean"]
    assert (out / "torch" / "evaluation" / "report.html").is_file()
    # and the lab's report.html holds that table (every mean and std exactly) and its plots below the lab rows
    for fw in ("torch", "tf"):
        page = (out / fw / "report.html").read_text()
        written = json.loads((out / fw / "evaluation" / "metrics.json").read_text())["metrics"]
        expected = {(metric, m): (v["mean"], v["std"]) for metric, block in written.items()
                    for m, v in block["methods"].items()}
        assert {k: (c["mean"], c["std"]) for k, c in metric_cells(page).items()} == expected
        assert page.index("class='xcam-lab'") < page.index("id='xcam-evaluation'")
        assert "<figcaption>plots/deletion_curves.png</figcaption>" in page and outside_refs(page, out / fw) == []


# ---------------------------------------------------------------- bad input: one line, no traceback, no output


@pytest.mark.torch
def test_missing_model(capsys, tmp_path):
    code, _, err = run_cli(capsys, "explain", "--model", tmp_path / "nope.pth", "--images", IMAGES[0],
                           "--out", tmp_path / "o")
    assert code == 2 and "cannot read model" in error_line(err) and "no such file" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.torch
def test_unreadable_model(capsys, tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"\x00not a model at all")
    code, _, err = run_cli(capsys, "explain", "--model", bad, "--images", IMAGES[0], "--out", tmp_path / "o")
    assert code == 2 and f"cannot read model {str(bad)!r}" in error_line(err)


@pytest.mark.torch
def test_pickled_model_needs_trust(capsys, tmp_path, alexnet_file):
    _, folder = alexnet_file
    code, _, err = run_cli(capsys, "explain", "--model", folder / "torch_alex.pth", "--images", IMAGES[0],
                           "--out", tmp_path / "o")
    assert code == 2
    line = error_line(err)
    assert "whole pickled model" in line and "runs code" in line and "--trust-model" in line


@pytest.mark.torch
def test_state_dict_without_arch(capsys, tmp_path, alexnet_file):
    _, folder = alexnet_file
    code, _, err = run_cli(capsys, "layers", "--model", folder / "alex_state.pth")
    assert code == 2 and "--arch" in error_line(err)


@pytest.mark.torch
def test_unreadable_image_is_named_and_others_still_processed(capsys, tmp_path, alexnet_file):
    _, folder = alexnet_file
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image")
    out = tmp_path / "o"
    code, _, err = run_cli(capsys, "explain", "--model", folder / "torch_alex.pth", "--trust-model", "--images",
                           IMAGES[0], text, tmp_path / "missing.png", "--out", out, "--methods", "gradcam")
    assert code == 1
    assert f"cannot read image {str(text)!r}: not an image file" in err
    assert f"cannot read image {str(tmp_path / 'missing.png')!r}" in err
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["images"]) == 1 and len(summary["errors"]) == 2


@pytest.mark.torch
def test_class_index_out_of_range(capsys, tmp_path, alexnet_file):
    _, folder = alexnet_file
    out = tmp_path / "o"
    code, _, err = run_cli(capsys, "explain", "--model", folder / "torch_alex.pth", "--trust-model", "--images",
                           IMAGES[0], "--classes", "1873", "--labels", "cat,dog", "--out", out)
    assert code == 2
    assert "class index 1873 is out of range: the model has 2 classes, valid indices are 0..1 (0=cat, 1=dog)" \
        in error_line(err)
    assert not out.exists() and not list(tmp_path.glob(".o.*"))


@pytest.mark.torch
def test_unknown_class_name(capsys, tmp_path, alexnet_file):
    _, folder = alexnet_file
    code, _, err = run_cli(capsys, "explain", "--model", folder / "torch_alex.pth", "--trust-model", "--images",
                           IMAGES[0], "--classes", "horse", "--labels", "cat,dog", "--out", tmp_path / "o")
    assert code == 2 and "unknown class 'horse'" in error_line(err) and "labels: cat, dog" in err


@pytest.mark.torch
def test_unknown_layer_suggests_nearest(capsys, tmp_path, alexnet_file):
    _, folder = alexnet_file
    code, _, err = run_cli(capsys, "explain", "--model", folder / "torch_alex.pth", "--trust-model", "--images",
                           IMAGES[0], "--layer", "feature.10", "--out", tmp_path / "o")
    assert code == 2 and "unknown layer 'feature.10'; nearest: features.10" in error_line(err)


@pytest.mark.torch
def test_layer_without_spatial_output(capsys, tmp_path, alexnet_file):
    _, folder = alexnet_file
    code, _, err = run_cli(capsys, "explain", "--model", folder / "torch_alex.pth", "--trust-model", "--images",
                           IMAGES[0], "--layer", "classifier.1", "--out", tmp_path / "o")
    assert code == 2 and "layer 'classifier.1' outputs shape (1, 4096), not a spatial map" in error_line(err)


@pytest.mark.torch
def test_label_file_with_wrong_count(capsys, tmp_path, alexnet_file):
    _, folder = alexnet_file
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\n")
    code, _, err = run_cli(capsys, "explain", "--model", folder / "torch_alex.pth", "--trust-model", "--images",
                           IMAGES[0], "--labels", labels, "--out", tmp_path / "o")
    assert code == 2 and "3 labels given but the model has 2 classes" in error_line(err)
    assert not (tmp_path / "o").exists()


def test_existing_output_directory_is_refused(capsys, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run_cli(capsys, "explain", "--model", tmp_path / "m.pth", "--images", IMAGES[0], "--out", out)
    assert code == 2 and "exists; pass --overwrite" in error_line(err)
    assert (out / "keep.txt").read_text() == "mine"


def test_unknown_method(capsys, tmp_path):
    code, _, err = run_cli(capsys, "explain", "--model", "m.pth", "--images", IMAGES[0], "--methods", "gradcm",
                           "--out", tmp_path / "o")
    assert code == 2 and "unknown method 'gradcm' (did you mean gradcam" in error_line(err)


def test_framework_cannot_be_inferred(capsys, tmp_path):
    code, _, err = run_cli(capsys, "layers", "--model", tmp_path / "model.onnx")
    assert code == 2 and "cannot tell the framework" in error_line(err)


def test_methods_listing_and_module_entry_point():
    run = subprocess.run([sys.executable, "-m", "xcam", "methods"], capture_output=True, text=True)
    assert run.returncode == 0
    lines = {line.split()[0]: line for line in run.stdout.splitlines()}
    assert list(lines) == xcam.methods()  # every registered method, in registry order
    assert "needs activations" in lines["eigencam"] and "needs head weights" in lines["cam"]
    assert "needs layer gradients, input gradients" in lines["guidedgradcam"]
    code = "import sys; from xcam.app.cli import main; main(['methods']); print(sorted(m for m in ('torch', " \
           "'tensorflow') if m in sys.modules))"
    iso = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert iso.stdout.strip().endswith("[]"), iso.stdout + iso.stderr


@pytest.mark.torch
def test_filters_command(capsys, tmp_path, alexnet_file):
    _, folder = alexnet_file
    out = tmp_path / "f"
    code, _, err = run_cli(capsys, "filters", "--model", folder / "alex_state.pth", "--arch", "alexnet",
                           "--layer", "features.0", "--channels", "0", "3", "--steps", "2", "--out", out)
    assert code == 0, err
    from xcam.app.inputs.images import load_image as read

    assert read(out / "kernels.png").shape == (8 * 89 + 1, 8 * 89 + 1, 3)  # 64 RGB 11x11 kernels, 8 a row
    assert read(out / "filters.png").shape == (224, 2 * 224 + 4, 3)
    code, _, err = run_cli(capsys, "filters", "--model", folder / "alex_state.pth", "--arch", "alexnet",
                           "--layer", "features.1", "--out", tmp_path / "g")
    assert code == 2 and "not a 2-D convolution" in error_line(err) and not (tmp_path / "g").exists()
