"""keras-hub presets from their files, offline: a ResNet image classifier built from its constructor arguments
(random weights, never a download), saved with ``save_to_preset`` and explained by the CLI
(``xcam.app.cli.main``) from the directory. The CLI's maps equal ``xcam_tf.cam`` on the in-memory model at the
same layer; the size and normalization the loader reads from the image converter give the pixels keras-hub's
own converter gives; a preset is told apart from a Hugging Face directory; a missing package is a one-line
error naming the extra."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("tensorflow")
keras_hub = pytest.importorskip("keras_hub")

import keras  # noqa: E402

import xcam_tf  # noqa: E402
from xcam.app.cli import main  # noqa: E402
from xcam.app.inputs.images import load_image, preprocess  # noqa: E402
from xcam.app.models import kerashub  # noqa: E402
from xcam.app.models.frameworks import infer_framework  # noqa: E402
from xcam.app.models.hints import hints_of  # noqa: E402

pytestmark = pytest.mark.tf

IMAGE = os.path.join(os.path.dirname(__file__), "..", "xcam", "app", "data", "chelsea_cat.png")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HW = (32, 48)


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    """(directory, the in-memory classifier, its converter): a two-stack basic-block ResNet, 3 classes, an
    ImageNet-normalizing converter at 32 x 48."""
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        image_shape=(None, None, 3))
    converter = keras_hub.layers.ResNetImageConverter(
        image_size=HW, scale=[1 / (255 * s) for s in STD], offset=[-m / s for m, s in zip(MEAN, STD)])
    classifier = keras_hub.models.ResNetImageClassifier(
        backbone=backbone, num_classes=3,
        preprocessor=keras_hub.models.ResNetImageClassifierPreprocessor(image_converter=converter))
    folder = tmp_path_factory.mktemp("kerashub") / "resnet"
    classifier.save_to_preset(str(folder))
    return str(folder), classifier, converter


def _inputs(model):
    hints = hints_of(model)
    return preprocess([load_image(IMAGE)], hints.size, hints.normalize)


def _cli(folder, out, *args):
    assert main(["explain", "--model", folder, "--images", IMAGE, "--out", str(out), "--methods", "gradcam",
                 "gradcampp", "--no-overlays", "--no-features", "--quiet", *args]) == 0
    summary = json.loads((out / "summary.json").read_text())
    maps = summary["images"][0]["maps"]
    return {m: np.load(out / next(iter(maps[m].values()))["map"]) for m in maps}, summary


@pytest.mark.parametrize("layer", [None, "res_net_backbone/stack0_block0_out"])
def test_cli_maps_equal_the_api_on_the_in_memory_model(preset, tmp_path, layer):
    """By default the backbone's output (16 x 4 x 6); with --layer a block inside the nested backbone."""
    folder, classifier, _ = preset
    maps, summary = _cli(folder, tmp_path / "out", *(["--layer", layer] if layer else []))
    assert summary["layer"] == (layer or "res_net_backbone")
    assert summary["input_size"] == list(HW) and summary["framework"] == "tf"
    np.testing.assert_allclose(summary["normalize"], [MEAN, STD], atol=1e-12)
    x = _inputs(kerashub.load(folder))
    for method in ("gradcam", "gradcampp"):
        api = xcam_tf.cam(classifier, x, summary["layer"], method)
        assert api.shape == (1, *HW) and api.max() > 0.99
        np.testing.assert_allclose(maps[method], api[0], atol=1e-5)


def test_loaded_preset_is_the_saved_model(preset):
    """Same class, same weights, same logits; the hints are the converter's size and its scale/offset read as
    ImageNet's mean/std; xcam's preprocessing equals keras-hub's converter on the same resized pixels."""
    folder, classifier, converter = preset
    model = kerashub.load(folder)
    assert type(model) is type(classifier)
    hints = hints_of(model)
    assert hints.size == HW and hints.labels is None
    np.testing.assert_allclose(hints.normalize, (MEAN, STD), atol=1e-12)
    x = _inputs(model)
    np.testing.assert_allclose(model(x).numpy(), classifier(x).numpy(), atol=1e-6)
    import cv2

    small = cv2.resize(load_image(IMAGE), HW[::-1], interpolation=cv2.INTER_AREA)
    theirs = np.asarray(converter(small[None].astype(np.float32)))
    np.testing.assert_allclose(preprocess([small], HW, hints.normalize), theirs, atol=1e-5)


def test_converter_scale_and_offset_as_mean_and_std():
    """Closed forms: 1/255 is [0, 1] ("none"); no scale and no offset is raw 0-255 pixels (std 1/255); a scalar
    2/255 with offset -1 is mean 0.5, std 0.5; no image_size is no size."""
    assert kerashub.converter_hints({"image_size": [224, 224], "scale": 1 / 255}) == ((224, 224), "none")
    size, norm = kerashub.converter_hints({"scale": None, "offset": None})
    assert size is None and norm == ((0.0,) * 3, (1 / 255,) * 3)
    assert kerashub.converter_hints({"image_size": [8, 16], "scale": 2 / 255, "offset": -1}) == \
        ((8, 16), ((0.5,) * 3, (0.5,) * 3))
    x = np.full((2, 2, 3), 51, np.uint8)  # (51 / 255 - 0) / (1 / 255) = 51: the raw pixels
    np.testing.assert_allclose(preprocess([x], (2, 2), ((0.0,) * 3, (1 / 255,) * 3)), 51.0, rtol=1e-6)


def test_preset_told_apart_from_a_hugging_face_directory(preset, tmp_path):
    folder, _, _ = preset
    assert kerashub.is_preset(folder) and infer_framework(folder) == "tf"
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"architectures": ["ViTForImageClassification"],
                                                "model_type": "vit"}))
    (hf / "model.safetensors").write_bytes(b"")
    assert not kerashub.is_preset(hf) and infer_framework(hf) == "torch"


def test_backbone_only_preset_and_missing_package(preset, tmp_path, monkeypatch, capsys):
    """A preset without task.json (a backbone) is refused with the reason; without keras-hub the CLI prints one
    line naming the extra (exit code 2)."""
    folder, classifier, _ = preset
    bare = tmp_path / "backbone"
    classifier.backbone.save_to_preset(str(bare))
    assert main(["layers", "--model", str(bare)]) == 2
    err = capsys.readouterr().err.strip()
    assert "without task.json" in err and len(err.splitlines()) == 1
    import builtins

    real = builtins.__import__

    def no_keras_hub(name, *args, **kwargs):
        if name == "keras_hub":
            raise ImportError("no keras_hub")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_keras_hub)
    assert main(["layers", "--model", folder]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install 'xcam[kerashub]'" in err and len(err.splitlines()) == 1
