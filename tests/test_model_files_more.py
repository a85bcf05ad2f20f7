"""More of issue #21's models from their files, offline, random weights from tiny configs: a Hugging Face
SegFormer explained for a class's pixels (``--target segmentation:K``), timm ConvNeXt and EfficientNet weights
(``--arch timm:NAME``), each CLI map equal to the API's map of the same preprocessed image; and Score-CAM /
Ablation-CAM on a ViT at a non-square input, whose maps are written back in its 4x6 token grid: equal to the
same methods through a hand-written reshape of the tokens."""

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
from xcam.targets import Segmentation  # noqa: E402

pytestmark = pytest.mark.torch

IMAGE = os.path.join(os.path.dirname(__file__), "..", "xcam", "app", "data", "chelsea_cat.png")


def _inputs(model, hw):
    hints = hints_of(model)
    x = preprocess([load_image(IMAGE)], hw, hints.normalize if hints.normalize is not None else "imagenet")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _cli_map(out, *args):
    code = main(["explain", *args, "--images", IMAGE, "--out", str(out), "--methods", "gradcam", "--no-overlays",
                 "--no-features", "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    record = next(iter(summary["images"][0]["maps"]["gradcam"].values()))
    return np.load(out / record["map"]), summary


def test_segformer_directory_with_a_segmentation_target(tmp_path):
    torch.manual_seed(0)
    config = transformers.SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
                                          patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2],
                                          mlp_ratios=[2, 2], decoder_hidden_size=16, num_labels=3)
    model = transformers.SegformerForSemanticSegmentation(config).eval()
    model.save_pretrained(tmp_path / "segformer")
    transformers.SegformerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "segformer")
    loaded = hf.load(str(tmp_path / "segformer"))
    layer = "decode_head.linear_fuse"
    x = _inputs(loaded, (32, 32))
    with torch.no_grad():
        np.testing.assert_allclose(loaded(torch.from_numpy(x)).logits.numpy(),
                                   model(torch.from_numpy(x)).logits.numpy(), atol=1e-6)
    api = xcam_torch.cam(loaded, x, layer, "gradcam", Segmentation(1), output="logits")
    # the same map by hand: Grad-CAM of the summed class-1 logits over every pixel, at the layer
    kept = {}
    module = dict(loaded.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, a, o: kept.__setitem__("a", o))
    try:
        score = loaded(torch.from_numpy(x)).logits[:, 1].sum()
        (g,) = torch.autograd.grad(score, kept["a"])
    finally:
        handle.remove()
    a = kept["a"].detach()
    raw = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1, keepdim=True))
    hand = torch.nn.functional.interpolate(raw, size=(32, 32), mode="bilinear", align_corners=False)[0, 0].numpy()
    hand = (hand - hand.min()) / (hand.max() - hand.min())
    np.testing.assert_allclose(api[0], hand, atol=1e-5)
    cli, summary = _cli_map(tmp_path / "out", "--model", str(tmp_path / "segformer"), "--layer", layer,
                            "--target", "segmentation:1")
    np.testing.assert_allclose(cli, api[0], atol=1e-5)
    assert summary["target"]["kind"] == "segmentation" and summary["input_size"] == [32, 32]


@pytest.mark.parametrize("arch", ["test_convnext", "test_efficientnet"])
def test_timm_cnn_weights_through_the_cli(tmp_path, arch):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, num_classes=3).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    loaded = timm_models.load(str(tmp_path / "w.safetensors"), f"timm:{arch}")
    cli, summary = _cli_map(tmp_path / "out", "--model", str(tmp_path / "w.safetensors"), "--arch", f"timm:{arch}",
                            "--input-size", "64")
    x = _inputs(loaded, (64, 64))
    api = xcam_torch.cam(model, x, summary["layer"], "gradcam")
    np.testing.assert_allclose(cli, api[0], atol=1e-5)
    assert api.max() == 1.0 and summary["input_size"] == [64, 64]
    cfg = model.pretrained_cfg
    assert summary["normalize"] == [list(cfg["mean"]), list(cfg["std"])]


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_forward_methods_write_back_in_a_non_square_token_grid(method):
    torch.manual_seed(0)
    vit = transformers.ViTForImageClassification(transformers.ViTConfig(
        image_size=[32, 48], patch_size=8, num_labels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64)).eval()
    x = torch.randn(2, 3, 32, 48).numpy()
    layer = "vit.layers.1.layernorm_before"

    def hand(t):  # class token dropped, the 24 patch tokens row-major on 4 x 6, channels first
        return t[:, 1:].reshape(t.shape[0], 4, 6, t.shape[2]).permute(0, 3, 1, 2)

    ours = xcam_torch.cam(vit, x, layer, method, [0, 2])
    reference = xcam_torch.cam(vit, x, layer, method, [0, 2], reshape=hand)
    assert ours.shape == (2, 32, 48) and ours.max() == 1.0
    np.testing.assert_allclose(ours, reference, atol=1e-6)
