"""Grad-CAM and LayerCAM for both classes of a 2-class Keras VGG16 (the lab's TensorFlow network).

Run: python examples/keras_vgg16.py [OUT_DIR]   (random weights unless you load your own model)
"""

import sys
from pathlib import Path

import keras

import xcam
import xcam_tf
from xcam.app.inputs.images import load_image, preprocess
from xcam.app.models.zoo import demo_images
from xcam.app.outputs.files import write_png

out = Path(sys.argv[1] if len(sys.argv) > 1 else "xcam-example-keras")
out.mkdir(parents=True, exist_ok=True)
model = keras.applications.VGG16(weights=None, classes=2, classifier_activation="softmax")  # or load_model(...)
images = [load_image(p) for p in demo_images()]
x = preprocess(images, (224, 224), normalize="caffe")   # (N, 224, 224, 3), VGG16's own preprocessing

for method in ("gradcam", "layercam"):
    # the softmax is skipped: xcam differentiates the logits
    maps = xcam_tf.cam(model, x, "block5_conv3", method, classes=[0, 1])   # (N, 2, 224, 224)
    for i, img in enumerate(images):
        for c, label in enumerate(("cat", "dog")):
            write_png(out / f"{i}_{method}_{label}.png", xcam.overlay(img, maps[i, c]))
print(f"wrote {out}")
