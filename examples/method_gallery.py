"""One picture per method for the README: the demo model (EfficientNet-Lite0 + cat/dog head, PyTorch) on the
cat-and-dog composite, explained for cat (left) and for dog (right).

Run: python examples/method_gallery.py [OUT_DIR [METHOD ...]]   (default examples/gallery, every method)
"""

import sys
from pathlib import Path

import cv2
import numpy as np
import torch

import xcam
import xcam_torch
from xcam.app.inputs.images import load_image, preprocess
from xcam.app.models.zoo import DEMO_LAYER, demo_images
from xcam.app.models.zoo.torch_lite0 import cat_dog_model, efficientnet_lite0
from xcam.app.outputs.files import write_bytes

out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "gallery")
out.mkdir(parents=True, exist_ok=True)
model = cat_dog_model()
image = load_image(demo_images()[2])                       # the composite: cat left, dog right
x = torch.from_numpy(preprocess([image], (224, 224))).permute(0, 3, 1, 2)
small = cv2.resize(image, (300, 150), interpolation=cv2.INTER_AREA)
imagenet = efficientnet_lite0()
# the sliding-window methods draw with larger windows here, so the gallery stays a minute's work
# fewer masks / samples than the defaults where those are thousands of forwards of the demo model
GALLERY_OPTIONS = {"occlusion": {"window": 32, "stride": 16}, "rise": {"n_masks": 500},
                   "sobol": {"nb_design": 16}, "hsic": {"nb_design": 300}, "sscam": {"num_samples": 1},
                   "iscam": {"num_samples": 1}}
# multi-layer methods: three depths (28x28, 14x14 and the 7x7 demo layer), as layer2-4 of a ResNet
GALLERY_LAYERS = {"refinecam": ["backbone._blocks.4", "backbone._blocks.10", DEMO_LAYER["torch"]],
                  # one forward per channel and sample: a 14x14 block of 112 channels, not the 1,280 of the head
                  "sscam": "backbone._blocks.10", "iscam": "backbone._blocks.10"}
for method in sys.argv[2:] or xcam.methods():
    if xcam.get_method(method).needs_attention:  # transformer blocks only (legrad): no picture on the CNN
        continue
    if xcam.get_method(method).needs_head:  # cam, dff: the ImageNet model (one linear head)
        maps = xcam_torch.cam(imagenet, x, "head_act", method, classes=[285, 235])[0]
    else:
        options = GALLERY_OPTIONS.get(method)
        layer = GALLERY_LAYERS.get(method, DEMO_LAYER["torch"])
        maps = [xcam_torch.cam(model, x, layer, method, targets=c, options=options)[0] for c in (0, 1)]
    tiles = [xcam.overlay(small, heat) for heat in maps]
    picture = np.concatenate([tiles[0], np.full((150, 4, 3), 255, np.uint8), tiles[1]], axis=1)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    write_bytes(out / f"{method}.jpg", buf.tobytes())
    print(f"wrote {out / (method + '.jpg')}")
