"""Token layers and several inputs (pictures for the README), built honestly from the bundled TRAINED
EfficientNet-Lite0 (ImageNet weights, no download), so the maps show real evidence on the demo composite.

- ``TokenLite0``: the token path of a ViT on Lite0's features. The last feature map (N, 1280, 7, 7) is read as
  1 + 7x7 tokens (N, 50, 1280): a class token (a parameter named ``cls_token``, which xcam counts as a prefix
  token) followed by the 49 patch tokens; the head averages the patch tokens, exactly what Lite0's global
  pooling did, so the cat/dog logits are Lite0's. Its layer ``tokens`` is explained with Grad-CAM: xcam
  reshapes the tokens to the 7 x 7 grid (``tokens 1+7x7``).
- ``ImageTable``: forward(img, tab) = Lite0's cat/dog logits + a small linear term of a 3-column table.
- ``TwoImages``: forward(left, right) = the sum of two separate Lite0 copies' cat/dog logits (late fusion of two
  views; one module per input). The views are the composite's halves (cat left, dog right).

Run: python examples/any_model_gallery.py [OUT_DIR]   (default examples/gallery)
"""

import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

import xcam
import xcam_torch
from xcam.app.inputs.images import load_image, preprocess
from xcam.app.models.zoo import CAT_CLASSES, DOG_CLASSES, demo_images
from xcam.app.models.zoo.torch_lite0 import cat_dog_model, efficientnet_lite0
from xcam.app.outputs.files import write_bytes

CAT, DOG = 0, 1
TABLE = np.array([[0.5, -1.0, 2.0]], np.float32)  # one made-up table row (e.g. age, weight, height), scaled


def features(b: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Lite0's post-ReLU6 last feature map (N, 1280, h, w): what its global average pooling reads."""
    return b.head_act(b._bn1(b._conv_head(b._blocks(b.stem_act(b._bn0(b._conv_stem(x)))))))


def group_logits(logits: torch.Tensor) -> torch.Tensor:
    """Cat / dog logits from ImageNet logits: log sum exp over each group (the demo's ``ClassGroupHead``)."""
    return torch.stack([torch.logsumexp(logits[:, list(g)], 1) for g in (CAT_CLASSES, DOG_CLASSES)], 1)


class Tokens(nn.Module):
    """(N, C, h, w) -> tokens (N, 1 + h*w, C): a class token, then the positions in row-major order."""

    def __init__(self, width: int):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))

    def forward(self, f):
        patches = f.flatten(2).transpose(1, 2)
        return torch.cat([self.cls_token.expand(f.shape[0], -1, -1), patches], 1)


class TokenLite0(nn.Module):
    """Lite0's features as ViT-style tokens; the head averages the patch tokens (Lite0's own pooling) and
    applies Lite0's classifier, so the cat/dog logits equal the demo model's."""

    def __init__(self):
        super().__init__()
        self.backbone = efficientnet_lite0()
        self.tokens = Tokens(self.backbone._fc.in_features)

    def forward(self, x):
        t = self.tokens(features(self.backbone, x))
        return group_logits(self.backbone._fc(t[:, 1:].mean(1)))


class ImageTable(nn.Module):
    """forward(img, tab) = Lite0's cat/dog logits + table @ W (a small linear term, fixed made-up weights)."""

    def __init__(self):
        super().__init__()
        self.image = cat_dog_model()
        self.table = nn.Linear(TABLE.shape[1], 2)
        with torch.no_grad():
            self.table.weight.copy_(torch.tensor([[0.1, 0.0, -0.05], [-0.1, 0.05, 0.0]]))
            self.table.bias.zero_()

    def forward(self, img, tab):
        return self.image(img) + self.table(tab)


class TwoImages(nn.Module):
    """forward(left, right) = cat/dog logits of view ``a`` + those of view ``b``: two separate Lite0 copies."""

    def __init__(self):
        super().__init__()
        self.a, self.b = cat_dog_model(), cat_dog_model()

    def forward(self, left, right):
        return self.a(left) + self.b(right)


def save(picture: np.ndarray, path: Path) -> None:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    write_bytes(path, buf.tobytes())
    print(f"wrote {path}")


def row(tiles) -> np.ndarray:
    gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    out = [tiles[0]]
    for tile in tiles[1:]:
        out += [gap, tile]
    return np.concatenate(out, axis=1)


