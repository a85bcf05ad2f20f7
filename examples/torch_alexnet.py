"""Grad-CAM and LayerCAM for both classes of a 2-class AlexNet (the lab's network), PyTorch.

Run: python examples/torch_alexnet.py [OUT_DIR]   (random weights unless you load your own torch_alex.pth)
"""

import sys
from pathlib import Path

import torch
import torchvision

import xcam
import xcam_torch
from xcam.app.inputs.images import load_image, preprocess
from xcam.app.models.zoo import demo_images
from xcam.app.outputs.files import write_png

out = Path(sys.argv[1] if len(sys.argv) > 1 else "xcam-example-torch")
out.mkdir(parents=True, exist_ok=True)
model = torchvision.models.alexnet(num_classes=2).eval()  # or: torch.load("torch_alex.pth", weights_only=False)
images = [load_image(p) for p in demo_images()]
x = torch.from_numpy(preprocess(images, (224, 224))).permute(0, 3, 1, 2)   # (N, 3, 224, 224)

for method in ("gradcam", "layercam"):
    maps = xcam_torch.cam(model, x, "features.10", method, classes=[0, 1])  # (N, 2, 224, 224) in [0, 1]
    for i, img in enumerate(images):
        for c, label in enumerate(("cat", "dog")):
            write_png(out / f"{i}_{method}_{label}.png", xcam.overlay(img, maps[i, c]))
acts = xcam_torch.capture(model, x[:1], "features.10", gradients=False).activations[0]
write_png(out / "features.png", xcam.feature_grid(acts))   # 256 channels, 16 a row
print(f"wrote {out}")
