"""Models people have, from their files, offline: Hugging Face save_pretrained directories (ViT at a non-square
size, DINOv2 with register tokens at a non-square input, Swin whose stages return tuples, ConvNeXt) and timm
weights (a ViT with a register token, ``dynamic_img_size``, at a non-square size), with random weights built
from tiny configs (never a download). Token maps equal the maps of a hand-written reshape of the tokens (prefix
dropped, the patch grid row-major) and their activations equal that reshape of the hooked tokens; each model is
explained by the CLI (``xcam.app.cli.main``, the code ``python -m xcam`` runs) from its saved files, and the
CLI's map equals the API's map of the same preprocessed image; labels, size and normalization come from the
files; a missing package is a one-line error naming the extra."""

import json
import os

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")
pytest.importorskip("safetensors")

import xcam_torch  # noqa: E402
from xcam.app.cli import main  # noqa: E402
from xcam.app.inputs.images import load_image, preprocess  # noqa: E402
from xcam.app.models import hf, timm_models  # noqa: E402
from xcam.app.models.hints import hints_of  # noqa: E402

pytestmark = pytest.mark.torch

IMAGE = os.path.join(os.path.dirname(__file__), "..", "xcam", "app", "data", "chelsea_cat.png")
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
HALF = ([0.5] * 3, [0.5] * 3)


def _save_hf(folder, model, size, mean_std=HALF):
    model.save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": size[0], "width": size[1]}, image_mean=mean_std[0],
                                   image_std=mean_std[1]).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny models saved as their libraries save them: {name: (path, extra CLI args, input (H, W), layer)}."""
    root = tmp_path_factory.mktemp("model_files")
    torch.manual_seed(0)
    labels = {0: "cat", 1: "dog", 2: "fox"}
    vit = transformers.ViTForImageClassification(transformers.ViTConfig(
        image_size=[32, 48], patch_size=8, num_labels=3, id2label=labels, **SMALL))
    dino = transformers.Dinov2WithRegistersForImageClassification(transformers.Dinov2WithRegistersConfig(
        image_size=32, patch_size=8, num_register_tokens=2, num_labels=3, id2label=labels, **SMALL))
    swin = transformers.SwinForImageClassification(transformers.SwinConfig(
        image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4, num_labels=3))
    convnext = transformers.ConvNextForImageClassification(transformers.ConvNextConfig(
        num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3))
    out = {"vit": (_save_hf(root / "vit", vit, (32, 48)), [], (32, 48)),
           "dinov2": (_save_hf(root / "dinov2", dino, (32, 48)), [], (32, 48)),
           "swin": (_save_hf(root / "swin", swin, (32, 32)), [], (32, 32)),
           "convnext": (_save_hf(root / "convnext", convnext, (32, 32), ([0.485, 0.456, 0.406],
                                                                         [0.229, 0.224, 0.225])), [], (32, 32))}
    tv = timm.create_model("test_vit2", pretrained=False, num_classes=5, dynamic_img_size=True)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tv.state_dict().items()}, str(root / "vit2.safetensors"))
    out["timm"] = (str(root / "vit2.safetensors"), ["--arch", "timm:test_vit2", "--input-size", "64x96"], (64, 96))
    return out


def _load(name, files):
    path, extra, _ = files[name]
    return timm_models.load(path, "timm:test_vit2") if name == "timm" else hf.load(path)


def _inputs(model, hw):
    """The image as the CLI feeds it: resized to ``hw``, normalized as the model's files say, NCHW."""
    hints = hints_of(model)
    x = preprocess([load_image(IMAGE)], hw, hints.normalize if hints.normalize is not None else "imagenet")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _cli_map(files, name, tmp_path, *args):
    path, extra, _ = files[name]
    out = tmp_path / name
    code = main(["explain", "--model", path, *extra, "--images", IMAGE, "--out", str(out), "--methods", "gradcam",
                 "--no-overlays", "--no-features", "--quiet", *args])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    entry = summary["images"][0]
    record = next(iter(entry["maps"]["gradcam"].values()))
    return np.load(out / record["map"]), summary


def _hand_tokens(prefix, grid):
    """The token reshape written by hand (pytorch-grad-cam's reshape_transform): drop ``prefix`` tokens, lay the
    rest row-major on ``grid``, channels first."""
    def reshape(t):
        return t[:, prefix:].reshape(t.shape[0], *grid, t.shape[2]).permute(0, 3, 1, 2)
    return reshape


