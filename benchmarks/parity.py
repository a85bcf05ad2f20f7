"""Print the max difference between the PyTorch and the Keras maps of every method, for the same weights:
torchvision AlexNet (random weights) and its ported Keras twin, and the demo model (EfficientNet-Lite0 +
cat/dog head, ImageNet weights) in both frameworks.

    python benchmarks/parity.py
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


def main():
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
        for method in xcam.methods():
            if method == "cam":
                continue  # neither model has a linear head straight after pooling
            a = xcam_torch.cam(tmodel, xt, tl, method, classes=[0, 1])
            b = xcam_tf.cam(kmodel, xk, kl, method, classes=[0, 1])
            print(f"| {label} | {method} | {np.abs(a - b).max():.1e} |", flush=True)


if __name__ == "__main__":
    main()
