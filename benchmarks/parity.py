"""Print the max difference between the PyTorch and the Keras maps of every method, for the same weights:
torchvision AlexNet (random weights) and its ported Keras twin, and the demo model (EfficientNet-Lite0 +
cat/dog head, ImageNet weights) in both frameworks.

    python benchmarks/parity.py [methods ...]     (default: every method but cam, dff and legrad)

Each class (0 and 1) is explained in its own call: several methods explain one class per sample.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

import xcam  # noqa: E402
import xcam_tf  # noqa: E402
import xcam_torch  # noqa: E402
from xcam.app.inputs.images import load_image, preprocess  # noqa: E402
from xcam.app.models.porting_keras import build  # noqa: E402
from xcam.app.models.porting_torch import describe  # noqa: E402
from xcam.app.models.zoo import demo_images  # noqa: E402
from xcam.app.models.zoo.keras_lite0 import cat_dog_model as keras_demo  # noqa: E402
from xcam.app.models.zoo.torch_lite0 import cat_dog_model as torch_demo  # noqa: E402


def main(methods=None):
    torch.manual_seed(0)
    alex = torchvision.models.alexnet(num_classes=2).eval()
    kalex = build(describe(alex, (3, 224, 224)), (224, 224, 3))
    xa = torch.randn(2, 3, 224, 224)
    images = preprocess([load_image(p) for p in demo_images()], (224, 224))
    cases = [("AlexNet, features.10", alex, kalex, xa, xa.permute(0, 2, 3, 1).numpy(), "features.10", "features_10"),
             ("demo model, head_act", torch_demo(), keras_demo(), torch.from_numpy(images).permute(0, 3, 1, 2),
              images, "backbone.head_act", "head_act")]
    print("| model | method | max abs difference torch vs Keras |\n|---|---|---|")
    for label, tmodel, kmodel, xt, xk, tl, kl in cases:
        for method in methods or xcam.methods():
            m = xcam.methods.get_method(method)
            if method in ("cam", "dff") or m.needs_attention:
                continue  # neither model has a linear head straight after pooling, nor attention
            a, b = (np.stack([module.cam(model, x, layer, method, targets=[c] * len(x)) for c in (0, 1)], 1)
                    for module, model, x, layer in ((xcam_torch, tmodel, xt, tl), (xcam_tf, kmodel, xk, kl)))
            print(f"| {label} | {method} | {np.abs(a - b).max():.1e} |", flush=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:] or None)
