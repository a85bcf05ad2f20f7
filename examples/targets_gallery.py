"""Targets beyond one class: a segmentation model with a dict output and a detector with boxes, explained with
``xcam.targets.Segmentation`` and ``xcam.targets.Boxes`` (pictures for the README).

No segmentation or detection weights ship with xcam, so both models are built from the bundled ImageNet
EfficientNet-Lite0 (trained weights, no download): its classifier applied at every position of the last
feature map gives class maps (a fully convolutional classifier, as in CAM), grouped into background / cat / dog.
``CatDogSegmenter`` returns them like torchvision's segmentation models ({"out": (N, 3, H, W)});
``CatDogDetector`` returns torchvision's detection format (a list of {"boxes", "labels", "scores"} per image:
the box around each class's region, scored by the class's mean probability inside it).

Run: python examples/targets_gallery.py [OUT_DIR]   (default examples/gallery)
"""

import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import xcam
import xcam_torch
from xcam.app.inputs.images import load_image, preprocess
from xcam.app.models.zoo import CAT_CLASSES, DOG_CLASSES, demo_images
from xcam.app.models.zoo.torch_lite0 import efficientnet_lite0
from xcam.app.outputs.files import write_bytes
from xcam.targets import Boxes, Segmentation

LAYER = "backbone.head_act"  # the post-ReLU6 features the classifier reads (7 x 7 at 224 x 224)
LABELS = ("background", "cat", "dog")


class CatDogSegmenter(nn.Module):
    """Class maps (N, 3, H, W) (background, cat, dog) from EfficientNet-Lite0's classifier at every position:
    logit_g(i, j) = log sum_{c in group g} exp(W_c . f(i, j) + b_c), upsampled bilinearly to the input."""

    def __init__(self):
        super().__init__()
        self.backbone = efficientnet_lite0()
        other = sorted(set(range(1000)) - set(CAT_CLASSES) - set(DOG_CLASSES))
        for name, group in zip(LABELS, (other, CAT_CLASSES, DOG_CLASSES)):
            self.register_buffer(name, torch.as_tensor(group))

    def forward(self, x):
        b = self.backbone
        f = b.head_act(b._bn1(b._conv_head(b._blocks(b.stem_act(b._bn0(b._conv_stem(x)))))))
        logits = torch.einsum("kc,nchw->nkhw", b._fc.weight, f) + b._fc.bias[:, None, None]
        groups = torch.stack([torch.logsumexp(logits[:, getattr(self, g)], 1) for g in LABELS], 1)
        return {"out": F.interpolate(groups, size=x.shape[-2:], mode="bilinear", align_corners=False)}


class CatDogDetector(CatDogSegmenter):
    """torchvision's detection output from the class maps: for cat and dog, the box around the pixels
    predicted as that class, scored by the class's mean probability inside the box."""

    def forward(self, x):
        maps = super().forward(x)["out"]
        probs = maps.softmax(1)
        found = []
        for prob in probs:
            boxes, labels, scores = [], [], []
            for cls in (1, 2):
                ys, xs = torch.nonzero(prob.argmax(0) == cls, as_tuple=True)
                if len(ys):
                    x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
                    boxes.append(torch.tensor([x1, y1, x2, y2], dtype=x.dtype))
                    labels.append(cls)
                    scores.append(prob[cls, y1:y2, x1:x2].mean())
            found.append({"boxes": torch.stack(boxes) if boxes else torch.zeros((0, 4)),
                          "labels": torch.tensor(labels, dtype=torch.int64),
                          "scores": torch.stack(scores) if scores else torch.zeros(0)})
        return found


def save(picture: np.ndarray, path: Path) -> None:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    write_bytes(path, buf.tobytes())
    print(f"wrote {path}")


def side_by_side(tiles) -> np.ndarray:
    gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([tiles[0], gap, tiles[1]], axis=1)


def main(out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    image = load_image(demo_images()[2])                       # the composite: cat left, dog right
    x = torch.from_numpy(preprocess([image], (224, 224))).permute(0, 3, 1, 2)
    small = cv2.resize(image, (300, 150), interpolation=cv2.INTER_AREA)
    to_small = np.array([300 / 224, 150 / 224, 300 / 224, 150 / 224])
    facts = {}

    seg = CatDogSegmenter().eval()
    with torch.no_grad():
        predicted = seg(x)["out"].argmax(1)[0].numpy()
    tiles = []
    for cls in (1, 2):
        heat = xcam_torch.cam(seg, x, LAYER, "gradcam", Segmentation(cls, "predicted"), output="out")[0]
        tile = xcam.overlay(small, cv2.resize(heat, (300, 150)))
        mask = cv2.resize((predicted == cls).astype(np.uint8), (300, 150), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        tiles.append(cv2.drawContours(np.ascontiguousarray(tile), contours, -1, (255, 255, 255), 2))
        facts[f"segmentation {LABELS[cls]}: map mass in the left half"] = float(heat[:, :112].sum() / heat.sum())
    save(side_by_side(tiles), out / "segmentation.jpg")

    det = CatDogDetector().eval()
    with torch.no_grad():
        found = det(x)[0]
    tiles = []
    for box, label, score in zip(found["boxes"].numpy(), found["labels"].numpy(), found["scores"].numpy()):
        heat = xcam_torch.cam(det, x, LAYER, "gradcam", Boxes([box], [label]))[0]
        tile = np.ascontiguousarray(xcam.overlay(small, cv2.resize(heat, (300, 150))))
        x1, y1, x2, y2 = (box * to_small).round().astype(int)
        cv2.rectangle(tile, (x1, y1), (x2 - 1, y2 - 1), (255, 255, 255), 2)
        cv2.putText(tile, f"{LABELS[label]} {score:.2f}", (x1 + 4, y1 + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
        facts[f"detection {LABELS[label]}: map mass in the left half"] = float(heat[:, :112].sum() / heat.sum())
    if len(tiles) == 2:
        save(side_by_side(tiles), out / "detection.jpg")
    for name, value in facts.items():
        print(f"{name}: {value:.3f}")
    return facts


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "gallery"))