def label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = np.ascontiguousarray(tile)
    cv2.putText(tile, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def left_mass(heat: np.ndarray) -> float:
    return float(heat[:, : heat.shape[1] // 2].sum() / heat.sum())


def main(out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    image = load_image(demo_images()[2])                       # the composite: cat left, dog right (600 x 300)
    x = torch.from_numpy(preprocess([image], (224, 224))).permute(0, 3, 1, 2)
    small = cv2.resize(image, (300, 150), interpolation=cv2.INTER_AREA)
    facts = {}

    # (1) tokens: Grad-CAM on the token layer, cat and dog
    tok, demo = TokenLite0().eval(), cat_dog_model()
    with torch.no_grad():
        facts["tokens: max logit difference to Lite0"] = float((tok(x) - demo(x)).abs().max())
    facts["tokens layout"] = xcam_torch.capture(tok, x, "tokens", targets=CAT).layout.describe()
    tiles = []
    for cls, name in ((CAT, "cat"), (DOG, "dog")):
        heat = xcam_torch.cam(tok, x, "tokens", "gradcam", targets=cls)[0]
        tiles.append(label(xcam.overlay(small, cv2.resize(heat, (300, 150))), f"Grad-CAM {name}, tokens 1+7x7"))
        facts[f"tokens {name}: map mass in the left half"] = left_mass(heat)
        same = xcam_torch.cam(demo, x, "backbone.head_act", "gradcam", targets=cls)[0]
        facts[f"tokens {name}: max map difference to Lite0's head_act"] = float(np.abs(heat - same).max())
    save(row(tiles), out / "tokens.jpg")

    # (2) several inputs: image + table on the composite; two images = the composite's halves
    it = ImageTable().eval()
    tab = torch.from_numpy(TABLE)
    with torch.no_grad():
        facts["image+table: max logit difference to Lite0 + table term"] = float(
            (it(x, tab) - demo(x) - it.table(tab)).abs().max())
    top, bottom = [], []
    for cls, name in ((CAT, "cat"), (DOG, "dog")):
        grad = xcam_torch.cam(it, (x, tab), "image.backbone.head_act", "gradcam", targets=cls)[0]
        sal = xcam_torch.cam(it, (x, tab), "image.backbone.head_act", "saliency", targets=cls)[0]
        top.append(label(xcam.overlay(small, cv2.resize(grad, (300, 150))), f"(img, tab) Grad-CAM {name}"))
        facts[f"image+table gradcam {name}: map mass in the left half"] = left_mass(grad)
        facts[f"image+table saliency {name}: map mass in the left half"] = left_mass(sal)
    halves = [image[:, :300], image[:, 300:]]
    views = [torch.from_numpy(preprocess([h], (224, 224))).permute(0, 3, 1, 2) for h in halves]
    two = TwoImages().eval()
    for branch, cls, name, half in (("a", CAT, "cat", 0), ("b", DOG, "dog", 1)):
        grad = xcam_torch.cam(two, tuple(views), f"{branch}.backbone.head_act", "gradcam", targets=cls)[0]
        sal = xcam_torch.cam(two, tuple(views), f"{branch}.backbone.head_act", "saliency", targets=cls)[half][0]
        view = cv2.resize(halves[half], (148, 148), interpolation=cv2.INTER_AREA)
        bottom.append(row([label(xcam.overlay(view, cv2.resize(grad, (148, 148))), f"{branch}: Grad-CAM {name}"),
                           label(xcam.overlay(view, cv2.resize(sal, (148, 148))), f"{branch}: saliency {name}")]))
        alone = xcam_torch.cam(demo, views[half], "backbone.head_act", "gradcam", targets=cls)[0]
        facts[f"two images gradcam {name}: max difference to Lite0 alone"] = float(np.abs(grad - alone).max())
        alone = xcam_torch.cam(demo, views[half], "backbone.head_act", "saliency", targets=cls)[0]
        facts[f"two images saliency {name}: max difference to Lite0 alone"] = float(np.abs(sal - alone).max())
    top = row(top)
    bottom = row(bottom)
    gap = np.full((4, top.shape[1], 3), 255, np.uint8)
    save(np.concatenate([top, gap, bottom], axis=0), out / "several_inputs.jpg")
    for name, value in facts.items():
        print(f"{name}: {value if isinstance(value, str) else f'{value:.3g}'}")
    return facts


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "gallery"))