@pytest.mark.parametrize("name,prefix,grid,layer,default", [
    ("vit", 1, (4, 6), "vit.layers.1.layernorm_before", True),
    ("dinov2", 3, (4, 6), "dinov2_with_registers.encoder.layer.1.norm1", True),
    ("timm", 1, (4, 6), "blocks.7.norm1", True),
    ("swin", 0, (4, 4), "swin.encoder.layers.0", False),   # a SwinStage: a tuple, its first tensor (N, 16, 32)
])
def test_token_maps_equal_a_hand_reshape_and_the_cli(files, tmp_path, name, prefix, grid, layer, default):
    """The CLI picks ``layer`` by default where ``default`` (after the last attention the patch tokens no longer
    reach the class token: the last block's first norm)."""
    model = _load(name, files)
    hw = files[name][2]
    x = _inputs(model, hw)
    cap = xcam_torch.capture(model, x, layer)
    kept = {}
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, a, o: kept.__setitem__("t", o[0] if isinstance(o, tuple) else o))
    with torch.no_grad():
        model(torch.from_numpy(x))
    handle.remove()
    hand = _hand_tokens(prefix, grid)
    np.testing.assert_allclose(cap.activations, hand(kept["t"]).numpy(), rtol=1e-5, atol=1e-5)
    api = xcam_torch.cam(model, x, layer, "gradcam")
    np.testing.assert_allclose(api, xcam_torch.cam(model, x, layer, "gradcam", reshape=hand), atol=1e-6)
    assert api.shape == (1, *hw) and api.max() > 0.99
    cli, summary = _cli_map(files, name, tmp_path, *([] if default else ["--layer", layer]))
    np.testing.assert_allclose(cli, api[0], atol=1e-5)
    assert summary["input_size"] == list(hw) and summary["layer"] == layer
    if name in ("vit", "dinov2"):  # labels from id2label, size and normalization from preprocessor_config.json
        assert summary["labels"] == ["cat", "dog", "fox"] and summary["normalize"] == [[0.5] * 3, [0.5] * 3]


def test_convnext_default_layer_through_the_cli(files, tmp_path):
    model = _load("convnext", files)
    cli, summary = _cli_map(files, "convnext", tmp_path)
    x = _inputs(model, (32, 32))
    np.testing.assert_allclose(cli, xcam_torch.cam(model, x, summary["layer"], "gradcam")[0], atol=1e-5)
    assert summary["normalize"] == [[0.485, 0.456, 0.406], [0.229, 0.224, 0.225]]
    assert summary["layer"] == "convnext"   # its BaseModelOutput's last_hidden_state (N, 16, 4, 4)


def test_timm_hints_and_class_count(files):
    model = _load("timm", files)
    assert model.num_classes == 5 and hints_of(model).size == (160, 160)
    assert hints_of(model).normalize == ((0.5,) * 3, (0.5,) * 3)


def test_layer_output_flag_and_tokens_reshape_flag(files, tmp_path):
    """--layer-output picks a Swin stage's tensor as layer_output= does; --reshape tokens:3:4x6 gives DINOv2's
    map as reshape=Layout("tokens", 3, (4, 6)) does, here also its detected layout; a bad spec is exit code 2."""
    from xcam.layouts import Layout

    model = _load("swin", files)
    x = _inputs(model, (32, 32))
    a, _ = _cli_map(files, "swin", tmp_path / "a", "--layer", "swin.encoder.layers.1", "--layer-output", "0")
    np.testing.assert_allclose(a, xcam_torch.cam(model, x, "swin.encoder.layers.1", layer_output=0)[0], atol=1e-5)
    layer = "dinov2_with_registers.encoder.layer.1.norm1"
    model = _load("dinov2", files)
    x = _inputs(model, (32, 48))
    c, _ = _cli_map(files, "dinov2", tmp_path / "c", "--layer", layer, "--reshape", "tokens:3:4x6")
    np.testing.assert_allclose(c, xcam_torch.cam(model, x, layer, reshape=Layout("tokens", 3, (4, 6)))[0], atol=1e-5)
    np.testing.assert_allclose(c, xcam_torch.cam(model, x, layer)[0], atol=1e-6)
    assert main(["explain", "--model", files["dinov2"][0], "--images", IMAGE, "--out", str(tmp_path / "e"),
                 "--layer", layer, "--reshape", "tokens:x", "--quiet"]) == 2


def test_missing_package_names_the_extra(files, monkeypatch, capsys):
    import builtins

    real = builtins.__import__

    def no_timm(name, *args, **kwargs):
        if name == "timm":
            raise ImportError("no timm")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_timm)
    path, extra, _ = files["timm"]
    assert main(["layers", "--model", path, "--arch", "timm:test_vit2"]) == 2
    assert "pip install 'xcam[timm]'" in capsys.readouterr().err
